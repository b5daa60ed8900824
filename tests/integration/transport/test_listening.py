"""Listening mode: a real agent process, real mutual TLS on loopback."""

from __future__ import annotations

import asyncio
import signal
import ssl

import aiohttp
import pytest

from agent.certs import generate_identity
from agent.client import AgentClient, Endpoint
from agent.errors import RemoteError, TrustError
from agent.transport.dialer import dial
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli


def client(agent: AgentProcess, **settings: float) -> AgentClient:
    return AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings(**settings))


async def test_capabilities_round_trip(agent: AgentProcess) -> None:
    async with client(agent) as hub:
        found = await hub.capabilities()
    assert found["SupportedCapabilities"] == ["capabilities/1", "files/1", "scripts/1", "scripts/2"]
    assert found["OS"] == "Linux"
    assert "bash" in found["Shells"]
    assert found["FreeDiskBytes"] > 0
    assert found["Cpus"] >= 1
    assert found["MemoryBytes"] > 0
    assert "connection from test-caller" in agent.wait_for_log("connection from test-caller")


async def test_every_trusted_hub_is_accepted_though_their_certificates_share_a_name(
    tentacle: TentacleCli,
) -> None:
    from agent.config import TrustedPeer

    agent = AgentProcess(tentacle)
    second = generate_identity()
    assert second.certificate.subject == agent.caller.certificate.subject
    config = agent.instance.config
    agent.instance = agent.instance.save(
        config.with_trusted((*config.trusted, TrustedPeer.from_certificate(second.certificate)))
    )
    agent.start()
    try:
        for hub in (agent.caller, second):
            async with AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings(hub)) as c:
                assert "scripts/1" in (await c.capabilities())["SupportedCapabilities"]
    finally:
        agent.stop()


async def test_the_agent_can_be_named_by_sha256_too(agent: AgentProcess) -> None:
    endpoint = Endpoint(agent.url, agent.identity.sha256.lower())
    async with AgentClient(endpoint, agent.settings()) as hub:
        assert (await hub.capabilities())["AgentVersion"]


async def test_an_untrusted_client_is_refused_and_both_sides_say_why(agent: AgentProcess) -> None:
    stranger = generate_identity()
    endpoint = Endpoint(agent.url, agent.thumbprint)
    # the agent gives no reason (no TLS alert): the same outcome on every retry is the evidence
    untrusted = AgentClient(endpoint, agent.settings(identity=stranger))
    with pytest.raises(TrustError) as caught:
        await untrusted.__aenter__()
    assert stranger.thumbprint in str(caught.value)
    assert "on each of 4 attempts in a row" in str(caught.value)
    assert "not trust our certificate" in str(caught.value)
    line = agent.wait_for_log(f"refused a client presenting certificate {stranger.thumbprint}")
    assert f"trusted thumbprints: {agent.caller.thumbprint}" in line


async def test_a_wrong_agent_thumbprint_is_refused_before_any_call(agent: AgentProcess) -> None:
    expected = "AB" * 20
    with pytest.raises(TrustError) as caught:
        await dial(agent.url, expected, agent.settings())
    message = str(caught.value)
    assert f"presented certificate {agent.thumbprint}" in message
    assert f"but thumbprint {expected} was expected" in message
    # nothing reached the agent's RPC layer: a later good connection is the first it logs
    async with client(agent) as hub:
        await hub.capabilities()
    agent.wait_for_log("connection from test-caller (")
    assert agent.log().count("connection from test-caller (") == 1


async def test_unknown_service_and_method_are_typed_errors(agent: AgentProcess) -> None:
    async with client(agent) as hub:
        with pytest.raises(RemoteError) as caught:
            await hub.call("nothing", "here")
        assert caught.value.kind == "unknown_service"
        assert "served: capabilities, files, scripts" in str(caught.value)
        with pytest.raises(RemoteError) as caught:
            await hub.call("files", "delete")
        assert caught.value.kind == "unknown_method"
        with pytest.raises(RemoteError) as caught:
            await hub.call("files", "download", {"Path": 42})
        assert caught.value.kind == "bad_params"
        assert "'Path' as str" in str(caught.value)


