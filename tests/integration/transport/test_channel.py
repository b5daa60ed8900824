"""Channels over real TLS on loopback: an in-process Listener and a dialer or a raw peer.

A raw peer (aiohttp's WebSocket, speaking frames from docs/protocol.md by hand)
does what our own Channel never would: it stops reading, or breaks a rule.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
import pytest

from agent import __version__
from agent.certs import generate_identity
from agent.protocol import Limits, message_frame
from agent.protocol.calls import Handler, IncomingCall, Reply
from agent.protocol.messages import Call
from agent.transport.channel import WRITE_QUEUE_DATA_BYTES, Channel
from agent.transport.dialer import dial
from agent.transport.listener import Listener
from agent.transport.settings import ChannelSettings
from tests.helpers.eventually import eventually
from tests.helpers.protocol import raw_peer

CHUNK = 64 * 1024


class Server:
    """A Listener serving ``handler``; ``channels`` are the channels it opened."""

    def __init__(self, handler: Handler, limits: Limits | None = None) -> None:
        self.identity, self.peer = generate_identity(), generate_identity()
        settings = ChannelSettings(self.identity, "server", __version__, limits=limits or Limits())
        self.channels: list[Channel] = []
        self.listener = Listener(
            settings, [self.peer.certificate_pem.decode()], handler, self._on_channel
        )
        self.url = ""

    async def _on_channel(self, channel: Channel, headers: Mapping[str, str]) -> None:
        self.channels.append(channel)
        await channel.wait_closed()

    async def start(self) -> Server:
        [(host, port), *_] = await self.listener.start("127.0.0.1", 0)
        self.url = f"https://{host}:{port}/"
        return self

    def settings(self, limits: Limits | None = None) -> ChannelSettings:
        return ChannelSettings(self.peer, "peer", __version__, limits=limits or Limits())


def _download(call_id: int) -> bytes:
    return message_frame(Call(call_id, "files", "download", {}))


async def test_calls_beyond_the_peers_limit_wait_their_turn_in_order() -> None:
    started: list[int] = []
    busy = {"now": 0, "most": 0}
    release = asyncio.Event()
    two_started = asyncio.Event()

    async def slow(call: IncomingCall) -> Reply:
        started.append(call.params["n"])
        busy["now"] += 1
        busy["most"] = max(busy["most"], busy["now"])
        if len(started) == 2:
            two_started.set()
        await release.wait()
        busy["now"] -= 1
        return Reply(call.params["n"])

    server = await Server(slow, Limits(max_calls_in_flight=2)).start()
    channel = await dial(server.url, server.identity.thumbprint, server.settings())
    try:
        calls = [asyncio.ensure_future(channel.call("s", "m", {"n": n})) for n in range(10)]
        await two_started.wait()
        release.set()
        results = await asyncio.gather(*calls)
    finally:
        await channel.close()
        await server.listener.stop(grace=0)
    assert [r.value for r in results] == list(range(10))  # none failed with limit_exceeded
    assert started == list(range(10))  # first come, first served
    assert busy["most"] == 2


async def test_a_call_cancelled_while_it_waits_for_its_turn_gives_its_turn_away() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(call: IncomingCall) -> Reply:
        entered.set()
        await release.wait()
        return Reply(call.params["n"])

    server = await Server(slow, Limits(max_calls_in_flight=1)).start()
    channel = await dial(server.url, server.identity.thumbprint, server.settings())
    try:
        first = asyncio.ensure_future(channel.call("s", "m", {"n": 1}))
        await entered.wait()
        waiting = asyncio.ensure_future(channel.call("s", "m", {"n": 2}))
        last = asyncio.ensure_future(channel.call("s", "m", {"n": 3}))
        await asyncio.sleep(0)  # let both queue up behind the first
        waiting.cancel()
        release.set()
        assert (await first).value == 1
        assert (await last).value == 3
        assert waiting.cancelled()
    finally:
        await channel.close()
        await server.listener.stop(grace=0)


async def test_streams_beyond_the_peers_limit_wait_for_one_to_end() -> None:
    called: list[str] = []
    all_called = asyncio.Event()

    async def small(call: IncomingCall) -> Reply:
        called.append(call.params["n"])
        if len(called) == 5:
            all_called.set()

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield call.params["n"].encode() * 10
                await all_called.wait()  # so that, unchecked, all five streams would be open

        return Reply(call.params["n"], chunks())

    async def download(channel: Channel, n: int) -> bytes:
        result = await channel.call("files", "download", {"n": str(n)})
        assert result.stream is not None
        return b"".join([chunk async for chunk in result.stream])

    server = await Server(small).start()
    settings = server.settings(Limits(max_streams_in_flight=1))
    channel = await dial(server.url, server.identity.thumbprint, settings)
    try:
        got = await asyncio.gather(*(download(channel, n) for n in range(5)))
    finally:
        await channel.close()
        await server.listener.stop(grace=0)
    assert got == [str(n).encode() * 30 for n in range(5)]


async def test_uploads_beyond_the_peers_stream_limit_wait_for_one_to_end() -> None:
    async def count(call: IncomingCall) -> Reply:
        assert call.stream is not None
        return Reply(sum([len(chunk) async for chunk in call.stream]))

    async def data() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * 1000

    server = await Server(count, Limits(max_streams_in_flight=1)).start()
    channel = await dial(server.url, server.identity.thumbprint, server.settings())
    try:
        results = await asyncio.gather(
            *(channel.call("files", "upload", {}, upload=data()) for _ in range(5))
        )
    finally:
        await channel.close()
        await server.listener.stop(grace=0)
    assert [r.value for r in results] == [3000] * 5


# asyncio's transports pause their protocol above 64 KiB unsent (TLS ones too)
SOCKET_HIGH_WATER = 64 * 1024


async def test_closing_ends_every_task_of_a_connection_whose_downloads_are_not_read() -> None:
    """Even once the writer waits on a full socket: aiohttp used to leave a cancelled wait
    behind, so the close frame's send raised CancelledError out of close()."""
    downloads = 4
    started: list[int] = []
    finished: list[int] = []
    produced: list[int] = []  # a chunk's download, as each is made

    async def endless(call: IncomingCall) -> Reply:
        number = len(started)
        started.append(number)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                for _ in range(4096):  # 256 MiB: far more than any buffer holds
                    produced.append(number)
                    yield b"x" * CHUNK
            finally:
                finished.append(number)

        return Reply({"Length": 4096 * CHUNK}, chunks())

    server = await Server(endless).start()
    # a large window, so that only the unread socket holds the downloads back
    limits = Limits(stream_window_bytes=1024 * 1024 * 1024)
    async with raw_peer(server.url, server.peer, limits) as peer:
        for call_id in range(1, downloads + 1):
            await peer.send_bytes(_download(call_id))
        await eventually(lambda: len(started) == downloads, "every download started")
        [channel] = server.channels
        progress: list[int] = []

        def stuck() -> bool:
            """The socket is full and has taken nothing for a while (the kernel's
            buffers can grow for a moment after the peer stops reading)."""
            full = channel.queued_bytes > WRITE_QUEUE_DATA_BYTES
            full = full and channel.socket_backlog > SOCKET_HIGH_WATER
            progress.append(len(produced) if full else -1)
            return len(progress) >= 20 and len(set(progress[-20:])) == 1 and progress[-1] >= 0

        await eventually(stuck, "the writer is stuck on a full socket")
        await channel.drain()  # every call is answered; the unread streams are not waited for
        await server.listener.stop(grace=0)
        # the connection was dropped, not left to linger: what was in flight, then the end
        ends = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        for _ in range(100_000):
            if (await peer.receive()).type in ends:
                break
        else:
            raise AssertionError("the peer was never told the connection ended")
    left = [t for t in asyncio.all_tasks() if "Channel." in t.get_coro().__qualname__]  # type: ignore[union-attr]
    assert left == []
    assert sorted(finished) == list(range(downloads))  # every stream's source was closed


