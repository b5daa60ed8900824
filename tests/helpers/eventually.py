"""Wait for a condition with a deadline and a message, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    message: str,
    timeout: float = 60.0,
    interval: float = 0.05,
) -> None:
    """Return once ``condition()`` (a check, or a coroutine such as a round trip) is true.

    Fails naming ``message`` after ``timeout`` seconds: a bound for a hang, not a
    performance expectation; a passing test never waits for it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {message}")
        await asyncio.sleep(interval)
