"""The connection state machine, driven frame by frame with no I/O."""

from __future__ import annotations

import json

import pytest

from agent.errors import ProtocolError
from agent.protocol import Connection, Limits, message_frame
from agent.protocol import events as ev
from agent.protocol.messages import Call, Hello, Result
from tests.helpers.protocol import ConnectionPair, hello


@pytest.fixture
def pair() -> ConnectionPair:
    connected = ConnectionPair()
    connected.handshake()
    return connected


def test_hello_exchange_agrees_on_a_version() -> None:
    pair = ConnectionPair()
    [event] = pair.deliver(pair.dialer)
    assert isinstance(event, ev.HelloReceived)
    assert event.hello.name == "dialer"
    assert event.version == 1
    assert pair.acceptor.peer_limits == Limits()


def test_no_common_version_fails_naming_both_sides() -> None:
    old = Connection(hello("old", versions=(7,)), dialer=True, now=0)
    new = Connection(hello("new"), dialer=False, now=0)
    with pytest.raises(ProtocolError, match=r"peer speaks tentacle-rpc versions \[7\], this side"):
        new.receive_frame(old.frames_to_send()[0], 0)
    # the refusal reaches the old side as a typed error, too
    new_frames = new.frames_to_send()
    old.receive_frame(new_frames[0], 0)
    with pytest.raises(ProtocolError, match="unsupported_version"):
        old.receive_frame(new_frames[1], 0)


def test_anything_before_hello_is_a_protocol_error() -> None:
    connection = Connection(hello("a"), dialer=False, now=0)
    with pytest.raises(ProtocolError, match="expected hello first, got call"):
        connection.receive_frame(message_frame(Call(1, "s", "m")), 0)
    with pytest.raises(ProtocolError, match="closed"):
        connection.receive_frame(b"", 0)


def test_a_call_and_its_result(pair: ConnectionPair) -> None:
    call_id, stream = pair.dialer.call("files", "download", {"Path": "a"})
    assert stream is None
    [received] = pair.deliver(pair.dialer)
    assert received == ev.CallReceived(Call(call_id, "files", "download", {"Path": "a"}))
    pair.acceptor.result(call_id, {"Length": 3})
    assert pair.deliver(pair.acceptor) == [ev.ResultReceived(call_id, {"Length": 3}, None)]


def test_many_calls_in_flight_answered_out_of_order(pair: ConnectionPair) -> None:
    ids = [pair.dialer.call("s", "m", {"n": n})[0] for n in range(5)]
    assert len(pair.deliver(pair.dialer)) == 5
    for call_id in reversed(ids):
        pair.acceptor.error(call_id, "internal", f"no {call_id}")
    answers = pair.deliver(pair.acceptor)
    assert [a.id for a in answers if isinstance(a, ev.ErrorReceived)] == list(reversed(ids))


def test_cancel_reaches_the_answering_side(pair: ConnectionPair) -> None:
    call_id, _ = pair.dialer.call("s", "m", {})
    pair.deliver(pair.dialer)
    pair.dialer.cancel(call_id)
    assert pair.deliver(pair.dialer) == [ev.CancelReceived(call_id)]
    pair.acceptor.error(call_id, "cancelled", "the call was cancelled")
    assert pair.deliver(pair.acceptor) == [
        ev.ErrorReceived(call_id, "cancelled", "the call was cancelled")
    ]


def test_an_answer_to_a_forgotten_call_is_dropped_and_its_stream_abandoned(
    pair: ConnectionPair,
) -> None:
    call_id, _ = pair.dialer.call("files", "download", {})
    pair.deliver(pair.dialer)
    pair.dialer.forget(call_id)
    stream = pair.acceptor.result(call_id, {}, with_stream=True)
    assert stream is not None
    pair.acceptor.send_data(stream, b"late")
    assert pair.deliver(pair.acceptor) == []
    assert pair.deliver(pair.dialer) == [ev.StreamEnded(stream, "the call was abandoned")]


def test_an_answer_to_a_call_never_made_breaks_the_connection(pair: ConnectionPair) -> None:
    with pytest.raises(ProtocolError, match="answer for call 99, which was never made"):
        pair.dialer.receive_frame(message_frame(Result(99, None)), 0)


