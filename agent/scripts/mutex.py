"""The script isolation mutex: per name, full isolation is exclusive, none is shared.

A reader/writer lock per mutex name, fair in arrival order, with a timeout
and cancellation. Holders are known by ticket so that a waiting script can say
who it waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Holder:
    ticket: str
    task_id: str
    since: str
    exclusive: bool


@dataclass
class _Waiter:
    holder: Holder
    granted: asyncio.Future[None]


@dataclass
class _Lock:
    holders: dict[str, Holder] = field(default_factory=dict)
    waiting: deque[_Waiter] = field(default_factory=deque)

    def admits(self, exclusive: bool) -> bool:
        if not self.holders:
            return True
        return not exclusive and not any(h.exclusive for h in self.holders.values())


class IsolationMutex:
    def __init__(self) -> None:
        self._locks: dict[str, _Lock] = {}

    def holders(self, name: str) -> list[Holder]:
        lock = self._locks.get(name)
        return list(lock.holders.values()) if lock else []

    async def acquire(
        self,
        name: str,
        holder: Holder,
        timeout: float | None,
        on_wait: Callable[[list[Holder]], None] | None = None,
    ) -> None:
        """Wait for the mutex ``name``; raises TimeoutError after ``timeout`` seconds.

        Cancelling the waiting task withdraws the request. ``on_wait`` is told
        who holds the mutex when the caller has to wait.
        """
        lock = self._locks.setdefault(name, _Lock())
        if not lock.waiting and lock.admits(holder.exclusive):
            lock.holders[holder.ticket] = holder
            return
        if on_wait is not None:
            on_wait(list(lock.holders.values()))
        waiter = _Waiter(holder, asyncio.get_running_loop().create_future())
        lock.waiting.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(waiter.granted)
        except BaseException:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self.release(name, holder.ticket)  # granted just as we gave up
            else:
                with contextlib.suppress(ValueError):
                    lock.waiting.remove(waiter)
                waiter.granted.cancel()
                self._grant(name)
            raise

    def hold(self, name: str, holder: Holder) -> None:
        """Record a holder without waiting: for scripts found running after a restart."""
        self._locks.setdefault(name, _Lock()).holders[holder.ticket] = holder

    def release(self, name: str, ticket: str) -> None:
        lock = self._locks.get(name)
        if lock is None or lock.holders.pop(ticket, None) is None:
            return
        self._grant(name)

    def _grant(self, name: str) -> None:
        lock = self._locks[name]
        while lock.waiting and lock.admits(lock.waiting[0].holder.exclusive):
            waiter = lock.waiting.popleft()
            lock.holders[waiter.holder.ticket] = waiter.holder
            waiter.granted.set_result(None)
        if not lock.holders and not lock.waiting:
            del self._locks[name]
