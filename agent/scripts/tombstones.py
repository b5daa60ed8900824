"""Completed tickets, remembered after ``complete`` removed their workspace.

A start is at most once per ticket: a late or repeated ``scripts.start`` for a
ticket that ran and was completed must not run it again. So ``complete``
leaves a *tombstone*, the outcome as one JSON line appended to the journal
``<work>/.completed/.journal`` (one write: a record is whole or absent), which
the cleaner prunes after the workspace retention like a workspace, by
rewriting the journal atomically. One record appended per ticket, rather
than one file each: creating and deleting files is what a script costs most
on a disk (docs/decisions.md). Tombstones of earlier versions, one file
``<work>/.completed/<ticket>`` each, are still read and pruned. No workspace
can be called ``.completed``: tickets start with a letter or a digit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.atomicfile import append_record, whole_records, write_atomic

log = logging.getLogger(__name__)
FOLDER = ".completed"
JOURNAL = ".journal"


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
    """Record the tombstone for ``key``, whole or not at all. Raises OSError (a full disk)."""
    try:
        append_record(folder(work) / JOURNAL, _record(key, tombstone))
    except FileNotFoundError:  # the first tombstone: its folder is made once, not per ticket
        folder(work).mkdir(mode=0o700, exist_ok=True)
        append_record(folder(work) / JOURNAL, _record(key, tombstone))


def prune(work: Path, expired: Iterable[str], remaining: Mapping[str, Tombstone]) -> None:
    """Forget the ``expired`` keys: the journal is rewritten with ``remaining`` alone.

    Raises OSError (a full disk); the journal then still holds every record.
    """
    records = b"".join(_record(key, stone) for key, stone in remaining.items())
    folder(work).mkdir(mode=0o700, exist_ok=True)
    write_atomic(folder(work) / JOURNAL, records, durable=False)
    for key in expired:
        (folder(work) / key).unlink(missing_ok=True)  # an earlier version's file


def load_all(work: Path) -> dict[str, Tombstone]:
    """Every readable tombstone by ticket key; an unreadable one is reported and skipped."""
    stones: dict[str, Tombstone] = {}
    try:
        paths = sorted(folder(work).iterdir())
    except FileNotFoundError:
        return stones
    for path in paths:
        if path.name.startswith("."):
            continue  # the journal, or a temporary file of an interrupted write
        try:
            stones[path.name] = Tombstone(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as error:
            log.warning("ignoring unreadable completed-ticket record %s: %s", path, error)
    for line in whole_records(folder(work) / JOURNAL):
        try:
            fields = json.loads(line)
            key = fields.pop("key")
            stones[key] = Tombstone(**fields)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            log.warning("ignoring an unreadable completed-ticket record %r: %s", line, error)
    return stones


def _record(key: str, tombstone: Tombstone) -> bytes:
    return (json.dumps({"key": key, **dataclasses.asdict(tombstone)}) + "\n").encode()
