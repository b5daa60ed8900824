from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli


@pytest.fixture
def listening_agent(tentacle: TentacleCli) -> Iterator[AgentProcess]:
    """A listening agent on 127.0.0.1 that trusts the caller instance `hub`."""
    process = AgentProcess(tentacle).start()
    yield process
    process.stop()


@pytest.fixture
def agent(listening_agent: AgentProcess) -> AgentProcess:
    """The listening agent, unless a folder or module makes it ``any_agent``."""
    return listening_agent


@pytest.fixture(params=["listening", "polling"])
async def any_agent(
    request: pytest.FixtureRequest, tentacle: TentacleCli
) -> AsyncIterator[AgentProcess]:
    """The same agent reached both ways: the test dials it, or it polls the test."""
    process = AgentProcess(tentacle)
    if request.param == "polling":
        await process.poll_a_listener()
    process.start()
    yield process
    await process.stopped()
    if process.listener is not None:
        await process.listener.stop()
