"""SIGINT and SIGTERM for commands that run an event loop: they stop the command at once.

An upload, a download or a wait for an unreachable agent must not outlive a
request to stop, so the command's work is cancelled (its clean-up, such as
removing a partial download, runs as the cancellation unwinds) and the
command exits with 128 + the signal's number.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The command was stopped by ``signum``; ``note`` tells the user what was left behind."""

    def __init__(self, signum: int, note: str = "Interrupted") -> None:
        super().__init__(note)
        self.signum = signum
        self.note = note

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


async def until_signalled(
    work: Awaitable[T], first_interrupt: Callable[[], None] | None = None
) -> T:
    """Await ``work``; SIGINT or SIGTERM cancels it and raises Interrupted.

    The handlers are installed even where a signal was inherited as ignored
    (a background job of a non-interactive shell ignores SIGINT): a
    ``kill -INT`` sent on purpose is a request to stop. With
    ``first_interrupt``, the first SIGINT calls it instead (run-script then
    cancels the remote script and waits for its outcome) and a second one stops.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    interrupts = 0
    stopped_by: int | None = None

    def received(signum: int) -> None:
        nonlocal interrupts, stopped_by
        if signum == signal.SIGINT:
            interrupts += 1
            if first_interrupt is not None and interrupts == 1:
                first_interrupt()
                return
        stopped_by = signum
        task.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, received, signum)
    try:
        return await task
    except asyncio.CancelledError:
        if stopped_by is None:
            raise
        raise Interrupted(stopped_by) from None
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
