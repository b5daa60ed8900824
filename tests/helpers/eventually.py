"""Wait for a condition with a deadline and a message, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    condition: Callable[[], Awaitable[T | None]],
    message: str,
    timeout: float = ...,
    interval: float = ...,
) -> T: ...


@overload
async def eventually(
    condition: Callable[[], T | None], message: str, timeout: float = ..., interval: float = ...
) -> T: ...


async def eventually(
    condition: Callable[[], Any],
    message: str,
    timeout: float = 60.0,
    interval: float = 0.05,
) -> Any:
    """Return the first true value of ``condition()`` (a check, or a coroutine such as
    a status round trip), so a caller can wait for *and* use it.

    Fails naming ``message`` after ``timeout`` seconds: a bound for a hang, not a
    performance expectation; a passing test never waits for it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome: Any = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return outcome
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {message}")
        await asyncio.sleep(interval)
