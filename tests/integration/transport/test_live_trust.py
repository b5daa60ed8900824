"""LiveTrust: a TLS server's trusted client certificates change while it serves (real TLS)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest

from agent import __version__
from agent.certs import Identity, generate_identity
from agent.transport.listener import Listener
from agent.transport.settings import ChannelSettings
from agent.transport.tls import LiveTrust, client_context


@pytest.fixture
async def server() -> AsyncIterator[tuple[LiveTrust, int]]:
    """A TLS echo-one-byte server on loopback whose trust is a LiveTrust (none at first)."""
    trust = LiveTrust(generate_identity())

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readexactly(1))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # refused in the handshake: nothing to answer
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=trust.context)
    yield trust, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def accepted(port: int, client: Identity) -> bool:
    """Whether a handshake presenting ``client`` gets through (under TLS 1.3 a client
    learns of its refusal only when it reads)."""
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(client), server_hostname="127.0.0.1"
        )
    except (OSError, ssl.SSLError):
        return False
    try:
        writer.write(b"x")
        return await reader.read(1) == b"x"
    except (OSError, ssl.SSLError):
        return False
    finally:
        writer.close()


async def test_an_added_certificate_is_accepted_from_the_next_handshake_without_a_rebuild(
    server: tuple[LiveTrust, int],
) -> None:
    trust, port = server
    first, second = generate_identity(), generate_identity()
    assert not await accepted(port, first)
    builds = trust.builds
    trust.add(first.certificate_pem.decode())
    assert await accepted(port, first)
    assert not await accepted(port, second)
    trust.add(second.certificate_pem.decode())
    assert await accepted(port, second)
    assert await accepted(port, first)
    assert trust.builds == builds  # added to the context in use, not rebuilt


async def test_a_removed_certificate_is_refused_in_the_handshake_once_rebuilt(
    server: tuple[LiveTrust, int],
) -> None:
    trust, port = server
    gone, kept = generate_identity(), generate_identity()
    for identity in (gone, kept):
        trust.add(identity.certificate_pem.decode())
    await trust.rebuild()
    assert await accepted(port, gone)
    assert trust.remove(gone.sha256) == gone.thumbprint
    assert trust.trusted(gone.thumbprint) is None  # for the server's own check, at once
    assert trust.stale  # the handshake still lets it through: the server must refuse it
    await trust.rebuild()
    assert not trust.stale
    assert not await accepted(port, gone)
    assert await accepted(port, kept)
    assert trust.thumbprints() == [kept.thumbprint]


async def test_a_listener_refuses_the_upgrade_of_a_certificate_removed_before_the_rebuild() -> None:
    agent = generate_identity()
    settings = ChannelSettings(generate_identity(), "hub", __version__)
    trust = LiveTrust(settings.identity, [agent.certificate_pem.decode()])
    listener = Listener(settings, trust, None)
    [(host, port), *_] = await listener.start("127.0.0.1", 0)
    await trust.rebuild()
    trust.remove(agent.thumbprint)  # stale: its next handshake still succeeds
    try:
        connector = aiohttp.TCPConnector(ssl=client_context(agent))
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"https://{host}:{port}/")
    finally:
        await listener.stop(grace=0)
    assert refused.value.status == 403


async def test_a_refusal_names_a_few_trusted_thumbprints_and_counts_the_rest(
    server: tuple[LiveTrust, int], caplog: pytest.LogCaptureFixture
) -> None:
    trust, port = server
    trusted = sorted(trust.add(generate_identity().certificate_pem.decode()) for _ in range(7))
    stranger = generate_identity()
    assert not await accepted(port, stranger)
    [line] = [r.getMessage() for r in caplog.records if "refused a client" in r.getMessage()]
    assert f"presenting certificate {stranger.thumbprint}" in line
    assert line.endswith(f"trusted thumbprints: {', '.join(trusted[:5])} and 2 more")
