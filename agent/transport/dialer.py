"""Dialing: open a Channel to a peer's ``wss://`` URL, pinned to its thumbprint.

The peer's certificate is checked right after the TLS handshake, inside the
connector, before the HTTP upgrade (or anything else) is sent.

A :class:`Dialer` is one identity's way out: one TLS context (the private key
is loaded once) and one aiohttp session for every dial it makes, to any number
of peers, each pinned to its own thumbprint. :func:`dial` is a one-off dial
with a dialer of its own.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from agent.certs import Identity
from agent.errors import ConfigError, ConnectionLost, TrustError
from agent.protocol.calls import Handler
from agent.transport.channel import Channel
from agent.transport.settings import ChannelSettings
from agent.transport.tls import check_peer, client_context

CONNECT_TIMEOUT = 30.0
# TLS alerts (as OpenSSL words them) by which a peer says it refuses our certificate
REFUSED_OUR_CERTIFICATE = (
    "unknown ca", "bad certificate", "certificate unknown", "certificate required",
)  # fmt: skip
# Dials in a row dropped right after the handshake that are evidence of distrust
# (the client's and the polling agent's alike)
DISTRUST_EVIDENCE = 4
FIX_ON_THE_AGENT = (
    "on the agent: tentacle configure --trust-certificate with our exported certificate"
)


class DroppedAfterHandshake(ConnectionLost):
    """The peer reset or closed the connection right after the TLS handshake.

    A dropped connection like any other, so retryable; but it is also how a
    TLS 1.3 server that does not trust our certificate refuses it (it judges
    the certificate after the handshake and may send no alert). Only the same
    outcome on every retry is evidence of that, so the caller that retries
    decides: it may raise :meth:`as_trust_error` after enough attempts.
    """

    def __init__(self, message: str, url: str, our_thumbprint: str, fix: str) -> None:
        super().__init__(message)
        self.url = url
        self.our_thumbprint = our_thumbprint
        self.fix = fix

    def as_trust_error(self, attempts: int) -> TrustError:
        return TrustError(
            f"{self.url} closed the connection right after the TLS handshake "
            f"{f'on each of {attempts} attempts in a row' if attempts > 1 else 'at once'}: "
            f"it most likely does not trust our certificate "
            f"{self.our_thumbprint} (evidence: the same outcome every time, though no TLS "
            f"alert said so; {self.fix})"
        )


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy that connections are tunnelled through (HTTP CONNECT)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth(self) -> aiohttp.BasicAuth | None:
        if self.username is None:
            return None
        return aiohttp.BasicAuth(self.username, self.password or "")


def websocket_url(endpoint: str) -> str:
    """``https://host:port`` (as Octopus writes endpoints) or ``wss://…`` -> ``wss://host:port/``."""
    url = URL(endpoint)
    if url.scheme not in ("https", "wss") or not url.host:
        raise ConfigError(f"expected an endpoint like https://HOST:PORT/, got {endpoint!r}")
    return str(url.with_scheme("wss").with_path("/"))


class _Pin:
    """aiohttp's fingerprint hook, checking our pin (SHA-1 or SHA-256) instead.

    aiohttp calls ``check`` right after the TLS handshake with the server, also
    when it reached the server through a CONNECT proxy, before it sends anything.
    """

    def __init__(self, expected_thumbprint: str) -> None:
        self.expected = expected_thumbprint

    def check(self, transport: asyncio.Transport) -> None:
        try:
            check_peer(transport.get_extra_info("ssl_object"), self.expected, "the peer")
        except TrustError:
            transport.close()
            raise


# The pin of the dial in progress: the connector is shared by every dial, and
# aiohttp asks it for a fingerprint check within the dialing task.
_PIN: ContextVar[_Pin | None] = ContextVar("tentacle_pin", default=None)


class _PinnedConnector(aiohttp.TCPConnector):
    """A connector that refuses a server whose certificate is not the one pinned
    for the dial in progress (see _PIN)."""

    def _get_fingerprint(self, req: Any) -> Any:
        pin = _PIN.get()
        if pin is None:  # pragma: no cover - only Dialer.dial connects through it
            raise TrustError(f"no thumbprint was pinned for {req.url}: refusing to connect")
        return pin


