"""What a workspace remembers about its script, in ``state.json`` (atomically replaced).

It holds the request itself (enough to start the script again if it never
started) and the outcome. Whether it started, and as which process, the
wrapper records itself in ``wrapper.pid``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.atomicfile import write_atomic
from agent.protocol.services import (
    DEFAULT_GRACE,
    DEFAULT_MUTEX,
    Isolation,
    State,
    Syntax,
    check_transition,
)
from agent.scripts.cgroups import Limits

STATE_FILE = "state.json"
PENDING, RUNNING, COMPLETE = State.PENDING, State.RUNNING, State.COMPLETE


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ScriptSpec:
    """A StartScript request, minus the body and files (those are in the workspace) and
    the Environment (in memory only: see ``with_environment``)."""

    ticket: str
    syntax: Syntax = Syntax.BASH
    arguments: tuple[str, ...] = ()
    isolation: Isolation = Isolation.FULL
    mutex_name: str = DEFAULT_MUTEX
    mutex_timeout: float | None = None
    task_id: str = ""
    grace: float = DEFAULT_GRACE
    isolation_group: str | None = None  # whose uid it runs as (agent.scripts.users)
    # Whether the request had an Environment. Its names and values are never saved
    # (they may be secrets): a restart before the launch cannot run the script as asked.
    with_environment: bool = False
    # The call's own (StartScript Limits), before the configured ones cap them
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class ScriptState:
    spec: ScriptSpec
    state: State = PENDING
    exit_code: int | None = None
    created: str = field(default_factory=now)
    started: str | None = None
    completed: str | None = None
    pid: int | None = None

    def but(self, **changes: Any) -> ScriptState:
        """A copy with ``changes``, in the same state (use ``moved_to`` to change it)."""
        if "state" in changes:
            raise TypeError("a script's state changes only through moved_to")
        return dataclasses.replace(self, **changes)

    def moved_to(self, state: State, **changes: Any) -> ScriptState:
        """A copy in ``state`` with ``changes``; raises TransitionError for a move that
        agent.protocol.services.TRANSITIONS does not allow (Complete -> Running)."""
        return dataclasses.replace(self, state=check_transition(self.state, state), **changes)


def save_state(directory: Path, state: ScriptState) -> None:
    """Replace the state file atomically. Not fsynced: it must survive the agent's
    death, which the page cache does; a power cut may lose the last change."""
    data = dataclasses.asdict(state)
    write_atomic(directory / STATE_FILE, json.dumps(data).encode(), durable=False)


def create_state(directory: Path, state: ScriptState) -> None:
    """Write the first state of a new workspace, in place (no temporary file to rename).

    Raises FileExistsError if there is one already. Torn by the agent's death
    mid-write, it cannot be read, which recovery takes for a start that never
    finished: the start had not answered yet.
    """
    data = json.dumps(dataclasses.asdict(state)).encode()
    fd = os.open(directory / STATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class TamperedError(Exception):
    """A workspace file of the agent's is not the agent's: a script replaced it."""


# A script owns its workspace: what it put there in place of the agent's state (a
# link, a fifo, a file of its own or a hard link to another) is never read as the state
_NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_own_file(path: Path) -> bytes:
    """The content of ``path`` if it is a regular file of this process's user with
    one link; FileNotFoundError if there is none; TamperedError (saying what it is
    instead) if it is something else, which is then never followed nor read."""
    try:
        fd = os.open(path, _NO_FOLLOW)
    except FileNotFoundError:
        raise
    except OSError as error:  # ELOOP: a link
        raise TamperedError(f"{path.name} cannot be opened as a file ({error.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TamperedError(f"{path.name} is not a regular file")
        if info.st_uid != os.geteuid() or info.st_nlink != 1:
            raise TamperedError(
                f"{path.name} is not the agent's own (owner uid {info.st_uid}, "
                f"{info.st_nlink} links; expected uid {os.geteuid()}, one link)"
            )
        return file.read()


def load_state(directory: Path) -> ScriptState | None:
    """The saved state, or None if there is none or it cannot be read.

    Raises TamperedError if ``state.json`` is not a regular file of the agent's
    (see read_own_file): a script put it there, and nothing in it is believed."""
    try:
        data = json.loads(read_own_file(directory / STATE_FILE))
        spec = data.pop("spec")
        spec["arguments"] = tuple(spec["arguments"])
        spec["syntax"], spec["isolation"] = Syntax(spec["syntax"]), Isolation(spec["isolation"])
        spec["limits"] = Limits(**spec.get("limits") or {})  # none in a state of older agents
        data["state"] = State(data["state"])
        return ScriptState(spec=ScriptSpec(**spec), **data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
