"""AgentClient: calls, uploads and downloads to one agent, listening or polling.

Idempotent operations (capabilities, upload, download: an upload replaces its
target atomically) are retried on a dropped connection, reconnecting each time.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.atomicfile import temporary_beside
from agent.client.polling_listener import DEFAULT_QUEUE_TIMEOUT, PollingListener
from agent.errors import ConnectionLost, TentacleError
from agent.filechunks import read_chunks
from agent.protocol.services import (
    Capabilities,
    CapabilitiesRequest,
    Download,
    DownloadRequest,
    Uploaded,
    UploadRequest,
)
from agent.transport.channel import Channel
from agent.transport.dialer import DroppedAfterHandshake, dial
from agent.transport.settings import ChannelSettings

T = TypeVar("T")
Progress = Callable[[int], None]
CHUNK = 256 * 1024
RETRY_DELAYS = (0.5, 1.0, 2.0)
BACKGROUND_GRACE = 5.0


@dataclass(frozen=True)
class Endpoint:
    """Where an agent is and the thumbprint (SHA-1 or SHA-256) it must present."""

    url: str
    thumbprint: str


class TransferError(TentacleError):
    """A download arrived incomplete or damaged."""


class AgentClient:
    def __init__(
        self,
        endpoint: Endpoint,
        settings: ChannelSettings,
        *,
        call_timeout: float | None = 300.0,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        connector: Callable[[], Awaitable[Channel]] | None = None,
        background_grace: float = BACKGROUND_GRACE,
    ) -> None:
        """``connector`` supplies channels another way than dialing ``endpoint``
        (polling: the agent dialed us); such channels are not this client's to close.
        ``background_grace``: how long :meth:`close` waits for calls made with :meth:`send`."""
        self.endpoint = endpoint
        self._settings = settings
        self._connector = connector
        self._timeout = call_timeout
        self._retry_delays = retry_delays
        self._background_grace = background_grace
        self._channel: Channel | None = None
        self._connecting = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._dropped_in_a_row = 0  # dials dropped right after the TLS handshake

    @classmethod
    def polling(
        cls,
        listener: PollingListener,
        endpoint: Endpoint,
        settings: ChannelSettings,
        wait: float = DEFAULT_QUEUE_TIMEOUT,
    ) -> AgentClient:
        """A client for the polling agent ``endpoint.url`` (``poll://ID/``), reached
        through the connections it keeps to ``listener``; each connection is waited
        for up to ``wait`` seconds (then AgentNotConnected)."""
        return cls(
            endpoint,
            settings,
            connector=lambda: listener.channel(endpoint.url, endpoint.thumbprint, wait),
        )

    async def __aenter__(self) -> AgentClient:
        await self._retrying(self.connect)  # a dropped first connection is retried too
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> Channel:
        """The open channel, dialing the agent if there is none (or it dropped).

        A dial dropped right after the TLS handshake raises ConnectionLost, to
        be retried, except when it is the ``len(retry_delays) + 1``-th in a row:
        that is the evidence of distrust, and raises TrustError.
        """
        async with self._connecting:
            if self._channel is None or self._channel.closed.is_set():
                if self._connector is not None:
                    self._channel = await self._connector()
                else:
                    self._channel = await self._dial()
            return self._channel

    async def _dial(self) -> Channel:
        try:
            channel = await dial(self.endpoint.url, self.endpoint.thumbprint, self._settings)
        except DroppedAfterHandshake as error:
            self._dropped_in_a_row += 1
            attempts = self._dropped_in_a_row
            if attempts > len(self._retry_delays):
                self._dropped_in_a_row = 0
                raise error.as_trust_error(attempts) from None
            raise
        self._dropped_in_a_row = 0
        return channel

    async def close(self) -> None:
        """Close the connection, after giving calls sent with :meth:`send` a moment to land."""
        if self._background:
            await asyncio.wait(self._background, timeout=self._background_grace)
        if self._channel is not None and self._connector is None:
            await self._channel.close("the client closed")
        self._channel = None

    async def call(self, service: str, method: str, params: dict[str, Any] | None = None) -> Any:
        """One call without a stream; not retried (the caller knows if it is idempotent)."""
        channel = await self.connect()
        result = await asyncio.wait_for(channel.call(service, method, params), self._timeout)
        return result.value

    def send(self, service: str, method: str, params: dict[str, Any] | None = None) -> None:
        """Make an idempotent call without waiting for its answer, which is ignored.

        For calls whose outcome does not matter to the caller, such as
        releasing a finished script's workspace. A dropped connection is
        retried like :meth:`capabilities`; :meth:`close` waits for them briefly.
        """
        task = asyncio.ensure_future(self._retrying(lambda: self.call(service, method, params)))
        self._background.add(task)
        task.add_done_callback(_forget)
        task.add_done_callback(self._background.discard)

    async def capabilities(self) -> dict[str, Any]:
        """The capabilities document, checked against agent.protocol.services.Capabilities."""
        params = CapabilitiesRequest().to_wire()
        value: dict[str, Any] = await self._retrying(
            lambda: self.call("capabilities", "get", params)
        )
        Capabilities.parse_reply(value)  # a malformed document is a ProtocolError
        return value

    async def upload(
        self, local: Path, remote: str, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Send ``local`` to ``remote``; returns ``{FullPath, Length, Sha256}``."""

        async def attempt() -> dict[str, Any]:
            channel = await self.connect()
            request = UploadRequest(remote, local.stat().st_size)
            result = await channel.call(
                "files", "upload", request.to_wire(), upload=_read_file(local, progress)
            )
            Uploaded.parse_reply(result.value)  # a malformed reply is a ProtocolError
            value: dict[str, Any] = result.value
            return value

        return await self._retrying(attempt)

    async def download(
        self, remote: str, local: Path, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Fetch ``remote`` into ``local`` (replaced only when complete).

        Returns ``{FullPath, Length, Sha256}`` with the local hash. Raises
        RemoteError not_found if the agent has no such file.
        """

        async def attempt() -> dict[str, Any]:
            channel = await self.connect()
            result = await channel.call("files", "download", DownloadRequest(remote).to_wire())
            assert result.stream is not None
            expected = Download.parse_reply(result.value).length
            digest = await _write_file(result.stream, local, expected, progress)
            return Uploaded(str(local), expected, digest).to_wire()

        return await self._retrying(attempt)

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        for delay in (*self._retry_delays, None):
            try:
                return await operation()
            except ConnectionLost:
                if delay is None:
                    raise
                await asyncio.sleep(delay)  # back off before reconnecting
        raise AssertionError("unreachable")  # pragma: no cover


def _forget(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so that asyncio does not report it


async def _read_file(path: Path, progress: Progress | None) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        for chunk in read_chunks(file, CHUNK):
            yield chunk
            if progress is not None:
                progress(len(chunk))


async def _write_file(
    stream: AsyncIterator[bytes] | Any, local: Path, expected: int, progress: Progress | None
) -> str:
    """Write the stream to a temporary file, renamed to ``local`` only if complete."""
    digest = hashlib.sha256()
    length = 0
    with temporary_beside(local) as temporary:
        with temporary.open("xb") as file:
            async for chunk in stream:
                file.write(chunk)
                digest.update(chunk)
                length += len(chunk)
                if progress is not None:
                    progress(len(chunk))
        if length != expected:
            raise TransferError(f"download ended after {length} of {expected} bytes")
        os.replace(temporary, local)
    return digest.hexdigest()