class Dialer:
    """Every dial of one identity: one TLS context and one aiohttp session, reused.

    Building a context writes the private key to a temporary file (the ssl
    module loads keys only from files) and parses it; a server holding a fleet
    must not do that per connection. The session is made on the first dial,
    in the running loop. :meth:`close` closes it, and with it every connection
    it still holds.
    """

    def __init__(self, identity: Identity, *, timeout: float = CONNECT_TIMEOUT) -> None:
        self.identity = identity
        self._timeout = timeout
        self._context: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def context(self) -> ssl.SSLContext:
        """The TLS context presenting ``identity``, built on first use."""
        if self._context is None:
            self._context = client_context(self.identity)
        return self._context

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # limit=0: as many connections as there are peers; force_close: each
            # WebSocket owns its connection, none goes back to a pool
            connector = _PinnedConnector(ssl=self.context, limit=0, force_close=True)
            timeout = aiohttp.ClientTimeout(
                total=None, connect=self._timeout, sock_connect=self._timeout
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    async def dial(
        self,
        endpoint: str,
        expected_thumbprint: str,
        settings: ChannelSettings,
        *,
        handler: Handler | None = None,
        headers: Mapping[str, str] | None = None,
        proxy: Proxy | None = None,
        refusal_fix: str = FIX_ON_THE_AGENT,
    ) -> Channel:
        """Connect, check the pin, exchange hellos; returns an open Channel.

        Raises as :func:`dial` does; ValueError if ``settings`` name another
        identity than this dialer's.
        """
        if settings.identity.thumbprint != self.identity.thumbprint:
            raise ValueError(
                f"settings for identity {settings.identity.thumbprint} given to the dialer "
                f"of {self.identity.thumbprint}"
            )
        url = websocket_url(endpoint)
        session = self._http()
        pinned = _PIN.set(_Pin(expected_thumbprint))
        try:
            websocket = await session.ws_connect(
                url,
                max_msg_size=settings.limits.max_frame_bytes,
                compress=0,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=settings.close_timeout),
                headers=dict(headers or {}),
                proxy=proxy.url if proxy else None,
                proxy_auth=proxy.auth if proxy else None,
            )
        except TrustError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise _explain(error, url, settings, refusal_fix) from None
        finally:
            _PIN.reset(pinned)
        channel = Channel(
            websocket,
            settings.connection(dialer=True, now=time.monotonic()),
            peer_thumbprint=expected_thumbprint.upper(),
            handler=handler,
        )
        try:
            await channel.open()
        except BaseException:
            # the shared session stays open: this connection must not outlive its failure
            await channel.close("the hello failed")
            raise
        return channel

    async def close(self) -> None:
        """Close the session and every connection still open through it."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def dial(
    endpoint: str,
    expected_thumbprint: str,
    settings: ChannelSettings,
    *,
    handler: Handler | None = None,
    timeout: float = CONNECT_TIMEOUT,
    headers: Mapping[str, str] | None = None,
    proxy: Proxy | None = None,
    refusal_fix: str = FIX_ON_THE_AGENT,
) -> Channel:
    """Connect, check the pin, exchange hellos; returns an open Channel.

    A one-off dial, with a :class:`Dialer` of its own that closes with the
    channel; a caller that dials again should keep a Dialer instead.

    Raises TrustError (the peer's certificate is not the pinned one, or the
    peer refused ours with a TLS alert or a 403), DroppedAfterHandshake (reset
    or closed right after the TLS handshake: retry), ConnectionLost (cannot
    connect, or dropped during the hello) or ProtocolError. ``refusal_fix``
    says where to make the peer trust us, for the messages.
    """
    dialer = Dialer(settings.identity, timeout=timeout)
    try:
        channel = await dialer.dial(
            endpoint, expected_thumbprint, settings,
            handler=handler, headers=headers, proxy=proxy, refusal_fix=refusal_fix,
        )  # fmt: skip
    except BaseException:
        await dialer.close()
        raise
    asyncio.get_running_loop().create_task(_close_with(channel, dialer))
    return channel


async def _close_with(channel: Channel, dialer: Dialer) -> None:
    await channel.closed.wait()
    await dialer.close()


def _explain(error: BaseException, url: str, settings: ChannelSettings, fix: str) -> Exception:
    """Turn a failed dial into the error a person can act on.

    Only a TLS alert about our certificate (or a 403) is taken as a refusal of
    it; a reset or close after the handshake is a dropped connection, which
    the caller retries (see DroppedAfterHandshake).
    """
    text = str(error)
    ours = settings.identity.thumbprint
    alert = next((a for a in REFUSED_OUR_CERTIFICATE if a in text.lower()), None)
    if alert is not None:
        return TrustError(
            f"{url} refused our certificate {ours} with the TLS alert {alert!r}: "
            f"it does not trust it ({fix})"
        )
    if isinstance(error, aiohttp.WSServerHandshakeError) and error.status == 403:
        return TrustError(f"{url} refused the connection: {error.message}")
    connected = not isinstance(error, aiohttp.ClientConnectorError | asyncio.TimeoutError)
    reset = ConnectionResetError in {type(error), type(error.__cause__)} or (
        "reset by peer" in text.lower()
    )
    if connected and (reset or isinstance(error, aiohttp.ServerDisconnectedError)):
        how = "reset the connection" if reset else "closed the connection"
        return DroppedAfterHandshake(f"{url} {how} right after the TLS handshake", url, ours, fix)
    return ConnectionLost(f"cannot connect to {url}: {text or type(error).__name__}")
