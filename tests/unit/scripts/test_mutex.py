"""The isolation mutex, driven by hand on an event loop."""

from __future__ import annotations

import asyncio

import pytest

from agent.scripts.mutex import Holder, IsolationMutex


def holder(ticket: str, exclusive: bool) -> Holder:
    return Holder(ticket, "", "now", exclusive)


async def test_shared_holders_coexist_and_exclusive_ones_wait_in_order() -> None:
    mutex = IsolationMutex()
    await mutex.acquire("m", holder("a", False), None)
    await mutex.acquire("m", holder("b", False), None)
    seen: list[list[str]] = []
    writer = asyncio.create_task(
        mutex.acquire("m", holder("c", True), None, lambda hs: seen.append([h.ticket for h in hs]))
    )
    late_reader = asyncio.create_task(mutex.acquire("m", holder("d", False), None))
    await asyncio.sleep(0)
    assert seen == [["a", "b"]]
    assert not writer.done()
    assert not late_reader.done()  # fair: it queues behind the waiting writer
    mutex.release("m", "a")
    mutex.release("m", "b")
    await writer
    assert [h.ticket for h in mutex.holders("m")] == ["c"]
    mutex.release("m", "c")
    await late_reader
    assert [h.ticket for h in mutex.holders("m")] == ["d"]


async def test_names_are_independent() -> None:
    mutex = IsolationMutex()
    await mutex.acquire("one", holder("a", True), None)
    await asyncio.wait_for(mutex.acquire("two", holder("b", True), None), 5)


async def test_timeout_and_cancel_withdraw_the_request() -> None:
    mutex = IsolationMutex()
    await mutex.acquire("m", holder("a", True), None)
    with pytest.raises(TimeoutError):
        await mutex.acquire("m", holder("b", True), 0.01)
    waiting = asyncio.create_task(mutex.acquire("m", holder("c", True), None))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    mutex.release("m", "a")
    assert mutex.holders("m") == []
    await mutex.acquire("m", holder("d", True), None)
    assert [h.ticket for h in mutex.holders("m")] == ["d"]