async def test_a_plain_https_get_without_a_certificate_gets_a_status_page(
    agent: AgentProcess,
) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    async with aiohttp.ClientSession() as session:
        async with session.get(agent.url, ssl=context) as response:
            assert response.status == 200
            assert "agent is running" in await response.text()
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session.ws_connect(agent.url, ssl=context)
        assert caught.value.status == 403


async def test_a_frozen_agent_is_detected_within_three_heartbeats(agent: AgentProcess) -> None:
    interval = 0.5
    channel = await dial(agent.url, agent.thumbprint, agent.settings(heartbeat=interval))
    await channel.call("capabilities", "get")
    agent.signal(signal.SIGSTOP)
    try:
        await asyncio.wait_for(channel.closed.wait(), timeout=30)
    finally:
        agent.signal(signal.SIGCONT)
    assert channel.close_reason is not None
    assert channel.close_reason.startswith("no heartbeat for")
    silent = float(channel.close_reason.split()[3])
    assert 3 * interval <= silent < 3 * interval + 2


async def test_sigterm_lets_a_call_in_flight_finish(agent: AgentProcess) -> None:
    release = asyncio.Event()

    async def slow_upload() -> object:
        yield b"first half "
        await release.wait()
        yield b"second half"

    async with client(agent) as hub:
        channel = await hub.connect()
        upload = asyncio.create_task(
            channel.call("files", "upload", {"Path": "slow.txt", "Length": 22},
                         upload=slow_upload())  # type: ignore[arg-type]
        )  # fmt: skip
        await hub.capabilities()  # the upload's call has reached the agent before this answer
        agent.signal(signal.SIGTERM)
        agent.wait_for_log("stopping")
        release.set()
        result = await upload
    assert result.value["Length"] == 22
    assert (agent.home / "slow.txt").read_text() == "first half second half"
    # wait, without a second SIGTERM (stop() sends one if the agent is still closing)
    assert await asyncio.to_thread(agent.wait_exit) == 0


@pytest.mark.parametrize("verb", ["agent", "run"])
def test_the_agent_prints_its_real_port_and_stops_on_sigterm(
    tentacle: TentacleCli, verb: str
) -> None:
    agent = AgentProcess(tentacle, verb=verb)
    agent.start()
    assert agent.port > 0
    assert agent.stop() == 0
    assert "agent stopped" in agent.log()


async def test_the_client_reconnects_after_the_agent_restarts(tentacle: TentacleCli) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = AgentProcess(tentacle, env={"TENTACLE_SERVICE_PORT": str(port)}).start()
    try:
        async with client(agent) as hub:
            await hub.capabilities()
            channel = await hub.connect()
            agent.signal(signal.SIGKILL)
            await channel.closed.wait()  # the client noticed the connection is gone
            agent.process.wait()  # type: ignore[union-attr]
            agent.start()
            assert (await hub.capabilities())["SupportedCapabilities"]
    finally:
        agent.stop()


def test_json_logs_for_machines(tentacle: TentacleCli) -> None:
    import json

    agent = AgentProcess(tentacle, args=("--log-format", "json")).start()
    line = agent.wait_for_log("thumbprint")
    assert agent.stop() == 0
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["message"] == f"instance agent, thumbprint {agent.thumbprint}"


async def test_stopping_does_not_wait_for_a_peer_that_never_says_hello(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent import __version__
    from agent.transport import channel
    from agent.transport.listener import Listener
    from agent.transport.settings import ChannelSettings
    from agent.transport.tls import client_context

    monkeypatch.setattr(channel, "HELLO_TIMEOUT", 3600.0)  # a wait for it would hang the test
    server, peer = generate_identity(), generate_identity()
    listener = Listener(ChannelSettings(server, "server", __version__),
                        [peer.certificate_pem.decode()], None)  # fmt: skip
    [(host, port), *_] = await listener.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        websocket = await session.ws_connect(f"wss://{host}:{port}/", ssl=client_context(peer))
        await listener.stop(grace=0)
        kinds = [message.type async for message in websocket]  # the server's hello, then close
    assert kinds == [aiohttp.WSMsgType.BINARY]
    assert websocket.closed
