"""The polling listener at scale (issue 11's P5b): what an idle connection costs it,
the tickets it issues and the heap it keeps."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import tracemalloc
from collections.abc import Iterator

import pytest

from agent import __version__
from agent.certs import Identity, generate_identity
from agent.client import PollingListener
from agent.transport import tls_server
from agent.transport.listener import Listener
from agent.transport.settings import ChannelSettings
from agent.transport.tls import client_context
from tests.helpers.eventually import eventually

CONNECTIONS = 40
KIB = 1024


@contextlib.contextmanager
def tls_connections(port: int, identity: Identity, count: int) -> Iterator[list[ssl.SSLSocket]]:
    """``count`` TLS connections to 127.0.0.1:``port`` presenting ``identity``, each
    through its handshake (so the listener holds them), kept open while inside."""
    context = client_context(identity)
    opened = []
    try:
        for _ in range(count):
            raw = socket.create_connection(("127.0.0.1", port))
            opened.append(context.wrap_socket(raw))  # returns once the handshake is done
        yield opened
    finally:
        for connection in opened:
            connection.close()


async def test_an_idle_tls_connection_costs_the_listener_no_read_buffer_of_its_own() -> None:
    agent = generate_identity()
    settings = ChannelSettings(generate_identity(), "test-hub", __version__)
    listener = PollingListener(settings, [agent.certificate_pem.decode()])
    [(_, port), *_] = await listener.start("127.0.0.1", 0)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        # asyncio's TLS used to give each 256 KiB of its own; they now share one
        grown = await asyncio.to_thread(_open_and_measure, port, agent, before)
    finally:
        tracemalloc.stop()
        await listener.stop()
    assert grown / CONNECTIONS < 64 * KIB, f"{grown / CONNECTIONS / KIB:.0f} KiB a connection"


def _open_and_measure(port: int, agent: Identity, before: tracemalloc.Snapshot) -> int:
    """Open the connections from this thread (the loop serves their handshakes
    meanwhile) and return what Python's allocations grew by while they are open."""
    with tls_connections(port, agent, CONNECTIONS):
        after = tracemalloc.take_snapshot()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


async def test_the_listener_issues_no_session_tickets() -> None:
    """Nobody resumes (aiohttp offers no session), and tickets cost each handshake."""
    agent = generate_identity()
    settings = ChannelSettings(generate_identity(), "test-hub", __version__)
    listener = PollingListener(settings, [agent.certificate_pem.decode()])
    [(_, port), *_] = await listener.start("127.0.0.1", 0)
    try:
        session = await asyncio.to_thread(_session_after_a_request, port, agent)
    finally:
        await listener.stop()
    assert session is not None
    assert not session.has_ticket


def _session_after_a_request(port: int, agent: Identity) -> ssl.SSLSession | None:
    """The TLS session of a connection that asked for the status page and read it
    (TLS 1.3 tickets come after the handshake: reading takes them in)."""
    raw = socket.create_connection(("127.0.0.1", port))
    with client_context(agent).wrap_socket(raw) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        while connection.recv(65536):
            pass
        return connection.session


async def test_after_connections_came_the_listener_hands_free_heap_back() -> None:
    """Handshakes leave freed pages inside the heap, which glibc keeps unless trimmed."""
    agent = generate_identity()
    settings = ChannelSettings(generate_identity(), "test-hub", __version__)
    listener = Listener(settings, [agent.certificate_pem.decode()], None)
    listener.heap.every = 0.05  # seconds: the test need not wait for the default 30
    [(_, port), *_] = await listener.start("127.0.0.1", 0)
    try:
        assert listener.heap.trims == 0
        await asyncio.to_thread(_connect_and_close, port, agent)
        await eventually(lambda: listener.heap.trims >= 1, "a trim after the connections")
    finally:
        await listener.stop(grace=0)


def _connect_and_close(port: int, agent: Identity) -> None:
    with tls_connections(port, agent, 3):
        pass


async def test_where_the_buffer_cannot_be_shared_the_listener_serves_with_asyncios_tls(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # a Python whose asyncio TLS class changed its private buffer: listen anyway
    monkeypatch.setattr(tls_server, "shared_buffer_supported", lambda: False)
    agent = generate_identity()
    settings = ChannelSettings(generate_identity(), "test-hub", __version__)
    listener = PollingListener(settings, [agent.certificate_pem.decode()])
    [(_, port), *_] = await listener.start("127.0.0.1", 0)
    try:

        def handshake() -> str | None:
            with tls_connections(port, agent, 1) as opened:
                return opened[0].version()

        assert await asyncio.to_thread(handshake) in ("TLSv1.2", "TLSv1.3")
    finally:
        await listener.stop()
    assert "a read buffer per connection" in caplog.text