async def wait_for_close(websocket: aiohttp.ClientWebSocketResponse) -> list[aiohttp.WSMessage]:
    """Everything the server sent, through its close."""
    received = []
    while True:
        message = await websocket.receive()
        received.append(message)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return received


async def _close_after(
    sending: Callable[[aiohttp.ClientWebSocketResponse], Awaitable[None]],
    limits: Limits | None = None,
) -> tuple[list[bytes], aiohttp.WSMessage]:
    async def answer(call: IncomingCall) -> Reply:
        await asyncio.Event().wait()  # stays in flight
        return Reply()

    server = await Server(answer).start()
    try:
        async with raw_peer(server.url, server.peer, limits) as peer:
            await sending(peer)
            *frames, close = await wait_for_close(peer)
    finally:
        await server.listener.stop(grace=0)
    return [f.data for f in frames], close


def _sends(*frames: bytes) -> Callable[[aiohttp.ClientWebSocketResponse], Awaitable[None]]:
    async def send(peer: aiohttp.ClientWebSocketResponse) -> None:
        for frame in frames:
            await peer.send_bytes(frame)

    return send


@pytest.mark.parametrize(
    ("frames", "limits", "told"),
    [
        ([message_frame(Call(0, "s", "m"))], None, "call id 0 is reserved for the connection"),
        ([_download(1), _download(1)], None, "peer reused call id 1 while it was in flight"),
        ([b"X"], None, "unknown frame tag 0x58"),
        ([], Limits(max_chunk_bytes=0), "max_chunk_bytes=0; it must be at least 1"),
    ],
)
async def test_a_protocol_error_is_told_to_the_peer_then_closed_as_one(
    frames: list[bytes], limits: Limits | None, told: str
) -> None:
    received, close = await _close_after(_sends(*frames), limits)
    hello, error = received  # the server's hello, then why it closes
    assert hello[:10] == b'M{"t":"hel'
    body = json.loads(error[1:])
    assert (body["t"], body["id"]) == ("error", 0)
    assert told in body["message"]
    assert close.type == aiohttp.WSMsgType.CLOSE
    assert close.data == aiohttp.WSCloseCode.PROTOCOL_ERROR
    assert told[:20] in close.extra  # the close reason says it too, if shortened


async def test_a_text_message_is_told_to_the_peer_as_a_protocol_error() -> None:
    async def send_text(peer: aiohttp.ClientWebSocketResponse) -> None:
        await peer.send_str('{"t":"ping","nonce":1}')

    [_, error], close = await _close_after(send_text)
    body = json.loads(error[1:])
    assert (body["id"], body["kind"]) == (0, "protocol_error")
    assert "text WebSocket message; expected binary frames" in body["message"]
    assert close.data == aiohttp.WSCloseCode.PROTOCOL_ERROR
