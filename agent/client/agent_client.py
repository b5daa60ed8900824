"""AgentClient: calls, uploads and downloads to one agent, listening or polling.

Idempotent operations (capabilities, upload, download: an upload replaces its
target atomically) are retried on a dropped connection, reconnecting each time,
under the client's retry policy (``agent.protocol.retry.CLIENT`` by default).
Listening agents are dialed through :class:`~agent.client.connections.Connections`:
give many clients one of those to share a TLS context, a session and, per
endpoint, a connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agent.atomicfile import temporary_beside
from agent.client.connections import Connections
from agent.client.polling_listener import DEFAULT_QUEUE_TIMEOUT, PollingListener
from agent.errors import ConnectionLost, TentacleError
from agent.filechunks import read_chunks
from agent.protocol.retry import CLIENT, Backoff, Retry
from agent.protocol.services import (
    CancelScriptRequest,
    Capabilities,
    CapabilitiesRequest,
    Download,
    DownloadRequest,
    Uploaded,
    UploadRequest,
)
from agent.transport.channel import Channel
from agent.transport.dialer import DISTRUST_EVIDENCE, DroppedAfterHandshake
from agent.transport.settings import ChannelSettings

if TYPE_CHECKING:  # scripts builds on this module
    from agent.client.scripts import LogChunk, ScriptOutcome, ScriptRequest

T = TypeVar("T")
Progress = Callable[[int], None]
CHUNK = 256 * 1024
BACKGROUND_GRACE = 5.0
NO_LOGS = 2**53  # a LastLogSequence past any script's last line


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
        retry: Backoff = CLIENT,
        connector: Callable[[], Awaitable[Channel]] | None = None,
        connections: Connections | None = None,
        background_grace: float = BACKGROUND_GRACE,
    ) -> None:
        """``connector`` supplies channels another way than dialing ``endpoint``
        (polling: the agent dialed us); such channels are not this client's to close.
        ``connections``: shared with other clients (and closed by their owner);
        by default the client has its own, closed with it. ``retry``: the policy
        of every idempotent operation, :func:`~agent.client.scripts.execute_script`'s too.
        ``background_grace``: how long :meth:`close` waits for calls made with :meth:`send`."""
        self.endpoint = endpoint
        self.retry = retry
        self._settings = settings
        self._connector = connector
        self._timeout = call_timeout
        self._owns_connections = connections is None and connector is None
        self._connections = Connections(settings) if connections is None else connections
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
        try:
            await self._retrying(self.connect)  # a dropped first connection is retried too
        except BaseException:
            await self.close()  # no __aexit__ follows a failed __aenter__
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> Channel:
        """The open channel, dialing the agent if there is none (or it dropped).

        A dial dropped right after the TLS handshake raises ConnectionLost, to
        be retried, except when it is the DISTRUST_EVIDENCE-th in a row: that is
        the evidence of distrust, and raises TrustError.
        """
        if self._connector is None:
            return await self._dial()  # the connections keep it open, and reuse it
        async with self._connecting:
            if self._channel is None or self._channel.closed.is_set():
                self._channel = await self._connector()
            return self._channel

    async def _dial(self) -> Channel:
        try:
            channel = await self._connections.channel(self.endpoint.url, self.endpoint.thumbprint)
        except DroppedAfterHandshake as error:
            self._dropped_in_a_row += 1
            attempts = self._dropped_in_a_row
            if attempts >= DISTRUST_EVIDENCE:
                self._dropped_in_a_row = 0
                raise error.as_trust_error(attempts) from None
            raise
        self._dropped_in_a_row = 0
        return channel

    async def close(self) -> None:
        """Close the connection, after giving calls sent with :meth:`send` a moment to land."""
        if self._background:
            await asyncio.wait(self._background, timeout=self._background_grace)
        if self._owns_connections:
            await self._connections.close()
        self._channel = None

    async def call(self, service: str, method: str, params: dict[str, Any] | None = None) -> Any:
        """One call without a stream; not retried (the caller knows if it is idempotent)."""
        channel = await self.connect()
        # not wait_for, which can lose a cancellation on Python 3.11 (see scripts._pause)
        async with asyncio.timeout(self._timeout):
            result = await channel.call(service, method, params)
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
        self,
        local: Path,
        remote: str,
        progress: Progress | None = None,
        isolation_group: str | None = None,
    ) -> dict[str, Any]:
        """Send ``local`` to ``remote``; returns ``{FullPath, Length, Sha256}``. With
        ``isolation_group`` a relative ``remote`` is in that group's folder on an agent
        that runs scripts as their groups' uids (its scripts' TentacleHome)."""

        async def attempt() -> dict[str, Any]:
            channel = await self.connect()
            request = UploadRequest(remote, local.stat().st_size, isolation_group)
            result = await channel.call(
                "files", "upload", request.to_wire(), upload=_read_file(local, progress)
            )
            Uploaded.parse_reply(result.value)  # a malformed reply is a ProtocolError
            value: dict[str, Any] = result.value
            return value

        return await self._retrying(attempt)

    async def download(
        self,
        remote: str,
        local: Path,
        progress: Progress | None = None,
        isolation_group: str | None = None,
    ) -> dict[str, Any]:
        """Fetch ``remote`` into ``local`` (replaced only when complete). With
        ``isolation_group`` (the group whose script named it: an artifact) an agent that
        runs scripts as their groups' uids serves only a file that group's uid owns.

        Returns ``{FullPath, Length, Sha256}`` with the local hash. Raises
        RemoteError not_found if the agent has no such file.
        """

        async def attempt() -> dict[str, Any]:
            channel = await self.connect()
            result = await channel.call(
                "files", "download", DownloadRequest(remote, isolation_group).to_wire()
            )
            assert result.stream is not None
            expected = Download.parse_reply(result.value).length
            digest = await _write_file(result.stream, local, expected, progress)
            return Uploaded(str(local), expected, digest).to_wire()

        return await self._retrying(attempt)

    async def execute(
        self,
        request: ScriptRequest,
        on_output: Callable[[LogChunk], None],
        cancel: asyncio.Event | None = None,
    ) -> ScriptOutcome:
        """Run a script to the end with streamed logs (see ``Worker.execute``)."""
        from agent.client.scripts import execute_script  # noqa: PLC0415 - it imports us

        return await execute_script(self, request, on_output, cancel)

    async def cancel(self, ticket: str) -> None:
        """Ask the agent to cancel script ``ticket`` (see ``Worker.cancel``); retried, as
        a cancel is idempotent. Asks for no log lines: whoever executes it reads them."""
        params = CancelScriptRequest(ticket, NO_LOGS).to_wire()
        await self._retrying(lambda: self.call("scripts", "cancel", params))

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await retrying(self.retry, operation)


async def retrying(policy: Backoff, operation: Callable[[], Awaitable[T]]) -> T:
    """Run an idempotent ``operation`` until it does not lose its connection, backing
    off under ``policy``; raises the last ConnectionLost once its deadline has passed."""
    loop = asyncio.get_running_loop()
    retry = Retry(policy)
    while True:
        try:
            return await operation()
        except ConnectionLost:
            delay = retry.failed(loop.time())
            if delay is None:
                raise
            await asyncio.sleep(delay)  # back off before reconnecting


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
