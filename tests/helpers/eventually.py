"""Waiting for a condition with a deadline and a message, for when there is no event to wait on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest


async def eventually(condition: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    """Return once ``condition()`` holds; fail naming ``what`` if it does not within ``deadline``.

    The deadline only bounds a failure: a passing test never waits for it.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        if loop.time() > end:
            pytest.fail(f"{what}: still not so after {deadline:.0f} s")
        await asyncio.sleep(0.02)  # polling the condition, not waiting for an outcome
