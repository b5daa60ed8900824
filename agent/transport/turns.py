"""First come, first served admission to a limited number of places (calls, streams)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable


class Turns:
    """First come, first served admission while ``room()`` allows.

    A caller that passes :meth:`enter` must take its place at once (without
    awaiting); :meth:`wake` lets waiters in as places free up.
    """

    def __init__(self, room: Callable[[], int]) -> None:
        self._room = room
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._granted = 0  # let in, not yet resumed to take their place

    async def enter(self) -> None:
        if not self._waiters and self._room() - self._granted > 0:
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # let in, then cancelled: pass it on
                self._granted -= 1
                self.wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(turn)
            raise
        self._granted -= 1

    def wake(self) -> None:
        while self._waiters and self._room() - self._granted > 0:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                self._granted += 1

    def fail(self, error: BaseException) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_exception(error)
