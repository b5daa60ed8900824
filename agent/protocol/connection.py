"""The sans-I/O connection: frames in, events out; frames to send in an outbox.

One Connection per transport connection, on each side. It owns the hello,
call ids, stream ids, flow-control windows and heartbeats; it does no I/O and
reads no clock (callers pass ``now``). Whoever dialed uses odd stream ids,
whoever accepted uses even ones, so both sides can open streams at once.

Contract: ``receive_frame`` raises ProtocolError (and only that) when the
peer broke the protocol; the connection is then closed, the outbox ends with
an ``error`` with id 0 that tells the peer which rule or limit it broke
(unless the peer itself ended the connection that way), and the caller should
send what is in the outbox and drop the transport with a protocol-error close.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.errors import ProtocolError
from agent.protocol import events as ev
from agent.protocol.frames import MAX_STREAM_ID, Data, data_frame, decode_frame, message_frame
from agent.protocol.limits import Limits
from agent.protocol.messages import (
    LIMIT_EXCEEDED,
    PROTOCOL_ERROR,
    PROTOCOL_NAME,
    UNSUPPORTED_VERSION,
    Call,
    Cancel,
    End,
    Error,
    Hello,
    Message,
    Ping,
    Pong,
    Result,
    Window,
)

SUPPORTED_VERSIONS = (1,)
SILENT_INTERVALS = 3
# seconds. One ping and one pong per interval is what an idle connection costs: at
# 30 s, 10,000 idle polling connections cost their listener ~2.5% of a core
# (at 10 s it was ~8%), and a dead peer is still found within 90 s (docs/protocol.md §6).
DEFAULT_HEARTBEAT_INTERVAL = 30.0
ACCEPTOR_PING_DELAY = 1.5  # intervals of quiet before the acceptor pings


@dataclass
class _Outbound:
    credit: int


@dataclass
class _Inbound:
    window: int
    ungranted: int = 0


@dataclass
class _Heartbeat:
    interval: float
    last_received: float
    last_ping: float
    quiet_before_ping: float  # the acceptor waits longer, so one side pings and the other answers
    nonce: int = 0


@dataclass
class _State:
    next_call: int = 1
    next_stream: int = 1
    calls_out: set[int] = field(default_factory=set)
    calls_forgotten: set[int] = field(default_factory=set)  # given up, still unanswered
    calls_in: set[int] = field(default_factory=set)
    streams_out: dict[int, _Outbound] = field(default_factory=dict)
    streams_in: dict[int, _Inbound] = field(default_factory=dict)
    highest_peer_stream: int = 0


class Connection:
    def __init__(
        self,
        hello: Hello,
        *,
        dialer: bool,
        now: float,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        limits: Limits | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.peer: Hello | None = None
        self.peer_limits = Limits()
        self.version: int | None = None
        self.closed = False
        self._peer_told = False  # the peer knows why the connection ends (an id 0 error)
        self._outbox: list[bytes] = []
        self._state = _State(next_stream=1 if dialer else 2)
        quiet = heartbeat_interval * (1.0 if dialer else ACCEPTOR_PING_DELAY)
        self._heartbeat = _Heartbeat(heartbeat_interval, now, now, quiet)
        self._send(Hello(**{**hello.__dict__, "limits": self.limits.as_dict()}))

    @property
    def heartbeat_interval(self) -> float:
        return self._heartbeat.interval

    # -- output ------------------------------------------------------------

    def frames_to_send(self) -> list[bytes]:
        """Take every frame queued since the last call, in order."""
        frames, self._outbox = self._outbox, []
        return frames

    def _send(self, message: Message) -> None:
        self._outbox.append(message_frame(message))

    # -- calling -----------------------------------------------------------

    def call(
        self, service: str, method: str, params: dict[str, Any], *, with_stream: bool = False
    ) -> tuple[int, int | None]:
        """Queue a call; returns its id and, if asked, the id of the stream it carries.

        Raises ValueError when the peer's ``max_calls_in_flight`` calls are
        already awaiting an answer (see :meth:`call_room`): wait for one first.
        """
        self._require_open()
        if self.call_room() <= 0:
            raise ValueError(
                f"the peer accepts max_calls_in_flight={self.peer_limits.max_calls_in_flight} "
                "calls at once; wait for an answer first"
            )
        if with_stream:
            self._require_stream_room()
        call_id = self._state.next_call
        self._state.next_call += 1
        stream = self._open_outbound() if with_stream else None
        self._state.calls_out.add(call_id)
        self._send(Call(call_id, service, method, params, stream))
        return call_id, stream

    def cancel(self, call_id: int) -> None:
        """Ask the peer to cancel a call; its answer (error kind cancelled) still comes."""
        if call_id in self._state.calls_out and not self.closed:
            self._send(Cancel(call_id))

    def forget(self, call_id: int) -> None:
        """Stop waiting for a call's answer (a local timeout); it is dropped when it comes.

        The call still counts against the peer's ``max_calls_in_flight`` until
        then, as it does on the peer's side.
        """
        if call_id in self._state.calls_out:
            self._state.calls_out.discard(call_id)
            self._state.calls_forgotten.add(call_id)

    def call_room(self) -> int:
        """How many more calls the peer accepts now (its limit less those unanswered)."""
        unanswered = len(self._state.calls_out) + len(self._state.calls_forgotten)
        return self.peer_limits.max_calls_in_flight - unanswered

    # -- answering ---------------------------------------------------------

    def result(self, call_id: int, value: Any, *, with_stream: bool = False) -> int | None:
        """Answer an incoming call; returns the id of the stream that follows, if asked.

        Raises ValueError if the peer's ``max_streams_in_flight`` of our streams
        are open (see :meth:`stream_room`); nothing is sent then.
        """
        if with_stream:
            self._require_stream_room()
        self._finish_incoming(call_id)
        stream = self._open_outbound() if with_stream else None
        self._send(Result(call_id, value, stream))
        return stream

    def error(self, call_id: int, kind: str, message: str) -> None:
        self._finish_incoming(call_id)
        self._send(Error(call_id, kind, message))

    def _finish_incoming(self, call_id: int) -> None:
        self._require_open()
        if call_id not in self._state.calls_in:
            raise ValueError(f"call {call_id} is not awaiting an answer")
        self._state.calls_in.discard(call_id)

    # -- streams -----------------------------------------------------------

    def credit(self, stream: int) -> int:
        """Bytes that may be sent on ``stream`` now; 0 if it is unknown or ended."""
        outbound = self._state.streams_out.get(stream)
        return outbound.credit if outbound else 0

    def max_chunk(self) -> int:
        """The largest chunk the peer accepts in one frame."""
        return self.peer_limits.largest_chunk

    def send_data(self, stream: int, chunk: bytes | memoryview) -> None:
        """Queue a chunk. Raises ValueError if it exceeds the credit or the chunk limit."""
        self._require_open()
        outbound = self._state.streams_out.get(stream)
        if outbound is None:
            raise ValueError(f"stream {stream} is not open for sending")
        if len(chunk) > min(outbound.credit, self.max_chunk()):
            raise ValueError(f"{len(chunk)} bytes exceed stream {stream}'s credit")
        outbound.credit -= len(chunk)
        self._outbox.append(data_frame(stream, chunk))

    def end_stream(self, stream: int, error: str | None = None) -> None:
        """End one of our streams (with ``error``: abandon it)."""
        if self._state.streams_out.pop(stream, None) is not None and not self.closed:
            self._send(End(stream, error))

    def consumed(self, stream: int, count: int) -> None:
        """The application took ``count`` bytes of an inbound stream: grant that much again.

        Grants are batched to a quarter of the window, so a stream costs one
        window message per quarter window rather than one per chunk.
        """
        inbound = self._state.streams_in.get(stream)
        if inbound is None or count <= 0 or self.closed:
            return
        inbound.ungranted += count
        if inbound.ungranted >= self.limits.stream_window_bytes // 4:
            inbound.window += inbound.ungranted
            self._send(Window(stream, inbound.ungranted))
            inbound.ungranted = 0

    def abandon(self, stream: int, reason: str) -> None:
        """Stop receiving an inbound stream; the peer is told to stop sending."""
        if self._state.streams_in.pop(stream, None) is not None and not self.closed:
            self._send(End(stream, reason))

    def stream_room(self) -> int:
        """How many more streams the peer accepts from us now."""
        return self.peer_limits.max_streams_in_flight - len(self._state.streams_out)

    def _require_stream_room(self) -> None:
        if self.stream_room() <= 0:
            raise ValueError(
                f"the peer accepts max_streams_in_flight="
                f"{self.peer_limits.max_streams_in_flight} streams at once; end one first"
            )

    def _open_outbound(self) -> int:
        stream = self._state.next_stream
        if stream > MAX_STREAM_ID:
            raise ProtocolError("stream ids exhausted on this connection")
        self._state.next_stream += 2
        self._state.streams_out[stream] = _Outbound(self.peer_limits.stream_window_bytes)
        return stream

    def _open_inbound(self, stream: int) -> None:
        if stream in self._state.streams_in or stream <= self._state.highest_peer_stream:
            raise ProtocolError(f"peer reused stream id {stream}")
        if stream % 2 == self._state.next_stream % 2:
            raise ProtocolError(f"peer opened stream {stream}, an id of ours")
        if len(self._state.streams_in) >= self.limits.max_streams_in_flight:
            raise ProtocolError(
                f"peer opened more than max_streams_in_flight="
                f"{self.limits.max_streams_in_flight} streams",
                limit="max_streams_in_flight",
            )
        self._state.highest_peer_stream = stream
        self._state.streams_in[stream] = _Inbound(self.limits.stream_window_bytes)

    # -- input -------------------------------------------------------------

    def receive_frame(self, frame: bytes, now: float) -> list[ev.Event]:
        """Digest one frame from the peer. Raises ProtocolError if it broke the protocol."""
        self._require_open()
        self._heartbeat.last_received = now
        try:
            decoded = decode_frame(frame, self.limits)
            if self.peer is None:
                return [self._on_hello(decoded)]
            if isinstance(decoded, Data):
                return self._on_data(decoded)
            return self._on_message(decoded)
        except ProtocolError as error:
            self.fail(error)
            raise

    def fail(self, error: ProtocolError) -> None:
        """Close the connection because the peer broke the protocol (also for what the
        transport saw, such as a text WebSocket message): the outbox then ends with an
        ``error`` with id 0 naming the rule or limit, unless the peer already knows."""
        self.closed = True
        if not self._peer_told:
            self._peer_told = True
            kind = LIMIT_EXCEEDED if error.limit else PROTOCOL_ERROR
            self._send(Error(0, kind, str(error)))

    def tick(self, now: float) -> list[ev.Event]:
        """Let time pass: ping a peer quiet for an interval; report one silent for three.

        Pings only when nothing has arrived for an interval (any frame proves
        the peer alive, and its pong answers for both sides); the acceptor
        waits half an interval longer, so on an idle connection the dialer
        pings, the acceptor answers, and one ping and one pong per interval
        are all it costs.
        """
        if self.closed:
            return []
        beat = self._heartbeat
        silent = now - beat.last_received
        if silent >= SILENT_INTERVALS * beat.interval:
            return [ev.PeerSilent(silent)]
        if now >= self._ping_due():
            beat.last_ping = now
            beat.nonce += 1
            self._send(Ping(beat.nonce))
        return []

    def next_tick(self) -> float:
        """The time by which :meth:`tick` must next be called (earlier is harmless)."""
        beat = self._heartbeat
        return min(self._ping_due(), beat.last_received + SILENT_INTERVALS * beat.interval)

    def _ping_due(self) -> float:
        beat = self._heartbeat
        return max(beat.last_received, beat.last_ping) + beat.quiet_before_ping

    def _on_hello(self, decoded: Message | Data) -> ev.Event:
        if not isinstance(decoded, Hello):
            name = type(decoded).__name__.lower()
            raise ProtocolError(f"expected hello first, got {name}")
        common = set(decoded.versions) & set(SUPPORTED_VERSIONS)
        if decoded.protocol != PROTOCOL_NAME or not common:
            detail = (
                f"peer speaks {decoded.protocol} versions {list(decoded.versions)}, "
                f"this side {PROTOCOL_NAME} versions {list(SUPPORTED_VERSIONS)}"
            )
            self._send(Error(0, UNSUPPORTED_VERSION, detail))
            self._peer_told = True
            raise ProtocolError(f"no common protocol version: {detail}")
        self.peer_limits = Limits.from_dict(decoded.limits)  # raises for unworkable limits
        self.peer = decoded
        self.version = max(common)
        return ev.HelloReceived(decoded, self.version)

    def _on_data(self, data: Data) -> list[ev.Event]:
        inbound = self._state.streams_in.get(data.stream)
        if inbound is None:
            if data.stream <= self._state.highest_peer_stream:
                return []  # a stream we abandoned; its last chunks were in flight
            raise ProtocolError(f"data for stream {data.stream}, which was never opened")
        inbound.window -= len(data.chunk)
        if inbound.window < 0:
            raise ProtocolError(
                f"stream {data.stream} overran its window of stream_window_bytes="
                f"{self.limits.stream_window_bytes}",
                limit="stream_window_bytes",
            )
        return [ev.DataReceived(data.stream, data.chunk)]

    def _on_message(self, message: Message) -> list[ev.Event]:
        match message:
            case Call():
                return self._on_call(message)
            case Result(id=call_id, value=value, stream=stream):
                expected = self._answer_expected(call_id)
                if stream is not None:
                    self._open_inbound(stream)
                    if not expected:
                        self.abandon(stream, "the call was abandoned")
                return [ev.ResultReceived(call_id, value, stream)] if expected else []
            case Error(id=call_id, kind=kind, message=text):
                if call_id == 0:
                    self._peer_told = True  # it ended the connection: nothing to answer
                    raise ProtocolError(f"peer closed the connection: {kind}: {text}")
                if not self._answer_expected(call_id):
                    return []
                return [ev.ErrorReceived(call_id, kind, text)]
            case Cancel(id=call_id):
                return [ev.CancelReceived(call_id)] if call_id in self._state.calls_in else []
            case End(stream=stream, error=error):
                return self._on_end(stream, error)
            case Window(stream=stream, increment=increment):
                outbound = self._state.streams_out.get(stream)
                if outbound is None:
                    return []  # already ended on our side
                outbound.credit += increment
                return [ev.WindowOpened(stream, outbound.credit)]
            case Ping(nonce=nonce):
                self._send(Pong(nonce))
                return []
            case Pong():
                return []
            case Hello():
                raise ProtocolError("peer sent a second hello")
        raise ProtocolError(f"unexpected message {message!r:.80}")  # pragma: no cover

    def _on_call(self, call: Call) -> list[ev.Event]:
        if call.id == 0:
            raise ProtocolError("call id 0 is reserved for the connection; call ids count from 1")
        if call.id in self._state.calls_in:
            raise ProtocolError(
                f"peer reused call id {call.id} while it was in flight; "
                "an id may be used again only after its answer"
            )
        if call.stream is not None:
            self._open_inbound(call.stream)
        self._state.calls_in.add(call.id)
        if len(self._state.calls_in) > self.limits.max_calls_in_flight:
            if call.stream is not None:
                self.abandon(call.stream, LIMIT_EXCEEDED)
            self.error(
                call.id,
                LIMIT_EXCEEDED,
                f"more than max_calls_in_flight={self.limits.max_calls_in_flight} calls",
            )
            return []
        return [ev.CallReceived(call)]

    def _on_end(self, stream: int, error: str | None) -> list[ev.Event]:
        if self._state.streams_in.pop(stream, None) is not None:
            return [ev.StreamEnded(stream, error)]
        if self._state.streams_out.pop(stream, None) is not None:
            return [ev.StreamEnded(stream, error or "abandoned by the peer")]
        return []

    def _answer_expected(self, call_id: int) -> bool:
        if call_id in self._state.calls_out:
            self._state.calls_out.discard(call_id)
            return True
        if call_id in self._state.calls_forgotten:
            self._state.calls_forgotten.discard(call_id)
            return False
        if 0 < call_id < self._state.next_call:
            return False  # forgotten after a local timeout
        raise ProtocolError(f"answer for call {call_id}, which was never made")

    def _require_open(self) -> None:
        if self.closed:
            raise ProtocolError("the connection is closed")
