"""Wait for a condition with a deadline and a message, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(
    condition: Callable[[], bool], message: str, timeout: float = 60.0, interval: float = 0.05
) -> None:
    """Return once ``condition()`` is true; fail with ``message`` after ``timeout`` seconds.

    The timeout is a bound for a broken build, not a performance expectation.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {message}")
        await asyncio.sleep(interval)
