"""/api/workers/discover: a real listening agent dialed by a real hub, before it is added."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from agent.config import TrustedPeer
from agent.hub.keys import Permission
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.hub import RunningHub, running_hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path) as running:
        yield running


@pytest.fixture
def agent(tentacle: TentacleCli) -> Iterator[AgentProcess]:
    agent = AgentProcess(tentacle)  # trusts a caller of its own, not the hub
    yield agent
    agent.stop()


def _discover(agent_port: int, prefix: str = "/api", **extra: str) -> str:
    query = {"host": "127.0.0.1", "port": str(agent_port), "type": "TentaclePassive", **extra}
    return f"{prefix}/workers/discover?{urlencode(query)}"


async def test_an_agent_that_does_not_trust_the_hub_still_tells_its_thumbprint(
    hub: RunningHub, agent: AgentProcess
) -> None:
    agent.start()
    found = await hub.api.get(_discover(agent.port))
    assert found["Thumbprint"] == agent.thumbprint
    assert found["Endpoint"] == {
        "CommunicationStyle": "TentaclePassive",
        "Uri": f"https://127.0.0.1:{agent.port}/",
        "Thumbprint": agent.thumbprint,
        "Id": None,
    }
    assert found["CertificateSha256"] == agent.identity.sha256
    assert found["TrustsHub"] is False
    assert found["OperatingSystem"] == "Unknown"
    refused = f"the agent refused the hub's certificate {hub.home.identity().thumbprint}"
    assert found["DiscoveryMessage"].startswith(refused)
    assert "register-worker" in found["DiscoveryMessage"]
    assert await hub.api.get("/api/workers/all") == []  # nothing was added


async def test_an_agent_that_trusts_the_hub_tells_its_facts_too(
    hub: RunningHub, agent: AgentProcess
) -> None:
    hub_peer = TrustedPeer.from_certificate(hub.home.identity().certificate)
    config = agent.instance.config
    agent.instance = agent.instance.save(config.with_trusted((*config.trusted, hub_peer)))
    agent.start()
    found = await hub.api.get(_discover(agent.port, "/api/Spaces-1"))
    assert (found["Thumbprint"], found["TrustsHub"]) == (agent.thumbprint, True)
    assert found["OperatingSystem"].startswith("Linux")
    assert found["ShellName"] == "bash"
    assert found["AgentVersion"]
    assert found["DiscoveryMessage"] is None


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the probe is


async def test_bad_parameters_are_named(hub: RunningHub) -> None:
    cases = {
        "/api/workers/discover?port=10933": (422, "host is required"),
        "/api/workers/discover?host=no%20such&port=10933": (422, "host: expected a host name"),
        _discover(0): (422, "port: expected a port number from 1 to 65535, got '0'"),
        _discover(1, port="many"): (422, "port: expected a port number"),
        _discover(10933, type="TentacleActive"): (400, "type: a polling agent"),
        _discover(10933, type="Kubernetes"): (
            400,
            "type: only TentaclePassive or Ssh can be discovered, got 'Kubernetes'",
        ),
        "/api/workers/discover?type=Ssh&host=a%20b": (422, "host: expected a host name"),
    }
    for path, (status, message) in cases.items():
        code, body = await hub.api.request("GET", path)
        assert code == status, (path, code, body)
        assert any(message in error for error in body["Errors"]), (path, body)


async def test_nothing_listening_or_not_an_agent_is_a_clear_error(
    hub: RunningHub, tmp_path: Path
) -> None:
    port = _closed_port()
    code, body = await hub.api.request("GET", _discover(port))
    assert code == 400
    assert body["ErrorMessage"].startswith(f"cannot discover an agent at 127.0.0.1:{port}: ")
    assert "cannot connect to 127.0.0.1" in body["ErrorMessage"]
    with socket.socket() as plain:  # listens, but speaks no TLS: it closes at once
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        code, body = await hub.api.request("GET", _discover(plain.getsockname()[1]))
    assert code == 400
    assert "cannot discover an agent at 127.0.0.1" in body["ErrorMessage"]


async def test_discovering_needs_configure_server(hub: RunningHub) -> None:
    reader = await hub.key("reader", Permission.READ_ONLY)
    code, body = await hub.api.request("GET", _discover(10933), key=reader)
    assert code == 403
    assert "ConfigureServer" in body["ErrorMessage"]
