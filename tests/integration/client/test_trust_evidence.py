"""A connection dropped right after the TLS handshake is retried; distrust needs evidence."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from agent.certs import Identity, generate_identity, save_identity
from agent.client import AgentClient, Endpoint, PollingListener
from agent.client.scripts import LogChunk, ScriptRequest, execute_script
from agent.config import InstanceIndex
from agent.config.instances import create_instance
from agent.errors import TrustError
from agent.transport.tls import server_context
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.forwarder import Forwarder


@pytest.fixture
async def forwarder(listening_agent: AgentProcess) -> AsyncIterator[Forwarder]:
    forwarder = Forwarder(listening_agent.port, agent_dials=False)
    forwarder.port = await forwarder.start()  # type: ignore[attr-defined]
    yield forwarder
    await forwarder.stop()


def _through(agent: AgentProcess, forwarder: Forwarder) -> Endpoint:
    return Endpoint(f"https://127.0.0.1:{forwarder.port}/", agent.thumbprint)  # type: ignore[attr-defined]


async def test_the_cli_retries_connections_reset_after_the_handshake(
    tentacle: TentacleCli, listening_agent: AgentProcess, forwarder: Forwarder
) -> None:
    forwarder.reset_after_handshake(2)
    url = _through(listening_agent, forwarder).url
    result = await asyncio.to_thread(
        tentacle.run, "client", "--instance", "hub", "capabilities",
        "--endpoint", url, "--thumbprint", listening_agent.thumbprint,
    )  # fmt: skip
    assert result.code == 0, result
    assert "scripts/1" in result.out
    assert forwarder.resets == 2


async def test_execute_script_retries_connections_reset_after_the_handshake(
    listening_agent: AgentProcess, forwarder: Forwarder
) -> None:
    forwarder.reset_after_handshake(3)
    chunks: list[LogChunk] = []
    endpoint = _through(listening_agent, forwarder)
    async with AgentClient(endpoint, listening_agent.settings()) as hub:
        outcome = await execute_script(hub, ScriptRequest("echo started"), chunks.append)
    assert outcome.exit_code == 0
    assert [line for chunk in chunks for line in chunk.lines] == ["started"]
    assert forwarder.resets == 3


def test_an_untrusted_caller_is_still_told_so_with_the_evidence(
    tentacle: TentacleCli, listening_agent: AgentProcess
) -> None:
    index = InstanceIndex(tentacle.config_home / "instances")
    stranger = create_instance(index, index.directory.parent, "stranger")
    save_identity(stranger.config.identity_path, generate_identity())
    result = tentacle.fails(
        "client", "--instance", "stranger", "capabilities",
        "--endpoint", listening_agent.url, "--thumbprint", listening_agent.thumbprint,
    )  # fmt: skip
    assert "closed the connection right after the TLS handshake on each of 4 attempts" in (
        result.err
    )
    assert "most likely does not trust our certificate" in result.err
    assert "the same outcome every time" in result.err
    assert "on the agent: tentacle configure --trust-certificate" in result.err


@contextlib.contextmanager
def _alerting_server(identity: Identity, trusted_pem: str) -> Iterator[int]:
    """A TLS server (blocking, so that it sends its alerts) trusting only ``trusted_pem``."""
    context = server_context(identity, [trusted_pem])
    listening = socket.create_server(("127.0.0.1", 0))
    stopped = threading.Event()

    def serve() -> None:
        while not stopped.is_set():
            with contextlib.suppress(OSError):
                connection, _ = listening.accept()
                with connection:
                    _refuse_with_an_alert(context, connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listening.getsockname()[1])
    finally:
        stopped.set()
        listening.close()


def _refuse_with_an_alert(context: ssl.SSLContext, connection: socket.socket) -> None:
    """Run the handshake over memory buffers, so that the alert it ends with is sent,
    then close in order (a socket closed with unread data sends a reset instead)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            connection.sendall(outgoing.read())
            if not (data := connection.recv(65536)):
                break
            incoming.write(data)
        except ssl.SSLError:
            break
    connection.sendall(outgoing.read())
    connection.shutdown(socket.SHUT_WR)
    while connection.recv(65536):
        pass


async def test_a_tls_alert_about_our_certificate_is_evidence_at_once(
    listening_agent: AgentProcess,
) -> None:
    server = generate_identity()
    with _alerting_server(server, generate_identity().certificate_pem.decode()) as port:
        endpoint = Endpoint(f"https://127.0.0.1:{port}/", server.thumbprint)
        client = AgentClient(endpoint, listening_agent.settings())
        with pytest.raises(TrustError) as caught:
            await client.connect()
    message = str(caught.value)
    assert "refused our certificate" in message
    assert "with the TLS alert 'unknown ca'" in message


async def test_a_polling_agent_that_the_server_does_not_trust_is_told_to_fix_the_server(
    tentacle: TentacleCli,
) -> None:
    agent = AgentProcess(tentacle)
    server = PollingListener(agent.settings(), [generate_identity().certificate_pem.decode()])
    [(host, port), *_] = await server.start("127.0.0.1", 0)
    agent.poll(host, port, agent.caller.thumbprint).start()
    try:
        line = await asyncio.to_thread(agent.wait_for_log, "does not trust our certificate")
    finally:
        agent.stop()
        await server.stop()
    assert f"our certificate {agent.thumbprint}" in line
    assert "on the server: trust this agent's certificate" in line
    assert "on the agent" not in line
    assert "no trusted certificates" not in agent.log()  # a polling-only agent needs none


async def test_a_polling_agent_logs_the_failure_then_the_recovery(tentacle: TentacleCli) -> None:
    with socket.socket() as probe:  # a port where nothing listens yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = AgentProcess(tentacle)
    agent.poll("127.0.0.1", port, agent.caller.thumbprint).start()
    server = PollingListener(agent.settings(), [agent.identity.certificate_pem.decode()])
    try:
        first = await asyncio.to_thread(agent.wait_for_log, "cannot reach polling server")
        assert "failure 1 in a row" in first
        await server.start("127.0.0.1", port)
        back = await asyncio.to_thread(agent.wait_for_log, "reached polling server")
        await server.channel(agent.subscription, agent.thumbprint)
    finally:
        agent.stop()
        await server.stop()
    assert "again after" in back
    assert "failed attempts" in back


async def test_the_fix_for_a_refusal_is_the_callers_own(listening_agent: AgentProcess) -> None:
    """``tentacle configure`` is the command line's fix; a hub says its own (registration)."""
    from agent.client import Backoff, Connections

    settings = listening_agent.settings(identity=generate_identity())  # not trusted
    connections = Connections(settings, refusal_fix="on the worker: register it again")
    endpoint = Endpoint(listening_agent.url, listening_agent.thumbprint)
    quick = Backoff(first=0.01, cap=0.05)  # no deadline: the 4th refusal in a row tells
    client = AgentClient(endpoint, settings, connections=connections, retry=quick)
    try:
        with pytest.raises(TrustError) as caught:
            await client.capabilities()
    finally:
        await connections.close()
    message = str(caught.value)
    assert "most likely does not trust our certificate" in message
    assert message.endswith("(evidence: the same outcome every time, though no TLS alert "
                            "said so; on the worker: register it again)")  # fmt: skip
    assert "tentacle configure" not in message