def test_upload_stream_with_flow_control() -> None:
    window = 1000
    pair = ConnectionPair(acceptor_limits=Limits(stream_window_bytes=window, max_chunk_bytes=400))
    pair.handshake()
    call_id, stream = pair.dialer.call("files", "upload", {}, with_stream=True)
    assert stream == 1  # the dialer's streams are odd
    pair.deliver(pair.dialer)
    assert pair.dialer.credit(stream) == window
    assert pair.dialer.max_chunk() == 400
    with pytest.raises(ValueError, match="exceed"):
        pair.dialer.send_data(stream, b"x" * 401)
    for _ in range(2):
        pair.dialer.send_data(stream, b"x" * 400)
    pair.dialer.send_data(stream, b"x" * 200)
    assert pair.dialer.credit(stream) == 0
    with pytest.raises(ValueError, match="credit"):
        pair.dialer.send_data(stream, b"x")
    received = pair.deliver(pair.dialer)
    assert sum(len(e.chunk) for e in received if isinstance(e, ev.DataReceived)) == window
    pair.acceptor.consumed(stream, 600)
    assert pair.deliver(pair.acceptor) == [ev.WindowOpened(stream, 600)]
    pair.dialer.end_stream(stream)
    assert pair.deliver(pair.dialer) == [ev.StreamEnded(stream, None)]
    pair.acceptor.result(call_id, {"Length": window})
    assert pair.deliver(pair.acceptor)[0] == ev.ResultReceived(call_id, {"Length": window}, None)


def test_a_peer_overrunning_its_window_breaks_the_connection_naming_the_limit() -> None:
    pair = ConnectionPair(acceptor_limits=Limits(stream_window_bytes=10))
    pair.handshake()
    _, stream = pair.dialer.call("files", "upload", {}, with_stream=True)
    assert stream is not None
    pair.deliver(pair.dialer)
    from agent.protocol import data_frame

    with pytest.raises(ProtocolError, match="stream_window_bytes=10") as caught:
        pair.acceptor.receive_frame(data_frame(stream, b"x" * 11), 0)
    assert caught.value.limit == "stream_window_bytes"


def test_a_receiver_can_abandon_a_stream(pair: ConnectionPair) -> None:
    _, stream = pair.dialer.call("files", "upload", {}, with_stream=True)
    assert stream is not None
    pair.deliver(pair.dialer)
    pair.acceptor.abandon(stream, "disk full")
    assert pair.deliver(pair.acceptor) == [ev.StreamEnded(stream, "disk full")]
    assert pair.dialer.credit(stream) == 0


def test_too_many_calls_in_flight_fail_the_extra_call_naming_the_limit() -> None:
    pair = ConnectionPair(acceptor_limits=Limits(max_calls_in_flight=2))
    pair.handshake()
    # a peer that ignores the announced limit (ours holds calls back: see test_edges)
    received = [
        pair.acceptor.receive_frame(message_frame(Call(call_id, "s", "m")), 0)
        for call_id in (1, 2, 3)
    ]
    assert [len(events) for events in received] == [1, 1, 0]
    [frame] = pair.acceptor.frames_to_send()
    refusal = json.loads(frame[1:])
    assert (refusal["t"], refusal["id"], refusal["kind"]) == ("error", 3, "limit_exceeded")
    assert "max_calls_in_flight=2" in refusal["message"]


def test_too_many_streams_break_the_connection_naming_the_limit() -> None:
    pair = ConnectionPair(acceptor_limits=Limits(max_streams_in_flight=1))
    pair.handshake()
    pair.dialer.call("files", "upload", {}, with_stream=True)
    assert pair.dialer.stream_room() == 0
    with pytest.raises(ValueError, match="max_streams_in_flight=1"):  # ours wait instead
        pair.dialer.call("files", "upload", {}, with_stream=True)
    # a peer that ignores the announced limit
    pair.acceptor.receive_frame(message_frame(Call(1, "files", "upload", {}, 1)), 0)
    with pytest.raises(ProtocolError, match="max_streams_in_flight=1"):
        pair.acceptor.receive_frame(message_frame(Call(2, "files", "upload", {}, 3)), 0)


