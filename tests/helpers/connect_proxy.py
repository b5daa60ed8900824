"""A small HTTP CONNECT proxy on loopback, to put in the path of a polling agent."""

from __future__ import annotations

import asyncio
import base64
import contextlib


class ConnectProxy:
    """Tunnels CONNECT requests; records each target; optionally asks for Basic auth."""

    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        self.tunnels: list[str] = []
        self.refused = 0
        self._expected = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
            if username is not None
            else None
        )
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
            authorization = {k.lower(): v for k, v in headers.items()}.get("proxy-authorization")
            if method != "CONNECT" or (self._expected and authorization != self._expected):
                self.refused += 1
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"test\"\r\n\r\n")  # fmt: skip
                await writer.drain()
                return
            host, port = target.rsplit(":", 1)
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            self.tunnels.append(target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()
