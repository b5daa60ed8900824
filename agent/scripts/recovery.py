"""Re-adopting the workspaces a previous agent left behind (start-up only).

Everything needed to answer for a script is on disk, so after a restart each
workspace is read and classified: finished scripts report their real exit
codes, scripts whose wrapper still runs are re-attached, scripts that never
launched start again, scripts that vanished without an exit code report -46,
and so do scripts that replaced the agent's files in their workspace (Fate.TAMPERED).
This module decides; agent.scripts.manager applies the decision.
"""

from __future__ import annotations

import enum
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.scripts import runner
from agent.scripts.state import (
    COMPLETE,
    RUNNING,
    ScriptSpec,
    ScriptState,
    TamperedError,
    load_state,
)
from agent.scripts.tombstones import Tombstone


class Fate(enum.Enum):
    """What becomes of a workspace found at start-up."""

    FINISHED = "finished"  # complete before the restart: answer from its state
    RESTART = "restart"  # the wrapper never started: safe to run from scratch
    RECORDED = "recorded"  # ended (while the agent was down), its exit code recorded
    LOST = "lost"  # ended while the agent was down, without recording an exit code
    REATTACH = "reattach"  # its wrapper still runs: watch it again
    TAMPERED = "tampered"  # its script replaced the agent's files: nothing of it is believed


# The uid a workspace must be owned by for its state to be believed (None: any)
OwnerOf = Callable[[ScriptSpec], int | None]


@dataclass(frozen=True)
class Adopted:
    """A workspace to re-adopt: its key (the folder name), state and fate."""

    key: str
    workspace: Path
    state: ScriptState
    fate: Fate
    launched: runner.Launched | None = None
    exit_code: int | None = None  # for RECORDED: what the wrapper wrote down
    tampered: str = ""  # for TAMPERED: what was found instead of the agent's own


def adopt_all(
    work: Path, completed: Mapping[str, Tombstone], owner_of: OwnerOf | None = None
) -> Iterator[Adopted]:
    """Each workspace under ``work`` to re-adopt, in name order (``owner_of``: see adopt).

    Removes, without yielding them, the debris that answers for nothing: a
    workspace whose ticket has a tombstone (a complete cut short before its
    removal) and one without a readable state (a start that never finished).
    """
    for workspace in sorted(p for p in work.iterdir() if p.is_dir()):
        if workspace.name.startswith("."):
            continue  # the tombstones' folder; no ticket starts with a dot
        if workspace.name in completed:
            shutil.rmtree(workspace, ignore_errors=True)
            continue
        adopted = adopt(workspace, owner_of)
        if adopted is None:
            shutil.rmtree(workspace, ignore_errors=True)
            continue
        yield adopted


def adopt(workspace: Path, owner_of: OwnerOf | None = None) -> Adopted | None:
    """What to do with one workspace; None if it has no readable state.

    Fate.TAMPERED if its state.json is not the agent's own file, or if the
    folder's owner is not ``owner_of(spec)`` (when that is not None): a script
    owns its folder and can write a state naming another isolation group, but
    cannot give its folder to that group's uid, so its state is then not followed.
    """
    key = workspace.name
    try:
        state = load_state(workspace)
    except TamperedError as error:
        return _tampered(workspace, ScriptState(ScriptSpec(key)), str(error))
    if state is None:
        return None
    if owner_of is not None and (expected := owner_of(state.spec)) is not None:
        try:
            info = os.lstat(workspace)
        except OSError:
            return None  # gone meanwhile: nothing to answer for
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != expected:
            group = state.spec.isolation_group
            return _tampered(workspace, state, f"the folder's owner (uid {info.st_uid}) is not "
                             f"the uid of the isolation group its state names ({group!r}, "
                             f"uid {expected})")  # fmt: skip
    if state.state == COMPLETE:
        return Adopted(key, workspace, state, Fate.FINISHED)
    launched = runner.recorded_wrapper(workspace)
    if launched is None:
        # Never launched, whatever the state file says: a fresh Pending state.
        fresh = ScriptState(state.spec, created=state.created)
        return Adopted(key, workspace, fresh, Fate.RESTART)
    if (code := runner.exit_code(workspace)) is not None:
        return Adopted(key, workspace, state, Fate.RECORDED, launched, code)
    if not runner.is_alive(launched):
        return Adopted(key, workspace, state, Fate.LOST, launched)
    running = state if state.state == RUNNING else state.moved_to(RUNNING)
    return Adopted(key, workspace, running.but(pid=launched.pid), Fate.REATTACH, launched)


def _tampered(workspace: Path, state: ScriptState, found: str) -> Adopted:
    # A fresh state of the spec: whatever the file says (a forged Complete, an exit
    # code) is not believed; the ticket is completed anew with an unknown result
    fresh = ScriptState(state.spec, created=state.created)
    return Adopted(workspace.name, workspace, fresh, Fate.TAMPERED, tampered=found)
