"""A fleet's client: one TLS context per identity, one connection per agent, idle ones closed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.certs import generate_identity
from agent.client import AgentClient, Connections, Endpoint
from agent.transport.tls import identity_files_written
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually

AGENTS = 3


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    """Listening agents that all trust one hub identity."""
    hub = generate_identity()
    agents = [AgentProcess(TentacleCli(tmp_path / f"agent-{n}"), caller=hub)
              for n in range(AGENTS)]  # fmt: skip
    try:
        yield [agent.start() for agent in agents]
    finally:
        for agent in agents:
            agent.stop()


def _clients(fleet: list[AgentProcess], connections: Connections) -> list[AgentClient]:
    return [AgentClient(Endpoint(agent.url, agent.thumbprint), connections.settings,
                        connections=connections) for agent in fleet]  # fmt: skip


async def test_many_calls_to_several_agents_build_one_tls_context(
    fleet: list[AgentProcess],
) -> None:
    written = identity_files_written()
    connections = Connections(fleet[0].settings())
    try:
        clients = _clients(fleet, connections) + _clients(fleet, connections)  # two per agent
        for _ in range(5):
            for client in clients:
                assert "scripts/1" in (await client.capabilities())["SupportedCapabilities"]
        # the private key was written out (and parsed) once, for all 30 calls to 3 agents
        assert identity_files_written() - written == 1
        # and each agent has one connection, shared by both of its clients
        assert len(connections) == AGENTS
        for mine, other in zip(clients[:AGENTS], clients[AGENTS:], strict=True):
            assert await mine.connect() is await other.connect()
        for client in clients:
            await client.close()  # shared connections: not the client's to close
        assert len(connections) == AGENTS
    finally:
        await connections.close()
    assert len(connections) == 0


async def test_an_idle_connection_is_closed_and_dialed_again_transparently(
    fleet: list[AgentProcess],
) -> None:
    connections = Connections(fleet[0].settings(), idle_timeout=0.2)
    [client, *_] = _clients(fleet, connections)
    try:
        await client.capabilities()
        first = await client.connect()
        await eventually(first.closed.is_set, "the idle connection was closed")
        assert first.close_reason == "idle"
        assert len(connections) == 0
        assert (await client.capabilities())["AgentVersion"]  # dialed again, no error
        assert await client.connect() is not first
        assert len(connections) == 1
    finally:
        await connections.close()


async def test_a_client_of_its_own_closes_its_connection(fleet: list[AgentProcess]) -> None:
    agent = fleet[0]
    async with AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings()) as client:
        channel = await client.connect()
        await client.capabilities()
    assert channel.closed.is_set()
