"""What a Connection reports after reading a frame or a clock tick."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.protocol.messages import Call, Hello


@dataclass(frozen=True)
class HelloReceived:
    hello: Hello
    version: int


@dataclass(frozen=True)
class CallReceived:
    call: Call


@dataclass(frozen=True)
class ResultReceived:
    id: int
    value: Any
    stream: int | None


@dataclass(frozen=True)
class ErrorReceived:
    id: int
    kind: str
    message: str


@dataclass(frozen=True)
class CancelReceived:
    id: int


@dataclass(frozen=True)
class DataReceived:
    stream: int
    chunk: bytes


@dataclass(frozen=True)
class StreamEnded:
    """An inbound stream ended, or (with ``error``) the peer abandoned one of ours."""

    stream: int
    error: str | None


@dataclass(frozen=True)
class WindowOpened:
    stream: int
    credit: int


@dataclass(frozen=True)
class PeerSilent:
    """Nothing arrived for three heartbeat intervals: treat the peer as dead."""

    seconds: float


Event = (
    HelloReceived
    | CallReceived
    | ResultReceived
    | ErrorReceived
    | CancelReceived
    | DataReceived
    | StreamEnded
    | WindowOpened
    | PeerSilent
)
