"""Protocol edges a peer written from docs/protocol.md alone must be told about.

Every protocol error reaches the peer as an ``error`` with id 0 naming the rule
or limit before the connection closes; hello limits that cannot work are refused.
"""

from __future__ import annotations

import json
import re

import pytest

from agent.errors import ProtocolError
from agent.protocol import Connection, Limits, data_frame, message_frame
from agent.protocol import events as ev
from agent.protocol.limits import MINIMUMS
from agent.protocol.messages import Call, Error, Hello
from tests.helpers.protocol import ConnectionPair, hello


def _connected(limits: Limits | None = None) -> ConnectionPair:
    pair = ConnectionPair(acceptor_limits=limits)
    pair.handshake()
    return pair


def _last_error(connection: Connection) -> dict[str, object]:
    """The one frame a connection queued after a protocol error: an error with id 0."""
    [frame] = connection.frames_to_send()
    assert frame[:1] == b"M"
    return dict(json.loads(frame[1:]))


def _call(call_id: int, stream: int | None = None) -> bytes:
    return message_frame(Call(call_id, "capabilities", "ping", {}, stream))


@pytest.mark.parametrize(
    ("frames", "kind", "names"),
    [
        ([b"X"], "protocol_error", "unknown frame tag 0x58"),
        ([b""], "protocol_error", "empty frame"),
        ([b'M{"t":"ping","nonce":1,"x":1}'], "protocol_error", "unknown fields ['x']"),
        ([_call(0)], "protocol_error", "call id 0 is reserved for the connection"),
        ([_call(1), _call(1)], "protocol_error", "call id 1 while it was in flight"),
        ([b"M" + b" " * 700], "limit_exceeded", "max_message_bytes=600"),
        ([data_frame(1, b"x")], "protocol_error", "stream 1, which was never opened"),
        ([b"M" + b"[" * 9 + b"]" * 9], "limit_exceeded", "max_params_depth=8"),
    ],
)
def test_a_protocol_error_is_sent_to_the_peer_with_id_0(
    frames: list[bytes], kind: str, names: str
) -> None:
    pair = _connected(Limits(max_message_bytes=600, max_params_depth=8))
    *accepted, breaking = frames
    for frame in accepted:
        pair.acceptor.receive_frame(frame, 0)
    with pytest.raises(ProtocolError, match=re.escape(names)):
        pair.acceptor.receive_frame(breaking, 0)
    error = _last_error(pair.acceptor)
    assert (error["t"], error["id"], error["kind"]) == ("error", 0, kind)
    assert names in str(error["message"])
    # and the peer learns it as the end of the connection, with the reason
    with pytest.raises(ProtocolError, match=f"peer closed the connection: {kind}"):
        pair.dialer.receive_frame(message_frame(Error(0, kind, str(error["message"]))), 0)
    assert pair.dialer.frames_to_send() == []  # an error with id 0 is never answered


def test_a_protocol_error_is_told_only_once() -> None:
    pair = _connected()
    with pytest.raises(ProtocolError):
        pair.acceptor.receive_frame(b"X", 0)
    pair.acceptor.frames_to_send()
    with pytest.raises(ProtocolError, match="closed"):
        pair.acceptor.receive_frame(b"X", 0)
    assert pair.acceptor.frames_to_send() == []


def test_ids_count_from_1_and_a_repeated_id_after_its_answer_is_fine() -> None:
    pair = _connected()
    assert pair.dialer.call("s", "m", {})[0] == 1
    [received] = pair.deliver(pair.dialer)
    assert isinstance(received, ev.CallReceived)
    pair.acceptor.result(1, None)
    pair.deliver(pair.acceptor)
    # a peer may reuse an id once it is answered: "not in flight" is the rule
    again = pair.acceptor.receive_frame(_call(1), 0)
    assert again == [ev.CallReceived(Call(1, "capabilities", "ping", {}))]


def _hello_with(limits: dict[str, int]) -> bytes:
    return message_frame(Hello((1,), "peer", "x", (), limits))


