"""Listening mode: a TLS WebSocket server that peers dial (the agent on 10933).

A WebSocket upgrade from a trusted client certificate becomes a Channel; a
plain HTTPS request (a person checking, a load balancer) gets a one-line page
saying the agent is running, and nothing else.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent.protocol.calls import Handler
from agent.transport.channel import Channel
from agent.transport.metered import counted_connection
from agent.transport.settings import ChannelSettings
from agent.transport.tls import LiveTrust, peer_certificate, server_context, thumbprints_of
from agent.transport.tls_server import HeapTrimmer, TLSSite

if TYPE_CHECKING:
    from agent.observability.metrics import AgentMetrics

log = logging.getLogger(__name__)

# Connections the kernel completes and holds until the listener accepts them (asyncio
# also accepts up to this many at a time). 4096 was tried for the reconnection storm
# and is worse: every queued connection starts its handshake at once, they all finish
# late, and dials time out (docs/decisions.md). A full queue drops SYNs instead,
# which the agents' kernels retry 1, 3, 7 s later: a crude but working throttle.
LISTEN_BACKLOG = 128
STATUS_PAGE = "tentacle agent is running. It answers RPC calls from trusted peers only.\n"


def _wildcard_sockets_on_one_port(attempts: int = 20) -> list[socket.socket]:
    """Bound wildcard sockets, IPv4 then IPv6 (where the host has it), on one free port.

    The kernel picks a free port for IPv4; IPv6 binds the same one (IPv6-only,
    like the sockets asyncio makes). If another program holds that port on
    IPv6, both are given up and another port is tried, ``attempts`` times.
    """
    for _ in range(attempts):
        ipv4 = _bound(socket.AF_INET, "0.0.0.0", 0)  # noqa: S104 (host None asks for all)
        port = int(ipv4.getsockname()[1])
        try:
            ipv6 = _bound(socket.AF_INET6, "::", port)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                ipv4.close()
                continue
            return [ipv4]  # no IPv6 on this host
        return [ipv4, ipv6]
    raise OSError(errno.EADDRINUSE, f"no port free on both IPv4 and IPv6 in {attempts} tries")


def _bound(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def drain(channels: Sequence[Channel], grace: float, hurry: asyncio.Event | None) -> bool:
    """Wait until ``channels`` have no call in flight, for ``grace`` seconds at most,
    or until ``hurry`` is set; the channels stay open. Returns whether they drained."""
    if not channels:
        return True
    drained: asyncio.Future[Any] = asyncio.gather(*(channel.drain() for channel in channels))
    hurried: asyncio.Future[Any] = asyncio.ensure_future((hurry or asyncio.Event()).wait())
    try:
        await asyncio.wait({drained, hurried}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        return drained.done() and not drained.cancelled() and drained.exception() is None
    finally:
        for waiter in (drained, hurried):
            waiter.cancel()
        await asyncio.gather(drained, hurried, return_exceptions=True)


class Listener:
    """Serve ``handler`` to trusted peers. Start with :meth:`start`, end with :meth:`stop`."""

    def __init__(
        self,
        settings: ChannelSettings,
        trusted_pems: Sequence[str] | LiveTrust,
        handler: Handler | None,
        on_channel: Callable[[Channel, Mapping[str, str]], Awaitable[None]] | None = None,
        on_refusal: Callable[[str], None] | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        """``handler`` answers the peers' calls (None: this side only calls).
        ``on_channel`` is awaited for each open channel with the upgrade request's
        headers; the channel closes when it returns or raises. ``on_refusal`` is
        told the thumbprint of each client refused for an untrusted certificate.
        ``trusted_pems`` is fixed for the listener's life, or a LiveTrust (which
        then tells its own ``on_refusal``) whose changes apply to the next handshake.
        ``metrics``: where connections and heartbeat misses are counted (None: not)."""
        self._settings = settings
        self._metrics = metrics
        self._handler = handler
        self._on_channel = on_channel
        self._live: LiveTrust | None = None
        if isinstance(trusted_pems, LiveTrust):
            self._live, self._ssl = trusted_pems, trusted_pems.context
        else:
            self._ssl = server_context(settings.identity, trusted_pems, on_refusal)
        self._channels: set[Channel] = set()
        self._accepting = True
        self.heap = HeapTrimmer()  # its connections' handshakes fragment the heap
        self._trimming: asyncio.Task[None] | None = None
        app = web.Application()
        app.router.add_get("/", self._serve)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self, host: str | None, port: int) -> list[tuple[str, int]]:
        """Bind and listen; returns the bound (host, port) pairs (port 0 is resolved).

        ``host`` None means every address of every family; with port 0 they all
        get the same port, so that any of the returned pairs reaches the agent.
        """
        await self._runner.setup()
        if host is None and port == 0:
            for sock in _wildcard_sockets_on_one_port():
                site = TLSSite(self._runner, self._ssl, sock=sock, backlog=LISTEN_BACKLOG,
                               trimmer=self.heap)  # fmt: skip
                await site.start()
        else:
            site = TLSSite(self._runner, self._ssl, host=host, port=port, backlog=LISTEN_BACKLOG,
                           trimmer=self.heap)  # fmt: skip
            await site.start()
        self._trimming = asyncio.create_task(self.heap.run(), name="listener-heap-trim")
        return [(str(address[0]), int(address[1])) for address in self._runner.addresses]

    async def stop(self, grace: float, hurry: asyncio.Event | None = None) -> bool:
        """Stop accepting, give calls in flight ``grace`` seconds to finish (less
        if ``hurry`` is set meanwhile), then close. Returns whether they all finished."""
        self._accepting = False
        if self._trimming is not None:
            self._trimming.cancel()
            await asyncio.gather(self._trimming, return_exceptions=True)
        channels = list(self._channels)
        drained = await drain(channels, grace, hurry)
        for channel in channels:
            await channel.close("the agent is stopping")
        await self._runner.cleanup()
        return drained

    def _stopped_since_accepting(self) -> bool:
        """Whether stop() began while a request was upgrading (it missed that channel)."""
        return not self._accepting

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        websocket = web.WebSocketResponse(
            max_msg_size=self._settings.limits.max_frame_bytes,
            compress=False,
            timeout=self._settings.close_timeout,
        )
        if not websocket.can_prepare(request).ok:
            return web.Response(text=STATUS_PAGE)
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = peer_certificate(ssl_object)
        if der is None or not self._accepting:
            reason = "a client certificate is required" if der is None else "the agent is stopping"
            return web.Response(status=403 if der is None else 503, text=reason + "\n")
        thumbprint, sha256 = thumbprints_of(der)
        if self._live is not None and self._live.trusted(thumbprint) is None:
            # its handshake passed a context not yet rebuilt since it was distrusted
            log.warning("refused a client presenting certificate %s: no longer trusted", thumbprint)
            return web.Response(status=403, text="the certificate is no longer trusted\n")
        await websocket.prepare(request)
        connection = self._settings.connection(dialer=False, now=time.monotonic())
        channel = Channel(
            websocket, connection, peer_thumbprint=thumbprint, handler=self._handler,
            peer_sha256=sha256, transport=request.transport,
        )  # fmt: skip
        self._channels.add(channel)
        try:
            if self._stopped_since_accepting():
                await channel.close("the agent is stopping")
            await channel.open()
            log.info("connection from %s (%s)", channel.peer_name, thumbprint)
            with counted_connection(self._metrics, "listening", channel):
                if self._on_channel is not None:
                    await self._on_channel(channel, request.headers)
                await channel.wait_closed()
            log.info("connection from %s closed: %s", thumbprint, channel.close_reason)
        except Exception as error:
            log.warning("connection from %s failed: %s", thumbprint, error)
        finally:
            self._channels.discard(channel)
            await channel.close()
        return websocket
