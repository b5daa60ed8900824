"""Frames: what one WebSocket binary message carries.

A frame is one tag byte and a body:
``M`` + a UTF-8 JSON control message, or
``D`` + a 4-byte big-endian stream id + a chunk of that stream's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.errors import ProtocolError
from agent.protocol.limits import Limits
from agent.protocol.messages import Message, decode_message, encode_message

MESSAGE_TAG = ord("M")
DATA_TAG = ord("D")
STREAM_ID_BYTES = 4
MAX_STREAM_ID = 2**32 - 1


@dataclass(frozen=True)
class Data:
    stream: int
    chunk: bytes


def message_frame(message: Message) -> bytes:
    return b"M" + encode_message(message)


def data_frame(stream: int, chunk: bytes | memoryview) -> bytes:
    return b"D" + stream.to_bytes(STREAM_ID_BYTES, "big") + chunk


def decode_frame(frame: bytes, limits: Limits) -> Message | Data:
    """Decode one frame against this side's limits. Raises ProtocolError only."""
    if len(frame) > limits.max_frame_bytes:
        raise ProtocolError(
            f"frame of {len(frame)} bytes exceeds max_frame_bytes={limits.max_frame_bytes}",
            limit="max_frame_bytes",
        )
    if not frame:
        raise ProtocolError("empty frame; expected a tag byte M or D")
    tag = frame[0]
    if tag == MESSAGE_TAG:
        body = frame[1:]
        if len(body) > limits.max_message_bytes:
            raise ProtocolError(
                f"message of {len(body)} bytes exceeds max_message_bytes="
                f"{limits.max_message_bytes}",
                limit="max_message_bytes",
            )
        return decode_message(body, limits.max_params_depth)
    if tag == DATA_TAG:
        header = 1 + STREAM_ID_BYTES
        if len(frame) < header:
            raise ProtocolError(f"data frame of {len(frame)} bytes is too short for a stream id")
        size = len(frame) - header
        if size > limits.max_chunk_bytes:
            raise ProtocolError(
                f"chunk of {size} bytes exceeds max_chunk_bytes={limits.max_chunk_bytes}",
                limit="max_chunk_bytes",
            )
        # one copy, straight out of the frame (slicing the frame first would copy twice)
        chunk = bytes(memoryview(frame)[header:])
        return Data(int.from_bytes(frame[1:header], "big"), chunk)
    raise ProtocolError(f"unknown frame tag {tag:#04x}; expected M (0x4d) or D (0x44)")
