"""Messages and frames: round trips, strict validation, and fuzzing of the decoder."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ProtocolError
from agent.protocol import Limits, data_frame, decode_frame, message_frame
from agent.protocol.frames import Data
from agent.protocol.messages import (
    Call,
    Cancel,
    End,
    Error,
    Hello,
    Ping,
    Pong,
    Result,
    Window,
    decode_message,
)

LIMITS = Limits()
ids = st.integers(0, 2**63 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.one_of(
    st.builds(
        Hello,
        versions=st.lists(st.integers(0, 9), max_size=3).map(tuple),
        name=st.text(max_size=20),
        version=st.text(max_size=10),
        services=st.lists(st.text(max_size=10), max_size=3).map(tuple),
        limits=st.dictionaries(st.text(max_size=10), st.integers(0, 2**40), max_size=3),
    ),
    st.builds(
        Call,
        id=ids,
        service=st.text(max_size=10),
        method=st.text(max_size=10),
        params=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
        stream=st.none() | ids,
    ),
    st.builds(Result, id=ids, value=json_values, stream=st.none() | ids),
    st.builds(Error, id=ids, kind=st.text(max_size=10), message=st.text(max_size=30)),
    st.builds(Cancel, id=ids),
    st.builds(End, stream=ids, error=st.none() | st.text(max_size=10)),
    st.builds(Window, stream=ids, increment=ids),
    st.builds(Ping, nonce=ids),
    st.builds(Pong, nonce=ids),
)


@given(messages)
def test_every_message_round_trips(message: object) -> None:
    decoded = decode_frame(message_frame(message), LIMITS)  # type: ignore[arg-type]
    if isinstance(message, Result) and message.value is None:
        assert decoded == Result(message.id, None, message.stream)
    else:
        assert decoded == message


@given(st.integers(0, 2**32 - 1), st.binary(max_size=1000))
def test_data_frames_round_trip(stream: int, chunk: bytes) -> None:
    assert decode_frame(data_frame(stream, chunk), LIMITS) == Data(stream, chunk)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"t":"call","id":1,"service":"s"}', "lacks the field 'method'"),
        (b'{"t":"call","id":-1,"service":"s","method":"m"}', "field 'id' has a bad value -1"),
        (b'{"t":"call","id":true,"service":"s","method":"m"}', "field 'id' has a bad value True"),
        (b'{"t":"call","id":1,"service":"s","method":"m","params":[]}', "field 'params'"),
        (b'{"t":"ping","nonce":1,"extra":2}', "unknown fields ['extra']"),
        (b'{"t":"shout"}', "unknown message type 'shout'"),
        (b"[1,2]", "unknown message type 'list'"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{", "not UTF-8 JSON"),
        (b'{"t":"hello","versions":["1"],"name":"a","version":"1","services":[],"limits":{},'
         b'"protocol":"tentacle-rpc"}', "field 'versions'"),
    ],
)  # fmt: skip
def test_invalid_messages_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_message(body, max_depth=32)
    assert message in str(caught.value)


def test_deep_nesting_is_refused_without_exhausting_the_stack() -> None:
    bomb = b'{"t":"ping","nonce":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(ProtocolError, match="max_params_depth=32"):
        decode_message(bomb, max_depth=32)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "empty frame"),
        (b"X{}", "unknown frame tag 0x58"),
        (b"D\x00\x01", "too short for a stream id"),
    ],
)
def test_broken_frames(frame: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_frame(frame, LIMITS)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_fuzz_random_frames_give_only_protocol_errors(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_frame(frame, LIMITS)


@settings(max_examples=500)
@given(messages, st.data())
def test_fuzz_mutated_frames_give_only_protocol_errors(
    message: object, data: st.DataObject
) -> None:
    frame = bytearray(message_frame(message))  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(frame) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            frame[position] ^= data.draw(st.integers(1, 255))
        elif action == "drop" and len(frame) > 1:
            del frame[position]
        else:
            frame.insert(position, data.draw(st.integers(0, 255)))
    with contextlib.suppress(ProtocolError):
        decode_frame(bytes(frame), LIMITS)


any_frame = st.one_of(
    messages.map(message_frame),  # type: ignore[arg-type]
    st.builds(data_frame, st.integers(0, 8), st.binary(max_size=50)),
    st.binary(max_size=60),
)


@settings(max_examples=300)
@given(st.lists(any_frame, max_size=10))
def test_fuzz_a_connection_fed_any_frames_raises_only_protocol_errors(frames: list[bytes]) -> None:
    from tests.helpers.protocol import ConnectionPair

    pair = ConnectionPair()
    pair.handshake()
    for frame in frames:
        try:
            pair.acceptor.receive_frame(frame, 0)
        except ProtocolError:
            assert pair.acceptor.closed
            return
