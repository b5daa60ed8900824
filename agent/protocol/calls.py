"""What a service sees of a call, and what it answers: no transport, no asyncio."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class IncomingCall:
    service: str
    method: str
    params: dict[str, Any]
    stream: AsyncIterable[bytes] | None
    peer_thumbprint: str


@dataclass(frozen=True)
class Reply:
    value: Any = None
    stream: AsyncIterable[bytes] | None = None


Handler = Callable[[IncomingCall], Awaitable[Reply]]
