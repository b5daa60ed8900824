"""Completed tickets, remembered after ``complete`` removed their workspace.

A start is at most once per ticket: a late or repeated ``scripts.start`` for a
ticket that ran and was completed must not run it again. So ``complete``
leaves a *tombstone*, a small JSON file ``<work>/.completed/<ticket>`` with
the outcome, which the cleaner prunes after the workspace retention like a
workspace. No workspace can be called ``.completed``: tickets start with a
letter or a digit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from agent.atomicfile import write_atomic

log = logging.getLogger(__name__)
FOLDER = ".completed"


@dataclass(frozen=True)
class Tombstone:
    """What a start for a completed ticket answers: its outcome, no logs."""

    ticket: str
    exit_code: int
    completed: str
    next_sequence: int  # the last log line's sequence (0 if it printed nothing)


def folder(work: Path) -> Path:
    return work / FOLDER


def save(work: Path, key: str, tombstone: Tombstone) -> None:
    """Write the tombstone for ``key`` atomically. Raises OSError (a full disk)."""
    folder(work).mkdir(mode=0o700, exist_ok=True)
    data = json.dumps(dataclasses.asdict(tombstone)).encode()
    write_atomic(folder(work) / key, data, durable=False)


def remove(work: Path, key: str) -> None:
    (folder(work) / key).unlink(missing_ok=True)


def load_all(work: Path) -> dict[str, Tombstone]:
    """Every readable tombstone by ticket key; an unreadable one is reported and skipped."""
    stones: dict[str, Tombstone] = {}
    try:
        paths = sorted(folder(work).iterdir())
    except FileNotFoundError:
        return stones
    for path in paths:
        if path.name.startswith("."):
            continue  # a temporary file of an interrupted write
        try:
            stones[path.name] = Tombstone(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as error:
            log.warning("ignoring unreadable completed-ticket record %s: %s", path, error)
    return stones
