"""Two sans-I/O Connections wired back to back in memory, like h11's ConnectionPair;
and a raw peer that speaks frames by hand over a real WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from agent.certs import Identity
from agent.protocol import SUPPORTED_VERSIONS, Connection, Hello, Limits, message_frame
from agent.protocol import events as ev
from agent.transport.tls import client_context


def hello(name: str, versions: tuple[int, ...] = (1,)) -> Hello:
    return Hello(versions=versions, name=name, version="test", services=(), limits={})


class ConnectionPair:
    """``dialer`` and ``acceptor``; ``deliver`` moves queued frames across."""

    def __init__(
        self,
        *,
        dialer_limits: Limits | None = None,
        acceptor_limits: Limits | None = None,
        heartbeat: float = 10.0,
    ) -> None:
        self.now = 0.0
        self.dialer = Connection(
            hello("dialer"), dialer=True, now=0.0, heartbeat_interval=heartbeat,
            limits=dialer_limits,
        )  # fmt: skip
        self.acceptor = Connection(
            hello("acceptor"), dialer=False, now=0.0, heartbeat_interval=heartbeat,
            limits=acceptor_limits,
        )  # fmt: skip

    def deliver(self, source: Connection) -> list[ev.Event]:
        """Send everything ``source`` has queued to its peer; return the peer's events."""
        target = self.acceptor if source is self.dialer else self.dialer
        events: list[ev.Event] = []
        for frame in source.frames_to_send():
            events.extend(target.receive_frame(frame, self.now))
        return events

    def handshake(self) -> None:
        assert isinstance(self.deliver(self.dialer)[0], ev.HelloReceived)
        assert isinstance(self.deliver(self.acceptor)[0], ev.HelloReceived)


@asynccontextmanager
async def raw_peer(
    url: str, identity: Identity, limits: Limits | None = None
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A WebSocket to ``url`` (https://HOST:PORT/) that has sent its hello and reads
    nothing unless told: what our own Channel never does (stop reading, break rules)."""
    async with aiohttp.ClientSession() as session:
        websocket = await session.ws_connect(
            url.replace("https://", "wss://", 1),
            ssl=client_context(identity),
            max_msg_size=0,
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),  # a peer not reading never answers
        )
        announced = (limits or Limits()).as_dict()
        await websocket.send_bytes(
            message_frame(Hello(SUPPORTED_VERSIONS, "raw", "test", (), announced))
        )
        try:
            yield websocket
        finally:
            await websocket.close()
