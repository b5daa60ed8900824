"""Re-adopting the workspaces a previous agent left behind (start-up only).

Everything needed to answer for a script is on disk, so after a restart each
workspace is read and classified: finished scripts report their real exit
codes, scripts whose wrapper still runs are re-attached, scripts that never
launched start again, scripts that vanished without an exit code report -46.
This module decides; agent.scripts.manager applies the decision.
"""

from __future__ import annotations

import enum
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.scripts import runner
from agent.scripts.state import COMPLETE, RUNNING, ScriptState, load_state
from agent.scripts.tombstones import Tombstone


class Fate(enum.Enum):
    """What becomes of a workspace found at start-up."""

    FINISHED = "finished"  # complete before the restart: answer from its state
    RESTART = "restart"  # the wrapper never started: safe to run from scratch
    RECORDED = "recorded"  # ended (while the agent was down), its exit code recorded
    LOST = "lost"  # ended while the agent was down, without recording an exit code
    REATTACH = "reattach"  # its wrapper still runs: watch it again


@dataclass(frozen=True)
class Adopted:
    """A workspace to re-adopt: its key (the folder name), state and fate."""

    key: str
    workspace: Path
    state: ScriptState
    fate: Fate
    launched: runner.Launched | None = None
    exit_code: int | None = None  # for RECORDED: what the wrapper wrote down


def adopt_all(work: Path, completed: Mapping[str, Tombstone]) -> Iterator[Adopted]:
    """Each workspace under ``work`` to re-adopt, in name order.

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
        adopted = adopt(workspace)
        if adopted is None:
            shutil.rmtree(workspace, ignore_errors=True)
            continue
        yield adopted


def adopt(workspace: Path) -> Adopted | None:
    """What to do with one workspace; None if it has no readable state."""
    state = load_state(workspace)
    if state is None:
        return None
    key = workspace.name
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
