"""A Channel runs one protocol Connection over one WebSocket.

It is the same on both sides and for both dialers: it flushes the outbox
through a single writer task (so frames leave in order), reads frames and
dispatches the connection's events, answers incoming calls with a Handler,
and offers ``call`` to the side that calls. Heartbeats run from a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from agent.errors import CallError, ConnectionLost, ProtocolError, RemoteError
from agent.protocol import Connection
from agent.protocol import events as ev
from agent.protocol.dispatch import Handler, IncomingCall
from agent.protocol.messages import CANCELLED, INTERNAL, UNKNOWN_SERVICE
from agent.transport.streams import InboundStream, OutboundCredit, connection_lost

log = logging.getLogger(__name__)

# Data frames wait while this much is queued for the socket, so that a small
# call's frames never queue behind a whole window of someone's upload.
WRITE_QUEUE_DATA_BYTES = 512 * 1024
HELLO_TIMEOUT = 30.0
TICK_SLACK = 0.005  # seconds late to wake, so that a timer firing early does not spin


class WebSocket(Protocol):
    """The part of aiohttp's client and server WebSockets that a channel uses."""

    async def send_bytes(self, data: bytes) -> None: ...
    async def receive(self) -> aiohttp.WSMessage: ...
    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


@dataclass(frozen=True)
class CallResult:
    value: Any
    stream: InboundStream | None


