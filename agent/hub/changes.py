"""News of tasks' changes inside one hub process, for callers waiting on them.

The runner says when a task of this process changes (claimed, lines stored,
ended) and the API when it asks a cancel; ``GET /api/tasks/{id}/state?wait=S``
waits here instead of the caller polling. Another node's changes are not heard
here: a waiter reads the store again every ``RECHECK`` seconds too, so it never
waits past a change by more than that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

RECHECK = 1.0  # seconds between a waiter's reads of the store (another node's changes)


class TaskChanges:
    """One event per task someone waits on, set (and forgotten) when it changes."""

    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}
        self._waiters: dict[int, int] = {}
        self.closed = False

    def changed(self, task_id: int) -> None:
        """The task changed (its state, its log): wake whoever waits on it."""
        event = self._events.pop(task_id, None)
        if event is not None:
            event.set()

    @contextlib.contextmanager
    def watching(self, task_id: int) -> Iterator[asyncio.Event]:
        """An event set at the task's next change; take it BEFORE reading the task, so
        that a change between the read and the wait is not missed. Forgotten when
        nobody waits any more (memory follows the waiters, not the tasks)."""
        event = self._events.setdefault(task_id, asyncio.Event())
        if self.closed:
            event.set()
        self._waiters[task_id] = self._waiters.get(task_id, 0) + 1
        try:
            yield event
        finally:
            left = self._waiters[task_id] - 1
            if left:
                self._waiters[task_id] = left
            else:
                del self._waiters[task_id]
                if self._events.get(task_id) is event:
                    del self._events[task_id]

    def close(self) -> None:
        """The hub stops: every wait ends now (a long request would hold its stop up)."""
        self.closed = True
        for event in self._events.values():
            event.set()
        self._events.clear()
