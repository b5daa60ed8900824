"""Listening mode: a TLS WebSocket server that peers dial (the agent on 10933).

A WebSocket upgrade from a trusted client certificate becomes a Channel; a
plain HTTPS request (a person checking, a load balancer) gets a one-line page
saying the agent is running, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import web

from agent.protocol.dispatch import Handler
from agent.transport.channel import Channel
from agent.transport.settings import ChannelSettings
from agent.transport.tls import peer_certificate, server_context, thumbprints_of

log = logging.getLogger(__name__)

STATUS_PAGE = "tentacle agent is running. It answers RPC calls from trusted peers only.\n"


class Listener:
    """Serve ``handler`` to trusted peers. Start with :meth:`start`, end with :meth:`stop`."""

    def __init__(
        self,
        settings: ChannelSettings,
        trusted_pems: Sequence[str],
        handler: Handler | None,
        on_channel: Callable[[Channel, Mapping[str, str]], Awaitable[None]] | None = None,
    ) -> None:
        """``handler`` answers the peers' calls (None: this side only calls).
        ``on_channel`` is awaited for each open channel with the upgrade request's
        headers; the channel closes when it returns or raises."""
        self._settings = settings
        self._handler = handler
        self._on_channel = on_channel
        self._ssl = server_context(settings.identity, trusted_pems)
        self._channels: set[Channel] = set()
        self._accepting = True
        app = web.Application()
        app.router.add_get("/", self._serve)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self, host: str | None, port: int) -> list[tuple[str, int]]:
        """Bind and listen; returns the bound (host, port) pairs (port 0 is resolved)."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl, reuse_address=True)
        await site.start()
        return [(str(address[0]), int(address[1])) for address in self._runner.addresses]

    async def stop(self, grace: float) -> None:
        """Stop accepting, give calls in flight ``grace`` seconds to finish, then close."""
        self._accepting = False
        channels = list(self._channels)
        if channels:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(channel.drain() for channel in channels)), grace
                )
        for channel in channels:
            await channel.close("the agent is stopping")
        await self._runner.cleanup()

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
        await websocket.prepare(request)
        connection = self._settings.connection(dialer=False, now=time.monotonic())
        channel = Channel(
            websocket, connection, peer_thumbprint=thumbprint, handler=self._handler,
            peer_sha256=sha256,
        )  # fmt: skip
        self._channels.add(channel)
        try:
            if self._stopped_since_accepting():
                await channel.close("the agent is stopping")
            await channel.open()
            log.info("connection from %s (%s)", channel.peer_name, thumbprint)
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
