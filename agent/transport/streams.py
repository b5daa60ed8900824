"""Byte streams over a channel, with the protocol's flow control."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from agent.errors import ConnectionLost, RemoteError


@dataclass(frozen=True)
class _End:
    error: str | None


class InboundStream:
    """Chunks from the peer, as an async iterator; credit is granted as they are taken.

    Iterating raises RemoteError if the peer abandoned the stream and
    ConnectionLost if the connection dropped; a normal end stops iteration.
    """

    def __init__(self, stream: int, grant: Callable[[int], None], abandon: Callable[[str], None]):
        self.stream = stream
        self._queue: asyncio.Queue[bytes | _End | BaseException] = asyncio.Queue()
        self._grant = grant
        self._abandon = abandon
        self._done = False

    def feed(self, chunk: bytes) -> None:
        self._queue.put_nowait(chunk)

    def end(self, error: str | None) -> None:
        self._queue.put_nowait(_End(error))

    def fail(self, error: BaseException) -> None:
        self._queue.put_nowait(error)

    def abandon(self, reason: str) -> None:
        """Stop receiving: the peer is told to stop sending."""
        if not self._done:
            self._done = True
            self._abandon(reason)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, bytes):
                    self._grant(len(item))
                    yield item
                    continue
                self._done = True
                if isinstance(item, BaseException):
                    raise item
                if item.error is not None:
                    raise RemoteError("stream_abandoned", item.error)
                return
        finally:
            self.abandon("the receiver stopped reading")


class OutboundCredit:
    """How many bytes one of our streams may still send; waits for window updates."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self.error: BaseException | None = None

    def opened(self) -> None:
        self._changed.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._changed.set()

    async def wait(self) -> None:
        """Wait for a window update or a failure (then raise it)."""
        if self.error is not None:
            raise self.error
        self._changed.clear()
        await self._changed.wait()
        if self.error is not None:
            raise self.error


def connection_lost(reason: str) -> ConnectionLost:
    return ConnectionLost(f"connection lost: {reason}")
