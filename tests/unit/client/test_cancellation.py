"""A cancellation that arrives as a wait ends is never lost.

On Python 3.11, ``asyncio.wait_for`` returns the result of an inner wait that
finished while the task was being cancelled, and the cancellation is gone
(bpo-42130). `tentacle client run-script` hit it: the first Ctrl-C sets the
cancel event its status loop waits on, and a second Ctrl-C that came before
the loop had woken up was swallowed, so the client went on retrying an
unreachable agent for minutes. These tests put the cancellation exactly there,
by the order of the event loop's callbacks, not by timing.
"""

from __future__ import annotations

import asyncio

import pytest

from agent.client.polling_listener import PollingListener
from agent.client.scripts import _pause

BOUND = 30.0  # seconds: a bound for a lost cancellation, far above the expected instant


async def started(task: asyncio.Task[None]) -> None:
    """Let ``task`` run up to its first wait (and the waits it starts, theirs)."""
    for _ in range(3):
        await asyncio.sleep(0)
    assert not task.done()


async def test_a_cancel_that_comes_with_the_cancel_request_stops_the_pause() -> None:
    cancel = asyncio.Event()
    pause = asyncio.ensure_future(_pause(60.0, cancel, cancel_sent=False))
    await started(pause)
    cancel.set()  # the first Ctrl-C
    pause.cancel()  # the second, before the pause has woken up
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(BOUND):  # a lost cancellation would pause 60 s
            await pause


async def test_a_cancel_that_comes_with_the_agents_connection_stops_the_wait() -> None:
    from agent.certs import generate_identity
    from agent.transport.settings import ChannelSettings

    listener = PollingListener(ChannelSettings(generate_identity(), "hub", "0"), [])
    wait = asyncio.ensure_future(listener.channel("poll://" + "a" * 20 + "/", "AB" * 20, 60.0))
    await started(wait)
    [waiters] = listener._waiters.values()
    for arrival in waiters:
        arrival.set_result(None)  # as a connection of that agent wakes its waiters
    wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(BOUND):  # a lost cancellation would wait again
            await wait
    assert listener.waiting() == {}
