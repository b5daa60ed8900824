"""A Channel runs one protocol Connection over one WebSocket.

It is the same on both sides and for both dialers: it flushes the outbox
through a single writer task (so frames leave in order), reads frames and
dispatches the connection's events, answers incoming calls with a Handler,
and offers ``call`` to the side that calls. Heartbeats run from a timer.

Back-pressure: what waits for the socket is bounded. Stream data waits while
more than WRITE_QUEUE_DATA_BYTES are queued; answers wait, and the reader
stops taking new frames, while more than WRITE_QUEUE_HIGH_WATER are, so a peer
that does not read its answers holds at most its calls in flight here, and
TCP pushes back on it. Calls beyond the peer's ``max_calls_in_flight`` wait
their turn, first come first served.

Every task a channel starts (answers, stream pumps, its own loops) ends
before :meth:`Channel.close` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from agent.errors import CallError, ConnectionLost, ProtocolError, RemoteError
from agent.protocol import Connection
from agent.protocol import events as ev
from agent.protocol.calls import Handler, IncomingCall, Reply
from agent.protocol.messages import CANCELLED, INTERNAL, UNKNOWN_SERVICE
from agent.transport.streams import InboundStream, OutboundCredit, connection_lost
from agent.transport.turns import Turns

log = logging.getLogger(__name__)

# Data frames wait while this much is queued for the socket, so that a small
# call's frames never queue behind a whole window of someone's upload.
WRITE_QUEUE_DATA_BYTES = 512 * 1024
# Answers (and the reader) wait while this much is queued: above the data
# bound plus a chunk, so that streams alone never hold answers back.
WRITE_QUEUE_HIGH_WATER = 1024 * 1024
WRITER_GRACE = 5.0  # seconds close() lets the writer send what is queued (a last error)
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


@dataclass(frozen=True)
class _Failure:
    kind: str
    message: str


class Channel:
    def __init__(
        self,
        websocket: WebSocket,
        connection: Connection,
        *,
        peer_thumbprint: str,
        handler: Handler | None = None,
        peer_sha256: str | None = None,
        transport: asyncio.Transport | None = None,
    ) -> None:
        """``transport`` is the socket under ``websocket``, where known: close()
        aborts it when the peer does not read, rather than leave the
        connection to linger."""
        self._transport = transport
        self.peer_thumbprint = peer_thumbprint
        # the peer's certificate as SHA-1 and, where known, SHA-256 thumbprints
        self.peer_thumbprints = frozenset(t for t in (peer_thumbprint, peer_sha256) if t)
        self._ws = websocket
        self._conn = connection
        self._handler = handler
        self._writes: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued = 0  # bytes handed to the writer and not yet sent
        self._data_room = asyncio.Event()  # set while stream data may be queued
        self._data_room.set()
        self._room = asyncio.Event()  # set while answers may be queued and frames read
        self._room.set()
        self._pending: dict[int, asyncio.Future[CallResult]] = {}
        self._turns = Turns(connection.call_room)
        self._streams_reserved = 0  # by calls waiting for their turn with an upload
        self._stream_ended = asyncio.Event()  # one of our streams ended: room for another
        self._handling: dict[int, asyncio.Task[None]] = {}  # by call id, until handled
        # incoming calls whose answer is not sent yet, with the task that answers
        self._unsent: dict[int, asyncio.Task[None]] = {}
        self._answer_sent = asyncio.Event()  # one of them was answered (or dropped)
        self._started: set[asyncio.Task[None]] = set()  # answers and pumps, until they end
        self._inbound: dict[int, InboundStream] = {}
        self._outbound: dict[int, OutboundCredit] = {}
        self._hello: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self._closed_fully = asyncio.Event()
        self.close_reason: str | None = None
        self.went_silent = False  # closed because the peer sent no heartbeat (metrics count it)
        self._broken = False  # the peer broke the protocol: close as a protocol error

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
            async with asyncio.timeout(HELLO_TIMEOUT):
                await asyncio.shield(self._hello)
        except TimeoutError:
            await self.close("no hello from the peer")
            raise ConnectionLost(f"the peer sent no hello within {HELLO_TIMEOUT:.0f} s") from None

    @property
    def peer_name(self) -> str:
        return self._conn.peer.name if self._conn.peer else "?"

    @property
    def peer_services(self) -> tuple[str, ...]:
        """The ``name/version`` services the peer's hello listed (none before it came)."""
        return self._conn.peer.services if self._conn.peer else ()

    @property
    def calls_in_flight(self) -> int:
        return len(self._handling)

    @property
    def busy(self) -> bool:
        """Whether anything is under way: a call of ours unanswered, a stream in either
        direction, or a call of the peer's being handled (an idle channel may be closed)."""
        return bool(self._pending or self._inbound or self._outbound or self._handling)

    @property
    def queued_bytes(self) -> int:
        """Bytes of frames waiting for the socket."""
        return self._queued

    @property
    def socket_backlog(self) -> int:
        """Bytes the socket has taken but not yet sent (0 where the transport is unknown)."""
        if self._transport is None or self._transport.is_closing():
            return 0
        return self._transport.get_write_buffer_size()

    async def drain(self) -> None:
        """Wait until every incoming call has been answered.

        Streams still being sent are not waited for (a peer may never read
        one); close() ends them.
        """
        while self._unsent:
            self._answer_sent.clear()
            await self._answer_sent.wait()

    async def close(self, reason: str = "closed", *, code: int = aiohttp.WSCloseCode.OK) -> None:
        """Fail what is pending, stop every task and close the socket with ``code``. Idempotent.

        Returns once every task the channel started has ended: incoming calls
        have seen their cancellation (so their clean-up, such as removing a
        partial upload, is done), streams are ended and their sources closed,
        and the socket is closed (or, for a peer that does not read even the
        close frame, given up on after WRITER_GRACE).
        """
        if self.closed.is_set():
            current = asyncio.current_task()
            if current not in self._started and current not in self._tasks:
                await self._closed_fully.wait()  # whoever began closing finishes it
            return
        if self._broken:  # whoever closes (open() failing, say), the peer learns it was that
            code = aiohttp.WSCloseCode.PROTOCOL_ERROR
        self.close_reason = reason
        self.closed.set()
        try:
            await self._shut_down(reason, code)
        finally:  # even if this close is cancelled, nobody waits for it for ever
            self._closed_fully.set()

    async def _shut_down(self, reason: str, code: int) -> None:
        """What close() does once: fail the waiting, end the tasks, close the socket."""
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
        self._turns.fail(error)
        self._stream_ended.set()  # whoever waits for a stream place sees the close
        current = asyncio.current_task()
        started = [task for task in self._started if task is not current]
        for task in started:
            task.cancel()
        self._writes.put_nowait(None)
        if self._tasks:
            writer, *others = self._tasks
            for task in others:
                if task is not current:
                    task.cancel()
            if writer is not current:  # let it send what is queued (a last error, say)
                unknown_socket = self._transport is None  # cancelling is all there is
                if not await _ended_within(writer, WRITER_GRACE, cancel=unknown_socket):
                    self._give_up_on_the_peer()
                    await _ended_within(writer, WRITER_GRACE)
            await asyncio.gather(*(t for t in others if t is not current), return_exceptions=True)
        await asyncio.gather(*started, return_exceptions=True)
        # A peer that does not read never lets the close frame out (the socket's buffer
        # is full), and aiohttp would wait for it for ever: the wait is bounded.
        closing = asyncio.ensure_future(self._ws.close(code=code, message=_close_message(reason)))
        if not await _ended_within(closing, WRITER_GRACE):
            self._give_up_on_the_peer()

    def _give_up_on_the_peer(self) -> None:
        """Drop a connection whose peer does not read: nothing more can reach it.

        Aborting the socket wakes a writer waiting for room with an error, which
        cancelling it would not do cleanly: aiohttp keeps the cancelled wait and
        every later send or close on that socket would raise CancelledError.
        """
        if self._transport is not None:
            self._transport.abort()

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
        if upload is not None:
            await self._stream_place()
            self._streams_reserved += 1
        try:
            await self._turns.enter()  # within the peer's max_calls_in_flight, in order
        finally:
            if upload is not None:
                self._streams_reserved -= 1
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
            pump = self._start(self._pump(stream, upload), "channel-upload")
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

    async def _stream_place(self) -> None:
        """Wait until the peer accepts another stream of ours (its max_streams_in_flight).

        The caller must open its stream without awaiting anything in between.
        """
        while self._conn.stream_room() - self._streams_reserved <= 0:
            if self.closed.is_set():
                raise connection_lost(self.close_reason or "closed")
            self._stream_ended.clear()
            await self._stream_ended.wait()

    def _start(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``work`` as a task of this channel: close() cancels and awaits it."""
        task = asyncio.create_task(work, name=name)
        self._started.add(task)
        task.add_done_callback(self._started.discard)
        return task

    def _flush(self) -> None:
        for frame in self._conn.frames_to_send():
            self._count_queued(len(frame))
            self._writes.put_nowait(frame)

    def _count_queued(self, change: int) -> None:
        self._queued += change
        for event, bound in ((self._data_room, WRITE_QUEUE_DATA_BYTES),
                             (self._room, WRITE_QUEUE_HIGH_WATER)):  # fmt: skip
            if self._queued > bound:
                event.clear()
            else:
                event.set()

    async def _write_loop(self) -> None:
        try:
            while (frame := await self._writes.get()) is not None:
                await self._ws.send_bytes(frame)  # waits while the socket is above its mark
                self._count_queued(-len(frame))
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
                    while self._conn.credit(stream) == 0 or not self._data_room.is_set():
                        if not self._data_room.is_set():
                            await self._data_room.wait()
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
            self._stream_ended.set()
            self._flush()
            await _close_source(source)

    # -- receiving ---------------------------------------------------------

    async def _read_loop(self) -> None:
        reason = "the peer closed the connection"
        try:
            while True:
                # a peer that does not read its answers gets no more read from it
                await self._room.wait()
                message = await self._ws.receive()
                if message.type != aiohttp.WSMsgType.BINARY:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        error = ProtocolError("text WebSocket message; expected binary frames")
                        self._conn.fail(error)
                        raise error
                    if message.type == aiohttp.WSMsgType.ERROR:
                        reason = f"connection error: {message.data}"
                    break
                for event in self._conn.receive_frame(message.data, time.monotonic()):
                    self._dispatch(event)
                self._flush()
                self._turns.wake()  # an answer (even to a forgotten call) frees a place
        except ProtocolError as error:
            self._broken = True
            reason = f"protocol error: {error}"
            log.warning("closing the connection to %s: %s", self.peer_thumbprint, error)
            self._flush()  # the error with id 0 that tells the peer why
            if not self._hello.done():
                self._hello.set_exception(error)
            self._close_soon(reason, code=aiohttp.WSCloseCode.PROTOCOL_ERROR)
            return
        except (ConnectionError, aiohttp.ClientError) as error:
            reason = str(error)
        if not self._hello.done():
            self._hello.set_exception(connection_lost(reason))
        self._close_soon(reason)

    def _close_soon(self, reason: str, *, code: int = aiohttp.WSCloseCode.OK) -> None:
        """Close from inside one of the channel's own tasks (which close() cancels)."""
        if self._closing is None:
            self._closing = asyncio.create_task(self.close(reason, code=code), name="channel-close")

    async def _heartbeat_loop(self) -> None:
        while True:
            # a timer, not synchronisation: sleep until a ping or the silence check is due
            await asyncio.sleep(max(0.0, self._conn.next_tick() - time.monotonic()) + TICK_SLACK)
            for event in self._conn.tick(time.monotonic()):
                if isinstance(event, ev.PeerSilent):
                    log.warning(
                        "peer %s silent for %.1f s; closing", self.peer_thumbprint, event.seconds
                    )
                    self.went_silent = True
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
                task = self._start(self._answer(call.id, incoming), f"channel-answer-{call.id}")
                task.add_done_callback(functools.partial(self._unanswered, call.id))
                self._handling[call.id] = task
                self._unsent[call.id] = task
            case ev.ResultReceived(id=call_id, value=value, stream=stream_id):
                stream = self._new_inbound(stream_id) if stream_id is not None else None
                self._resolve(call_id, CallResult(value, stream))
            case ev.ErrorReceived(id=call_id, kind=kind, message=text):
                self._resolve(call_id, RemoteError(kind, text))
            case ev.CancelReceived(id=call_id):
                if (handling := self._handling.get(call_id)) is not None:
                    handling.cancel()
            case ev.DataReceived(stream=stream_id, chunk=chunk):
                if (inbound := self._inbound.get(stream_id)) is not None:
                    inbound.feed(chunk)
            case ev.StreamEnded(stream=stream_id, error=error):
                if (inbound := self._inbound.pop(stream_id, None)) is not None:
                    inbound.end(error)
                elif (credit := self._outbound.get(stream_id)) is not None:
                    credit.fail(RemoteError("stream_abandoned", error or "abandoned"))
                self._stream_ended.set()
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
        """Run the handler for one incoming call and send its answer (and stream).

        The answer waits while the socket is backed up, like everything else.
        """
        try:
            outcome = await self._outcome(call)
        finally:
            self._handling.pop(call_id, None)
            if isinstance(call.stream, InboundStream):
                call.stream.abandon("the call finished")
        source = outcome.stream if isinstance(outcome, Reply) else None
        try:
            if outcome is None:
                return
            await self._room.wait()
            if source is not None:
                await self._stream_place()
            if self.closed.is_set() or self._conn.closed:
                return
            if isinstance(outcome, _Failure):
                self._conn.error(call_id, outcome.kind, outcome.message)
                self._flush()
                return
            stream = self._conn.result(call_id, outcome.value, with_stream=source is not None)
            self._flush()
            self._sent(call_id, asyncio.current_task())
            if source is not None and stream is not None:
                with contextlib.suppress(RemoteError, ConnectionLost):
                    await self._pump(stream, source)
        finally:
            self._sent(call_id, asyncio.current_task())
            await _close_source(source)  # unless sent (and closed) already; a no-op then

    def _sent(self, call_id: int, task: asyncio.Task[Any] | None) -> None:
        """``task``'s answer to ``call_id`` is sent (or never will be): drain() need not
        wait. (The peer may reuse the id once answered: that is another task's.)"""
        if task is not None and self._unsent.get(call_id) is task:
            del self._unsent[call_id]
            self._answer_sent.set()

    def _unanswered(self, call_id: int, task: asyncio.Task[None]) -> None:
        """A call cancelled before its task ever ran still gets its answer."""
        if self._handling.get(call_id) is task:
            del self._handling[call_id]
        self._sent(call_id, task)
        if task.cancelled() and not self.closed.is_set() and not self._conn.closed:
            with contextlib.suppress(ValueError):  # answered already
                self._conn.error(call_id, CANCELLED, "the call was cancelled")
                self._flush()

    async def _outcome(self, call: IncomingCall) -> Reply | _Failure | None:
        """What the handler answers; None if the connection dropped under it."""
        try:
            if self._handler is None:
                raise CallError(UNKNOWN_SERVICE, "this side serves no calls")
            return await self._handler(call)
        except asyncio.CancelledError:
            if self.closed.is_set():
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the peer cancelled the call: answer that, as usual
            return _Failure(CANCELLED, "the call was cancelled")
        except (CallError, RemoteError) as error:
            return _Failure(error.kind, str(error))
        except ConnectionLost:
            return None
        except Exception as error:
            log.exception("call %s.%s failed", call.service, call.method)
            return _Failure(INTERNAL, f"{type(error).__name__}: {error}")


def _close_message(reason: str) -> bytes:
    """A WebSocket close reason: at most 123 bytes of UTF-8."""
    encoded = reason.encode("utf-8")[:123]
    return encoded.decode("utf-8", "ignore").encode("utf-8")


async def _close_source(source: AsyncIterable[bytes] | None) -> None:
    """Close a stream's source (an async generator holding a file, say) now, not at GC."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


async def _finish(task: asyncio.Task[None]) -> None:
    """Stop a helper task and wait for it, swallowing its failure (the call reports)."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task


async def _ended_within(task: asyncio.Future[Any], seconds: float, *, cancel: bool = True) -> bool:
    """Wait up to ``seconds`` for ``task``; then cancel it (with ``cancel``) if it still runs.

    Returns whether it ended by itself. Whatever it raised, a CancelledError
    included, stays with it: only the caller's own cancellation propagates.
    """
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done and not cancel:
        return False
    if not done:
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return bool(done)
