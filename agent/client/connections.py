"""One identity's connections to listening agents, as a server holding a fleet keeps them.

Every dial goes through one :class:`~agent.transport.dialer.Dialer` (one TLS
context, one HTTP session), each endpoint has at most one connection, shared
by every caller, and a connection left idle for ``idle_timeout`` seconds is
closed; the next call dials again.
"""

from __future__ import annotations

import asyncio
import contextlib

from agent.transport.channel import Channel
from agent.transport.dialer import FIX_ON_THE_AGENT, Dialer
from agent.transport.settings import ChannelSettings

# Seconds without a call after which a connection to a listening agent is closed.
# Long enough that a hub's routine calls (health checks, task polling) reuse it.
IDLE_TIMEOUT = 60.0

_Key = tuple[str, str]  # (url, thumbprint as given, upper-case)


class Connections:
    """Channels to listening agents for the identity of ``settings``, one per endpoint."""

    def __init__(
        self,
        settings: ChannelSettings,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        refusal_fix: str = FIX_ON_THE_AGENT,
    ) -> None:
        """``refusal_fix``: how the caller's user makes an agent trust this identity, for
        the message when one refuses it (the default names ``tentacle configure``; a hub
        has its own way: registration)."""
        self.settings = settings
        self.refusal_fix = refusal_fix
        self.dialer = Dialer(settings.identity)
        self.idle_timeout = idle_timeout
        self._open: dict[_Key, Channel] = {}
        self._used: dict[_Key, float] = {}  # when each was last handed out or seen busy
        self._dialing: dict[_Key, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        """How many connections are open now."""
        return sum(not channel.closed.is_set() for channel in self._open.values())

    async def channel(self, url: str, thumbprint: str) -> Channel:
        """The open connection to the agent at ``url`` pinned to ``thumbprint``,
        dialed if there is none (or it closed). Raises as ``Dialer.dial`` does."""
        if self._closed:
            raise RuntimeError("these connections were closed")
        key = (url, thumbprint.upper())
        async with self._dialing.setdefault(key, asyncio.Lock()):  # one dial per endpoint
            channel = self._open.get(key)
            if channel is None or channel.closed.is_set():
                channel = await self.dialer.dial(
                    url, thumbprint, self.settings, refusal_fix=self.refusal_fix
                )
                self._open[key] = channel
            self._used[key] = asyncio.get_running_loop().time()
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="connections-reaper")
        return channel

    async def close(self) -> None:
        """Close every connection and the dialer's session; later calls are refused."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        channels, self._open = list(self._open.values()), {}
        await asyncio.gather(*(channel.close("the client closed") for channel in channels))
        await self.dialer.close()

    async def _reap(self) -> None:
        """Close connections idle for ``idle_timeout``, until none is left open."""
        loop = asyncio.get_running_loop()
        while self._open:
            now = loop.time()
            idle = []
            for key, channel in list(self._open.items()):
                if channel.closed.is_set():
                    self._forget(key)
                elif channel.busy:
                    self._used[key] = now  # idle counts from the end of the last call
                elif now - self._used[key] >= self.idle_timeout:
                    self._forget(key)
                    idle.append(channel)
            # together: a dead peer makes a close wait for its close timeout
            await asyncio.gather(*(channel.close("idle") for channel in idle))
            if self._open:
                soonest = min(self._used[key] for key in self._open) + self.idle_timeout
                # a busy one is looked at again within a fraction of the timeout
                await asyncio.sleep(max(min(soonest - now, self.idle_timeout / 4), 0.01))

    def _forget(self, key: _Key) -> None:
        self._open.pop(key, None)
        self._used.pop(key, None)
        lock = self._dialing.get(key)
        if lock is not None and not lock.locked():
            del self._dialing[key]
