"""The hub's REST API as a worker or a person calls it: register-worker, the
``tentacle hub workers`` tables. HTTPS, the hub pinned by thumbprint (SHA-1 or
SHA-256) or, without a thumbprint, verified against the system's CAs.

Every failure is a HubApiError whose message says what to do about it.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from agent.errors import TentacleError, TrustError
from agent.transport.tls import check_peer

API_KEY_HEADER = "X-Octopus-ApiKey"
TIMEOUT = 30.0
# an upload takes as long as the file needs; only a stalled connection is given up on
UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT, sock_read=300.0)


# the hub's HTTPS certificate is its own (Thumbprint:) unless an operator's was given
WHICH_THUMBPRINT = (
    "`tentacle hub show-thumbprint` on the hub prints it: its `HTTPS thumbprint:` line "
    "if it has one, else its `Thumbprint:` line"
)


class HubApiError(TentacleError):
    """The hub could not be reached or refused the request; ``status`` when it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def transient(self) -> bool:
        """The hub was not reached, or answered that it cannot serve now (a restart, a
        database outage): asking again later may succeed."""
        return self.status is None or self.status in (502, 503, 504)


class _ThumbprintPin:
    """aiohttp's fingerprint hook, checking a SHA-1 or SHA-256 pin right after the handshake."""

    def __init__(self, thumbprint: str) -> None:
        self.thumbprint = thumbprint

    def check(self, transport: asyncio.Transport) -> None:
        try:
            check_peer(transport.get_extra_info("ssl_object"), self.thumbprint, "the hub")
        except TrustError:
            transport.close()
            raise


class _PinningConnector(aiohttp.TCPConnector):
    def __init__(self, pin: _ThumbprintPin) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the pin is the check, as for agents
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        super().__init__(ssl=context)
        self._pin = pin

    def _get_fingerprint(self, req: Any) -> Any:
        return self._pin


def _message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("ErrorMessage"), str):
        details = [e for e in body.get("Errors", []) if e != body["ErrorMessage"]]
        return str(body["ErrorMessage"]) + (f": {'; '.join(details)}" if details else "")
    return str(body)[:300]


class HubApi:
    """``async with HubApi(url, key, thumbprint) as hub: await hub.get("/api/workers")``."""

    def __init__(self, server: str, api_key: str, thumbprint: str | None = None) -> None:
        self.server = server.rstrip("/")
        self._key = api_key
        self._thumbprint = thumbprint
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HubApi:
        connector = (
            _PinningConnector(_ThumbprintPin(self._thumbprint)) if self._thumbprint else None
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT)
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body: Any = None, **query: str) -> Any:
        """The JSON answer; HubApiError for anything but success."""
        return await self._send(method, path, {"json": body}, query)

    async def upload(self, path: str, local: Path, **query: str) -> Any:
        """POST the file ``local`` as multipart form-data (one field, ``fileToUpload``,
        named as the file is) and return the JSON answer; streamed, so any size fits."""
        with local.open("rb") as content:
            form = aiohttp.FormData()
            form.add_field(
                "fileToUpload", content, filename=local.name,
                content_type="application/octet-stream",
            )  # fmt: skip
            return await self._send("POST", path, {"data": form}, query, UPLOAD_TIMEOUT)

    async def _send(
        self,
        method: str,
        path: str,
        payload: dict[str, Any],
        query: dict[str, str],
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        assert self._session is not None, "use HubApi in 'async with'"
        url = self.server + path
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        try:
            async with self._session.request(
                method, url, params=query or None, headers={API_KEY_HEADER: self._key},
                **payload, **extra,
            ) as response:  # fmt: skip
                answer = await response.json(content_type=None) if response.content_length else None
                if response.status >= 400:
                    raise HubApiError(
                        f"the hub answered {response.status} to {method} {path}: "
                        + _message(answer),
                        response.status,
                    )
                return answer
        except TrustError as error:
            raise HubApiError(f"{error}: check --server-thumbprint ({WHICH_THUMBPRINT})") from None
        except aiohttp.ClientConnectorCertificateError:
            raise HubApiError(
                f"the hub at {self.server} presented a certificate this machine does not trust: "
                f"pass --server-thumbprint ({WHICH_THUMBPRINT})"
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise HubApiError(f"cannot reach the hub at {self.server}: {error}") from None

    async def get(self, path: str, **query: str) -> Any:
        return await self.request("GET", path, **query)

    async def root(self) -> dict[str, Any]:
        """The root document, checked to be a hub's."""
        root = await self.get("/api")
        if not isinstance(root, dict) or "InstallationId" not in root:
            raise HubApiError(f"{self.server} answered, but it is not a hub (no API root)")
        return root