@pytest.mark.parametrize(
    ("frame", "limit"),
    [
        (b"M" + b" " * 1000, "max_frame_bytes"),
        (b"M" + b" " * 700, "max_message_bytes"),
        (b"D\x00\x00\x00\x01" + b"x" * 60, "max_chunk_bytes"),
        (b'M{"t":"ping","nonce":1,"x":1}', None),
        (b"M" + b"[" * 9 + b"]" * 9, "max_params_depth"),
    ],
)
def test_size_limits_are_named(frame: bytes, limit: str | None) -> None:
    limits = Limits(
        max_frame_bytes=1000, max_message_bytes=600, max_chunk_bytes=50, max_params_depth=8
    )
    pair = ConnectionPair(acceptor_limits=limits)
    pair.handshake()
    with pytest.raises(ProtocolError) as caught:
        pair.acceptor.receive_frame(frame, 0)
    assert caught.value.limit == limit
    if limit:
        assert f"{limit}=" in str(caught.value)


def test_stream_ids_never_collide(pair: ConnectionPair) -> None:
    _, up = pair.dialer.call("files", "upload", {}, with_stream=True)
    pair.deliver(pair.dialer)
    call_id, _ = pair.dialer.call("files", "download", {})
    pair.deliver(pair.dialer)
    down = pair.acceptor.result(call_id, {}, with_stream=True)
    assert (up, down) == (1, 2)


def test_heartbeats_ping_and_detect_a_silent_peer() -> None:
    pair = ConnectionPair(heartbeat=5.0)
    pair.handshake()
    assert pair.dialer.tick(4.9) == []
    assert pair.dialer.frames_to_send() == []
    assert pair.dialer.tick(5.0) == []
    [ping] = pair.dialer.frames_to_send()
    pair.now = 5.0
    pair.acceptor.receive_frame(ping, 5.0)
    pair.now = 6.0
    assert pair.deliver(pair.acceptor) == []  # the pong, which refreshes liveness
    assert pair.dialer.tick(20.9) == []
    [silent] = pair.dialer.tick(21.0)
    assert silent == ev.PeerSilent(15.0)


def test_a_second_hello_is_refused(pair: ConnectionPair) -> None:
    frame = message_frame(Hello((1,), "again", "x", (), {}))
    with pytest.raises(ProtocolError, match="second hello"):
        pair.acceptor.receive_frame(frame, 0)


def test_an_idle_connection_costs_one_ping_and_one_pong_per_interval() -> None:
    pair = ConnectionPair(heartbeat=10.0)
    pair.handshake()
    sides = {"dialer": (pair.dialer, pair.acceptor), "acceptor": (pair.acceptor, pair.dialer)}
    sent: list[tuple[float, str]] = []
    for now in (5.0, 10.0, 14.9, 15.0, 20.0, 25.0, 30.0):
        for name, (side, peer) in sides.items():
            side.tick(now)
            for frame in side.frames_to_send():
                sent.append((now, name))
                peer.receive_frame(frame, now)
    # the dialer pings every interval; the acceptor only answers
    assert sent == [(10.0, "dialer"), (10.0, "acceptor"), (20.0, "dialer"), (20.0, "acceptor"),
                    (30.0, "dialer"), (30.0, "acceptor")]  # fmt: skip


def test_traffic_makes_pings_unneeded_and_the_deadline_follows_it() -> None:
    pair = ConnectionPair(heartbeat=10.0)
    pair.handshake()
    for now in (8.0, 16.0, 24.0):
        pair.now = now
        assert pair.dialer.tick(now) == []
        assert pair.dialer.frames_to_send() == []  # nothing to say: the peer spoke recently
        pair.acceptor.call("capabilities", "ping", {})
        pair.deliver(pair.acceptor)
        assert pair.dialer.next_tick() == now + 10.0


def test_the_acceptor_pings_a_dialer_that_stopped_pinging() -> None:
    pair = ConnectionPair(heartbeat=10.0)
    pair.handshake()
    assert pair.acceptor.next_tick() == 15.0
    assert pair.acceptor.tick(14.9) == []
    assert pair.acceptor.frames_to_send() == []
    pair.acceptor.tick(15.0)
    [ping] = pair.acceptor.frames_to_send()
    pair.dialer.receive_frame(ping, 15.0)
    assert pair.acceptor.next_tick() == 30.0  # silent for three intervals by then
    [silent] = pair.acceptor.tick(30.0)
    assert silent == ev.PeerSilent(30.0)