class Channel:
    def __init__(
        self,
        websocket: WebSocket,
        connection: Connection,
        *,
        peer_thumbprint: str,
        handler: Handler | None = None,
        peer_sha256: str | None = None,
    ) -> None:
        self.peer_thumbprint = peer_thumbprint
        # the peer's certificate as SHA-1 and, where known, SHA-256 thumbprints
        self.peer_thumbprints = frozenset(t for t in (peer_thumbprint, peer_sha256) if t)
        self._ws = websocket
        self._conn = connection
        self._handler = handler
        self._writes: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued_data = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._pending: dict[int, asyncio.Future[CallResult]] = {}
        self._handling: dict[int, asyncio.Task[None]] = {}
        self._inbound: dict[int, InboundStream] = {}
        self._outbound: dict[int, OutboundCredit] = {}
        self._hello: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self._closed_fully = asyncio.Event()
        self.close_reason: str | None = None

    # -- life cycle --------------------------------------------------------

    async def open(self) -> None:
        """Start reading and writing and wait for the peer's hello.

        Raises ProtocolError (no common version, garbage) or ConnectionLost.
        """
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="channel-writer"),
            asyncio.create_task(self._read_loop(), name="channel-reader"),
            asyncio.create_task(self._heartbeat_loop(), name="channel-heartbeat"),
        ]
        self._flush()
        try:
            await asyncio.wait_for(asyncio.shield(self._hello), HELLO_TIMEOUT)
        except TimeoutError:
            await self.close("no hello from the peer")
            raise ConnectionLost(f"the peer sent no hello within {HELLO_TIMEOUT:.0f} s") from None

    @property
    def peer_name(self) -> str:
        return self._conn.peer.name if self._conn.peer else "?"

    @property
    def calls_in_flight(self) -> int:
        return len(self._handling)

    async def drain(self) -> None:
        """Wait until every incoming call being handled has been answered."""
        while self._handling:
            await asyncio.wait(list(self._handling.values()))

    async def close(self, reason: str = "closed") -> None:
        """Fail what is pending, stop the tasks and close the socket. Idempotent.

        Returns once incoming calls have seen their cancellation (so their
        clean-up, such as removing a partial upload, is done) and the socket is closed.
        """
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        error = connection_lost(reason)
        if not self._hello.done():  # open() is waiting for it
            self._hello.set_exception(error)
            self._hello.exception()  # retrieved: nobody else need ever look
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        for stream in self._inbound.values():
            stream.fail(error)
        for credit in self._outbound.values():
            credit.fail(error)
        handlers = list(self._handling.values())
        for task in handlers:
            task.cancel()
        self._writes.put_nowait(None)
        current = asyncio.current_task()
        if self._tasks:
            writer, *others = self._tasks
            for task in others:
                if task is not current:
                    task.cancel()
            if writer is not current:  # let it send what is queued (a last error, say)
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(writer, 5)
        await asyncio.gather(*handlers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._ws.close()
        self._closed_fully.set()

    async def wait_closed(self) -> None:
        """Wait until the channel is closed and its clean-up is done."""
        await self._closed_fully.wait()

    # -- calling -----------------------------------------------------------

    async def call(
        self,
        service: str,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        upload: AsyncIterable[bytes] | None = None,
    ) -> CallResult:
        """Call the peer and wait for its answer.

        With ``upload``, its bytes are streamed to the peer alongside the call.
        Raises RemoteError if the call failed on the peer, ConnectionLost if the
        connection dropped. Cancelling the awaiting task cancels the remote call.
        """
        if self.closed.is_set():
            raise connection_lost(self.close_reason or "closed")
        call_id, stream = self._conn.call(
            service, method, params or {}, with_stream=upload is not None
        )
        future: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self._flush()
        pump = None
        if upload is not None and stream is not None:
            pump = asyncio.create_task(self._pump(stream, upload))
        try:
            return await future
        except asyncio.CancelledError:
            self._conn.cancel(call_id)
            self._conn.forget(call_id)
            self._flush()
            raise
        finally:
            self._pending.pop(call_id, None)
            if pump is not None:
                await _finish(pump)

    # -- sending -----------------------------------------------------------

    def _flush(self) -> None:
        for frame in self._conn.frames_to_send():
            if frame[:1] == b"D":
                self._queued_data += len(frame)
                if self._queued_data > WRITE_QUEUE_DATA_BYTES:
                    self._drained.clear()
            self._writes.put_nowait(frame)

    async def _write_loop(self) -> None:
        try:
            while (frame := await self._writes.get()) is not None:
                await self._ws.send_bytes(frame)
                if frame[:1] == b"D":
                    self._queued_data -= len(frame)
                    if self._queued_data <= WRITE_QUEUE_DATA_BYTES:
                        self._drained.set()
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as error:
            self._close_soon(f"write failed: {error}")

    async def _pump(self, stream: int, source: AsyncIterable[bytes]) -> None:
        """Send ``source`` on ``stream`` within the peer's window, then end it."""
        credit = OutboundCredit()
        self._outbound[stream] = credit
        try:
            async for chunk in source:
                view = memoryview(chunk)
                while view:
                    while self._conn.credit(stream) == 0 or not self._drained.is_set():
                        if not self._drained.is_set():
                            await self._drained.wait()
                        else:
                            await credit.wait()
                    size = min(len(view), self._conn.credit(stream), self._conn.max_chunk())
                    self._conn.send_data(stream, view[:size])
                    view = view[size:]
                    self._flush()
            self._conn.end_stream(stream)
        except BaseException as error:
            self._conn.end_stream(stream, f"the sender stopped: {error!r}")
            raise
        finally:
            self._outbound.pop(stream, None)
            self._flush()

    # -- receiving ---------------------------------------------------------

    async def _read_loop(self) -> None:
        reason = "the peer closed the connection"
        try:
            while True:
                message = await self._ws.receive()
                if message.type != aiohttp.WSMsgType.BINARY:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        raise ProtocolError("text WebSocket message; expected binary frames")
                    if message.type == aiohttp.WSMsgType.ERROR:
                        reason = f"connection error: {message.data}"
                    break
                for event in self._conn.receive_frame(message.data, time.monotonic()):
                    self._dispatch(event)
                self._flush()
        except ProtocolError as error:
            reason = f"protocol error: {error}"
            log.warning("closing the connection to %s: %s", self.peer_thumbprint, error)
            self._flush()
            if not self._hello.done():
                self._hello.set_exception(error)
        except (ConnectionError, aiohttp.ClientError) as error:
            reason = str(error)
        if not self._hello.done():
            self._hello.set_exception(connection_lost(reason))
        self._close_soon(reason)

    def _close_soon(self, reason: str) -> None:
        """Close from inside one of the channel's own tasks (which close() cancels)."""
        if self._closing is None:
            self._closing = asyncio.create_task(self.close(reason), name="channel-close")

    async def _heartbeat_loop(self) -> None:
        while True:
            # a timer, not synchronisation: sleep until a ping or the silence check is due
            await asyncio.sleep(max(0.0, self._conn.next_tick() - time.monotonic()) + TICK_SLACK)
            for event in self._conn.tick(time.monotonic()):
                if isinstance(event, ev.PeerSilent):
                    log.warning(
                        "peer %s silent for %.1f s; closing", self.peer_thumbprint, event.seconds
                    )
                    self._close_soon(f"no heartbeat for {event.seconds:.1f} s")
                    return
            self._flush()

    def _dispatch(self, event: ev.Event) -> None:
        match event:
            case ev.HelloReceived():
                if not self._hello.done():
                    self._hello.set_result(None)
            case ev.CallReceived(call=call):
                stream = self._new_inbound(call.stream) if call.stream is not None else None
                incoming = IncomingCall(
                    call.service, call.method, call.params, stream, self.peer_thumbprint
                )
                self._handling[call.id] = asyncio.create_task(self._answer(call.id, incoming))
            case ev.ResultReceived(id=call_id, value=value, stream=stream_id):
                stream = self._new_inbound(stream_id) if stream_id is not None else None
                self._resolve(call_id, CallResult(value, stream))
            case ev.ErrorReceived(id=call_id, kind=kind, message=text):
                self._resolve(call_id, RemoteError(kind, text))
            case ev.CancelReceived(id=call_id):
                task = self._handling.get(call_id)
                if task is not None:
                    task.cancel()
            case ev.DataReceived(stream=stream_id, chunk=chunk):
                if (inbound := self._inbound.get(stream_id)) is not None:
                    inbound.feed(chunk)
            case ev.StreamEnded(stream=stream_id, error=error):
                if (inbound := self._inbound.pop(stream_id, None)) is not None:
                    inbound.end(error)
                elif (credit := self._outbound.get(stream_id)) is not None:
                    credit.fail(RemoteError("stream_abandoned", error or "abandoned"))
            case ev.WindowOpened(stream=stream_id):
                if (credit := self._outbound.get(stream_id)) is not None:
                    credit.opened()

    def _new_inbound(self, stream_id: int) -> InboundStream:
        def grant(count: int) -> None:
            self._conn.consumed(stream_id, count)
            self._flush()

        def abandon(reason: str) -> None:
            if self._inbound.pop(stream_id, None) is not None:
                self._conn.abandon(stream_id, reason)
                self._flush()

        stream = InboundStream(stream_id, grant, abandon)
        self._inbound[stream_id] = stream
        return stream

    def _resolve(self, call_id: int, outcome: CallResult | RemoteError) -> None:
        future = self._pending.get(call_id)
        if future is None or future.done():
            if isinstance(outcome, CallResult) and outcome.stream is not None:
                outcome.stream.abandon("nobody is waiting for this call")
            return
        if isinstance(outcome, RemoteError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    async def _answer(self, call_id: int, call: IncomingCall) -> None:
        """Run the handler for one incoming call and send its answer (and stream)."""
        try:
            if self._handler is None:
                raise CallError(UNKNOWN_SERVICE, "this side serves no calls")
            reply = await self._handler(call)
        except asyncio.CancelledError:
            self._send_error(call_id, CANCELLED, "the call was cancelled")
            raise
        except (CallError, RemoteError) as error:
            self._send_error(call_id, error.kind, str(error))
            return
        except ConnectionLost:
            return
        except Exception as error:
            log.exception("call %s.%s failed", call.service, call.method)
            self._send_error(call_id, INTERNAL, f"{type(error).__name__}: {error}")
            return
        finally:
            self._handling.pop(call_id, None)
            if isinstance(call.stream, InboundStream):
                call.stream.abandon("the call finished")
        if self.closed.is_set() or self._conn.closed:
            return
        stream = self._conn.result(call_id, reply.value, with_stream=reply.stream is not None)
        self._flush()
        if reply.stream is not None and stream is not None:
            with contextlib.suppress(RemoteError, ConnectionLost):
                await self._pump(stream, reply.stream)

    def _send_error(self, call_id: int, kind: str, message: str) -> None:
        """Fail an incoming call, unless the connection is already gone."""
        if not self.closed.is_set() and not self._conn.closed:
            self._conn.error(call_id, kind, message)
            self._flush()


async def _finish(task: asyncio.Task[None]) -> None:
    """Stop a helper task and wait for it, swallowing its failure (the call reports)."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task
