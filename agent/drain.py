"""Draining an instance: the request an operator leaves, and the agent's answer.

``tentacle drain`` writes the request to ``HOME/drain.json`` (``{"Draining":
bool, "Since": time or null, "Request": id}``), then sends SIGUSR1 to the agent
that holds the instance's lock; the agent applies the file to its
ScriptManager and answers in ``HOME/drain.ack.json`` (``{"Request": id,
"Draining", "Since", "Running": scripts not yet complete, "Pid"}``), which the
command waits for. The request stays on disk, so an agent restarted (by hand,
by systemd, after a crash) starts draining again until ``--resume``: a drained
worker is one an operator took out of service, and only the operator puts it
back (docs/decisions.md "Drain").

No asyncio and no signals here but ``follow``'s wait: the CLI owns signals.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.atomicfile import write_atomic
from agent.errors import ConfigError

log = logging.getLogger(__name__)

REQUEST_FILE = "drain.json"
ACK_FILE = "drain.ack.json"


@dataclass(frozen=True)
class DrainState:
    """Whether the instance drains, since when (the protocol's time format), and the id
    of the request that said so (its acknowledgement names it)."""

    draining: bool
    since: str | None
    request: str

    def to_json(self) -> bytes:
        document = {"Draining": self.draining, "Since": self.since, "Request": self.request}
        return json.dumps(document).encode() + b"\n"


def read_request(home: Path) -> DrainState | None:
    """The request in ``HOME/drain.json``, None if there is none.

    Raises ConfigError naming the file and the form expected if it is not one."""
    path = home / REQUEST_FILE
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} is not a drain request ({error}): expected "
                          '{"Draining": true|false, "Since": time|null, "Request": id}; '
                          "rewrite it with `tentacle drain` or `tentacle drain --resume`"
                          ) from None  # fmt: skip
    draining, since, request = (
        document.get(k) if isinstance(document, dict) else None
        for k in ("Draining", "Since", "Request")
    )
    if (
        not isinstance(draining, bool)
        or not isinstance(request, str)
        or not (since is None or isinstance(since, str))
    ):
        raise ConfigError(f"{path} is not a drain request: expected "
                          '{"Draining": true|false, "Since": time|null, "Request": id}, '
                          f"got {document!r:.120}; rewrite it with `tentacle drain` or "
                          "`tentacle drain --resume`")  # fmt: skip
    return DrainState(draining, since if draining else None, request)


def write_request(home: Path, draining: bool, now: Callable[[], str]) -> DrainState:
    """Record that the instance drains (or no longer does) under a new request id.

    Draining again keeps the first request's ``Since``: a drain is idempotent. A
    malformed earlier file is replaced."""
    try:
        previous = read_request(home)
    except ConfigError:
        previous = None
    since = None
    if draining:
        since = previous.since if previous is not None and previous.since else now()
    state = DrainState(draining, since, secrets.token_hex(8))
    write_atomic(home / REQUEST_FILE, state.to_json())
    return state


@dataclass(frozen=True)
class Acknowledgement:
    request: str
    draining: bool
    since: str | None
    running: int
    pid: int


def read_ack(home: Path) -> Acknowledgement | None:
    """The agent's last answer, None if there is none or it is not one (yet)."""
    try:
        document: Any = json.loads((home / ACK_FILE).read_bytes())
        return Acknowledgement(str(document["Request"]), bool(document["Draining"]),
                               document["Since"], int(document["Running"]),
                               int(document["Pid"]))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Drainable(Protocol):
    """What the agent drains: agent.scripts.manager.ScriptManager."""

    @property
    def draining(self) -> bool: ...

    @property
    def draining_since(self) -> str | None: ...

    def set_draining(self, draining: bool, since: str | None = None) -> None: ...

    def running(self) -> int: ...


def apply(home: Path, scripts: Drainable) -> DrainState | None:
    """Make ``scripts`` (a ScriptManager) drain as ``HOME/drain.json`` says, and answer in
    ``HOME/drain.ack.json``. No file: nothing changes, no answer. A malformed file is
    logged and changes nothing (ConfigError is the caller's at start-up only:
    see ``apply_at_start``)."""
    try:
        return _apply(home, scripts)
    except ConfigError as error:
        log.error("drain request ignored: %s", error)
        return None


def apply_at_start(home: Path, scripts: Drainable) -> None:
    """At start-up: drain if the instance was left draining (ConfigError if its request
    file is malformed: the operator's intent is not known)."""
    state = _apply(home, scripts)
    if state is not None and state.draining:
        log.warning(
            "draining since %s (as `tentacle drain` asked): new scripts are refused "
            "until `tentacle drain --resume`",
            state.since,
        )


def _apply(home: Path, scripts: Drainable) -> DrainState | None:
    state = read_request(home)
    if state is None:
        return None
    was = scripts.draining_since
    scripts.set_draining(state.draining, state.since)
    if was != scripts.draining_since:
        log.info("draining since %s" if state.draining else "resumed: accepting new scripts",
                 scripts.draining_since)  # fmt: skip
    acknowledge(home, state.request, scripts)
    return state


def acknowledge(home: Path, request: str, scripts: Drainable) -> None:
    document = {"Request": request, "Draining": scripts.draining,
                "Since": scripts.draining_since, "Running": scripts.running(),
                "Pid": os.getpid()}  # fmt: skip
    try:
        write_atomic(home / ACK_FILE, json.dumps(document).encode() + b"\n", durable=False)
    except OSError as error:  # the state is applied; only the command's answer is lost
        log.error("could not acknowledge the drain request in %s: %s", home / ACK_FILE, error)


async def follow(home: Path, scripts: Drainable, wakeup: asyncio.Event) -> None:
    """Apply the drain request each time ``wakeup`` is set (the CLI sets it on SIGUSR1)."""
    while True:
        await wakeup.wait()
        wakeup.clear()
        apply(home, scripts)
