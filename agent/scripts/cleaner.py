"""The workspace cleaner: forget scripts completed longer ago than the retention.

A completed script's workspace (and, after ``complete``, its tombstone) is
kept for the retention so that its outcome can still be asked for and its
ticket never runs twice; after that both are removed. A script that is not
complete is never touched.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator, Mapping
from pathlib import Path

from agent.scripts import tombstones
from agent.scripts.state import COMPLETE, ScriptState
from agent.scripts.tombstones import Tombstone


def horizon(retention: float) -> datetime.datetime:
    """Scripts completed at or before this moment have outlived ``retention`` seconds."""
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=retention)


def expired_scripts(states: Mapping[str, ScriptState], before: datetime.datetime) -> Iterator[str]:
    """The keys of the complete scripts that completed at or before ``before``."""
    for key, state in states.items():
        if state.state == COMPLETE and state.completed and _parse(state.completed) <= before:
            yield key


def remove_expired_tombstones(
    work: Path, completed: dict[str, Tombstone], before: datetime.datetime
) -> None:
    """Remove (from disk, then from ``completed``) the tombstones older than ``before``,
    in one rewrite of the journal. On a full disk they are kept, and tried again at the
    next sweep."""
    expired = {key for key, stone in completed.items() if _parse(stone.completed) <= before}
    if not expired:
        return
    remaining = {key: stone for key, stone in completed.items() if key not in expired}
    with contextlib.suppress(OSError):
        tombstones.prune(work, expired, remaining)
        for key in expired:
            del completed[key]


def _parse(timestamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(timestamp)
