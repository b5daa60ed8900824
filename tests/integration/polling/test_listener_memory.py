"""What an idle connection costs the polling listener (issue 11's P5b: <= 64 KiB each)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tracemalloc
from collections.abc import Iterator

from agent import __version__
from agent.certs import Identity, generate_identity
from agent.client import PollingListener
from agent.transport.settings import ChannelSettings
from agent.transport.tls import client_context

CONNECTIONS = 40
KIB = 1024


@contextlib.contextmanager
def tls_connections(port: int, identity: Identity, count: int) -> Iterator[None]:
    """``count`` TLS connections to 127.0.0.1:``port`` presenting ``identity``, each
    through its handshake (so the listener holds them), kept open while inside."""
    context = client_context(identity)
    opened = []
    try:
        for _ in range(count):
            raw = socket.create_connection(("127.0.0.1", port))
            opened.append(context.wrap_socket(raw))  # returns once the handshake is done
        yield
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
