"""A stopped hub serves nothing: not even a connection that was still in its TLS
handshake when the hub stopped (aiohttp's runner closes the connections it knows of,
and it learns of a TLS connection only once its handshake is over).

CI saw the cost: a follower whose new connection raced the hub's stop was served by
the stopped hub for as long as it followed, and never saw the hub go.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

from tests.helpers.hub import running_hub

HANG = 60.0  # seconds: a bound for a hang, never reached when things work


class SteppedTlsClient:
    """A TLS client driven step by step over memory buffers, so that a test can stop
    between the handshake's messages."""

    def __init__(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # what is tested is the connection, not trust
        # TLS 1.3: the client's Finished is the handshake's last message, so holding it
        # back leaves the hub mid-handshake (in 1.2 the hub would speak last)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=False)

    def handshake(self) -> bool:
        """One step; True once the client's side is done (its last flight written)."""
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def to_send(self) -> bytes:
        return self.outgoing.read()

    def received(self, data: bytes) -> tuple[bytes, bool]:
        """The plaintext that ``data`` completes, and whether the peer closed (its TLS
        close, or the connection's end)."""
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        plain = b""
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                return plain, not data
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return plain, True
            if not chunk:
                return plain, True
            plain += chunk


async def test_a_connection_in_its_handshake_when_the_hub_stops_is_closed_unserved(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        host, port = hub.api.url.removeprefix("https://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            client = SteppedTlsClient()
            assert not client.handshake()
            writer.write(client.to_send())  # ClientHello
            while not client.handshake():  # the hub's answer: it accepted, and waits for us
                data = await asyncio.wait_for(reader.read(65536), HANG)
                assert data, "the hub closed the connection in its handshake"
                client.incoming.write(data)
            held_back = client.to_send()  # our Finished: the hub's handshake ends with it

            await hub.server.stop()

            client.tls.write(b"GET /api HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            writer.write(held_back + client.to_send())
            answer, closed = b"", False
            while not closed:
                try:
                    data = await asyncio.wait_for(reader.read(65536), HANG)
                except ConnectionResetError:
                    break  # dropped: as good as closed
                plain, closed = client.received(data)
                answer += plain
            assert answer == b"", f"the stopped hub answered: {answer[:200]!r}"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