@pytest.mark.parametrize(
    ("limits", "names"),
    [
        ({"max_chunk_bytes": 0}, "max_chunk_bytes=0"),
        ({"max_calls_in_flight": 0}, "max_calls_in_flight=0"),
        ({"max_streams_in_flight": 0}, "max_streams_in_flight=0"),
        ({"stream_window_bytes": 0}, "stream_window_bytes=0"),
        ({"max_params_depth": 1}, "max_params_depth=1"),
        ({"max_message_bytes": 100}, "max_message_bytes=100"),
        ({"max_frame_bytes": 100}, "max_frame_bytes=100"),
    ],
)
def test_hello_limits_that_cannot_work_are_refused_naming_them(
    limits: dict[str, int], names: str
) -> None:
    acceptor = Connection(hello("acceptor"), dialer=False, now=0)
    acceptor.frames_to_send()
    with pytest.raises(ProtocolError, match=names) as caught:
        acceptor.receive_frame(_hello_with(limits), 0)
    assert caught.value.limit == next(iter(limits))
    error = _last_error(acceptor)
    assert error["id"] == 0
    assert error["kind"] == "limit_exceeded"
    assert "at least" in str(error["message"])  # what was expected, too


def test_absent_limits_take_the_documented_defaults_and_unknown_ones_are_ignored() -> None:
    acceptor = Connection(hello("acceptor"), dialer=False, now=0)
    [event] = acceptor.receive_frame(_hello_with({"max_future_thing": 3}), 0)
    assert isinstance(event, ev.HelloReceived)
    assert acceptor.peer_limits == Limits()


def test_chunks_fit_the_peers_frame_limit_even_if_its_chunk_limit_does_not() -> None:
    acceptor_limits = Limits(max_frame_bytes=1000, max_message_bytes=600, max_chunk_bytes=5000)
    pair = _connected(acceptor_limits)
    _, stream = pair.dialer.call("files", "upload", {}, with_stream=True)
    assert stream is not None
    assert pair.dialer.max_chunk() == 1000 - 5
    pair.dialer.send_data(stream, b"x" * pair.dialer.max_chunk())
    with pytest.raises(ValueError, match="exceed"):
        pair.dialer.send_data(stream, b"x" * (pair.dialer.max_chunk() + 1))
    assert len(pair.deliver(pair.dialer)) == 2  # the call and its chunk, within the limits


def test_a_caller_may_not_exceed_the_peers_calls_in_flight() -> None:
    pair = _connected(Limits(max_calls_in_flight=2))
    first, _ = pair.dialer.call("s", "m", {})
    second, _ = pair.dialer.call("s", "m", {})
    assert pair.dialer.call_room() == 0
    with pytest.raises(ValueError, match="max_calls_in_flight=2"):
        pair.dialer.call("s", "m", {})
    pair.deliver(pair.dialer)
    pair.dialer.forget(first)  # given up locally, but the peer still counts it
    assert pair.dialer.call_room() == 0
    pair.acceptor.result(first, None)
    assert pair.deliver(pair.acceptor) == []  # the late answer is dropped...
    assert pair.dialer.call_room() == 1  # ...and frees its place
    pair.acceptor.error(second, "internal", "no")
    pair.deliver(pair.acceptor)
    assert pair.dialer.call_room() == 2


@pytest.mark.parametrize(
    ("params", "accepted"),
    [
        ({"Files": [{"Name": "a"}]}, True),  # message 1, params 2, list 3, object 4
        ({"Files": [{"Name": ["a"]}]}, False),
    ],
)
def test_max_params_depth_counts_the_message_itself(
    params: dict[str, object], accepted: bool
) -> None:
    pair = _connected(Limits(max_params_depth=4))
    frame = message_frame(Call(1, "scripts", "start", params))
    if accepted:
        assert len(pair.acceptor.receive_frame(frame, 0)) == 1
    else:
        with pytest.raises(ProtocolError, match="max_params_depth=4"):
            pair.acceptor.receive_frame(frame, 0)


def test_unknown_keys_inside_params_reach_the_service_untouched() -> None:
    pair = _connected()
    [event] = pair.acceptor.receive_frame(message_frame(Call(1, "s", "m", {"Later": 1})), 0)
    assert isinstance(event, ev.CallReceived)
    assert event.call.params == {"Later": 1}  # the service ignores what it does not know


@pytest.mark.parametrize("name", sorted(MINIMUMS))
def test_each_limit_works_at_its_minimum_and_is_refused_below(name: str) -> None:
    assert getattr(Limits.from_dict({name: MINIMUMS[name]}), name) == MINIMUMS[name]
    with pytest.raises(ProtocolError, match=f"{name}={MINIMUMS[name] - 1}; it must be at least"):
        Limits.from_dict({name: MINIMUMS[name] - 1})
