"""PollingListener.channel(): a caller waiting for one agent is woken by that agent only."""

from __future__ import annotations

import asyncio
import collections.abc
import secrets
from collections.abc import Coroutine, Generator
from typing import Any

import pytest

from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually

ALPHABET = "abcdefghijklmnopqrstuvwxyz23456789"


class Resumptions(collections.abc.Coroutine):  # type: ignore[type-arg]
    """A coroutine that counts how often its task resumes it: each wake-up is a send()."""

    def __init__(self, inner: Coroutine[Any, Any, Any]) -> None:
        self.inner = inner
        self.resumed = 0

    def send(self, value: Any) -> Any:
        self.resumed += 1
        return self.inner.send(value)

    def throw(self, *args: Any) -> Any:
        return self.inner.throw(*args)

    def close(self) -> None:
        self.inner.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self.inner.__await__()


def absent_subscription() -> str:
    return "poll://" + "".join(secrets.choice(ALPHABET) for _ in range(20)) + "/"


async def test_an_arrival_wakes_no_caller_waiting_for_another_agent(
    tentacle: TentacleCli,
) -> None:
    agent = AgentProcess(tentacle)
    await agent.poll_a_listener()
    listener = agent.listener
    assert listener is not None
    waits = [Resumptions(listener.channel(absent_subscription(), agent.thumbprint, timeout=600))
             for _ in range(1000)]  # fmt: skip
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await eventually(lambda: all(wait.resumed for wait in waits), "all callers waiting")
        assert sum(listener.waiting().values()) == 1000
        agent.start()
        await listener.channel(agent.subscription, agent.thumbprint)  # it has arrived
        assert [wait.resumed for wait in waits] == [1] * 1000  # started, never woken since
        assert not any(task.done() for task in tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        agent.stop()
    assert listener.waiting() == {}  # cancelled callers leave nothing behind
    await listener.stop()


async def test_callers_that_time_out_or_are_served_leave_nothing_behind(
    tentacle: TentacleCli,
) -> None:
    from agent.client.polling_listener import AgentNotConnected

    agent = AgentProcess(tentacle)
    await agent.poll_a_listener()
    listener = agent.listener
    assert listener is not None
    try:
        for _ in range(3):
            with pytest.raises(AgentNotConnected):
                await listener.channel(absent_subscription(), agent.thumbprint, timeout=0)
        assert listener.waiting() == {}
        waiting = asyncio.ensure_future(listener.channel(agent.subscription, agent.thumbprint))
        await eventually(lambda: listener.waiting() == {agent.subscription: 1}, "a caller waits")
        agent.start()
        channel = await waiting  # woken by its agent's arrival
        assert listener.waiting() == {}
    finally:
        agent.stop()
    await channel.wait_closed()
    # a gone agent is forgotten, not kept as an empty list (only the inside can show it)
    await eventually(lambda: listener._channels == {}, "the gone agent is forgotten")
    await listener.stop()
