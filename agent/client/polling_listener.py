"""Polling mode, the server's side: accept agents that dial in, and call them.

A TLS WebSocket server (port 10943 by default) that accepts only agents whose
certificates it trusts. Each connection names its subscription id; calls for
``poll://ID/`` go to any live connection of that agent, and a call made while
the agent is not connected waits for it up to a queue timeout.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping, Sequence

from agent.certs import parse_thumbprint
from agent.errors import TentacleError
from agent.transport.channel import Channel
from agent.transport.listener import Listener
from agent.transport.poller import SUBSCRIPTION_HEADER
from agent.transport.settings import ChannelSettings
from agent.transport.tls import LiveTrust

log = logging.getLogger(__name__)

DEFAULT_QUEUE_TIMEOUT = 120.0
_SUBSCRIPTION = re.compile(r"poll://[a-z2-9]{20}/")
NO_LONGER_TRUSTED = "the agent's certificate is no longer trusted"


class AgentNotConnected(TentacleError):
    """The polling agent did not connect within the time a call may wait for it.

    Not a ConnectionLost: the wait was the retry, so callers do not repeat it.
    """


class PollingListener:
    """The server's side of polling: agents dial in, callers get their connections.

    The trusted agents' certificates can change while it runs (:meth:`trust`,
    :meth:`distrust`, :meth:`set_trusted`), without a restart. A certificate
    trusted is accepted from its next handshake on. One distrusted has its
    connections closed at once and every later one refused: after the
    handshake (403 on the upgrade) until the TLS context is rebuilt without it
    in the background, in the handshake from then on. Use it from the event
    loop's thread.
    """

    def __init__(
        self,
        settings: ChannelSettings,
        trusted_agent_pems: Sequence[str],
        *,
        refusal_hint: str | None = None,
    ) -> None:
        """``refusal_hint``: where the caller's user says which certificate an agent
        has (``tentacle client``: "is --agent-certificate the agent's?"), added to the
        note on a refused certificate when a wait expires; the note itself states only
        which certificate was presented."""
        self._refusal_hint = refusal_hint
        self._trust = LiveTrust(settings.identity, trusted_agent_pems, self._refused)
        self._listener = Listener(settings, self._trust, None, on_channel=self._register)
        self._channels: dict[str, list[Channel]] = {}  # by subscription; no empty lists
        # callers waiting, by (subscription, thumbprint they expect); no empty sets
        self._waiters: dict[tuple[str, str], set[asyncio.Future[None]]] = {}
        # what came, for the message when a wait expires
        self._last_refused: tuple[float, str] | None = None  # (when, thumbprint)
        self._last_agent: tuple[float, str, Channel] | None = None  # (when, subscription, ...)
        self._rebuilding: asyncio.Task[None] | None = None

    async def start(self, host: str | None, port: int) -> list[tuple[str, int]]:
        """Listen; returns the bound addresses (port 0 is resolved)."""
        await self._trust.rebuild()  # the first build, off the loop (seconds for thousands)
        return await self._listener.start(host, port)

    async def stop(self) -> None:
        if self._rebuilding is not None:
            self._rebuilding.cancel()
            await asyncio.gather(self._rebuilding, return_exceptions=True)
        await self._listener.stop(grace=0)

    def trust(self, certificate_pem: str) -> str:
        """Accept the agent holding ``certificate_pem`` from its next handshake on,
        without a restart; returns the certificate's SHA-1 thumbprint. Raises
        CertificateError if it is not a PEM certificate. Idempotent."""
        return self._trust.add(certificate_pem)

    async def distrust(self, thumbprint: str) -> bool:
        """Refuse the certificate with ``thumbprint`` (SHA-1 or SHA-256) from the next
        handshake on, and close its open connections; returns once they are closed.
        Whether it was trusted. Raises CertificateError for a malformed thumbprint."""
        removed = self._trust.remove(thumbprint)
        if removed is not None:
            await self._close_connections_of({removed})
        return removed is not None

    async def set_trusted(self, certificate_pems: Sequence[str]) -> None:
        """Trust exactly ``certificate_pems`` from the next handshake on (as a store
        that holds the registered agents would say), and close the open connections
        of every certificate no longer among them. Raises CertificateError, changing
        nothing, if one is not a PEM certificate."""
        await self._close_connections_of(self._trust.replace(certificate_pems))

    def trusted(self) -> list[str]:
        """The SHA-1 thumbprints of the agents' certificates trusted now, sorted."""
        return self._trust.thumbprints()

    def connected(self) -> dict[str, int]:
        """Live connections by subscription id, for agents connected now."""
        return {
            subscription: live
            for subscription, channels in self._channels.items()
            if (live := sum(not channel.closed.is_set() for channel in channels))
        }

    def waiting(self) -> dict[str, int]:
        """Callers waiting in :meth:`channel` now, by the subscription id they wait for."""
        counts: dict[str, int] = {}
        for (subscription, _), waiters in self._waiters.items():
            counts[subscription] = counts.get(subscription, 0) + len(waiters)
        return counts

    async def channel(
        self, subscription: str, thumbprint: str, timeout: float = DEFAULT_QUEUE_TIMEOUT
    ) -> Channel:
        """A live connection of the agent ``subscription`` presenting ``thumbprint``.

        Waits up to ``timeout`` seconds for the agent to connect; then raises
        AgentNotConnected saying what was waited for, and which other agent
        connected or which certificate was refused meanwhile, if any. A waiting
        caller is woken only by a connection of that agent with that certificate;
        one that is cancelled or times out leaves nothing behind.
        """
        expected = parse_thumbprint(thumbprint)
        key, loop = (subscription, expected), asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (found := self._live(subscription, expected)) is None:
            arrival: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(key, set()).add(arrival)
            try:
                # not wait_for, which can lose a cancellation on Python 3.11 (bpo-42130)
                async with asyncio.timeout_at(deadline):
                    await arrival
            except TimeoutError:
                if (found := self._live(subscription, expected)) is not None:
                    return found  # it came as the time ran out
                raise AgentNotConnected(
                    f"agent {subscription} with certificate {expected} did not connect "
                    f"within {timeout:g} s{self._meanwhile(subscription, expected)}"
                ) from None
            finally:
                self._forget_waiter(key, arrival)
        return found

    def _live(self, subscription: str, expected: str) -> Channel | None:
        for channel in self._channels.get(subscription, ()):
            if not channel.closed.is_set() and expected in channel.peer_thumbprints:
                return channel
        return None

    def _forget_waiter(self, key: tuple[str, str], arrival: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(arrival)
            if not waiters:
                del self._waiters[key]

    def _wake(self, subscription: str, channel: Channel) -> None:
        """Wake the callers waiting for this agent with one of this channel's thumbprints."""
        for thumbprint in channel.peer_thumbprints:
            for arrival in self._waiters.get((subscription, thumbprint), ()):
                if not arrival.done():
                    arrival.set_result(None)

    async def _close_connections_of(self, thumbprints: set[str]) -> None:
        """Close the connections of ``thumbprints``, just removed from the trust, and
        have the TLS context rebuilt without them (until then the listener refuses
        them after the handshake)."""
        if thumbprints and (self._rebuilding is None or self._rebuilding.done()):
            self._rebuilding = asyncio.create_task(self._rebuild_while_stale())
        doomed = [channel for channels in self._channels.values() for channel in channels
                  if channel.peer_thumbprint in thumbprints]  # fmt: skip
        for channel in doomed:
            log.info("closing %s: its certificate %s is no longer trusted",
                     channel.peer_name, channel.peer_thumbprint)  # fmt: skip
        await asyncio.gather(*(channel.close(NO_LONGER_TRUSTED) for channel in doomed))

    async def _rebuild_while_stale(self) -> None:
        try:
            while self._trust.stale:
                await self._trust.rebuild()
        except Exception:  # the listener refuses them after the handshake meanwhile
            log.exception("could not rebuild the TLS context of the trusted agents")

    def _meanwhile(self, subscription: str, expected: str) -> str:
        """The last agent that connected and the last certificate refused, if any, as
        the end of a sentence: what a person needs when the awaited agent does not come."""
        now, notes = time.monotonic(), []
        if self._last_agent is not None:
            when, other, channel = self._last_agent
            ago, presented = f"{now - when:.0f} s ago", channel.peer_thumbprint
            if other != subscription:
                notes.append(f"the last agent to connect was {other} with certificate "
                             f"{presented}, {ago} (is the subscription id right?)")  # fmt: skip
            elif expected not in channel.peer_thumbprints:
                notes.append(f"{other} last connected {ago} with certificate {presented}")
            else:
                notes.append(f"it last connected {ago}")
        if self._last_refused is not None:
            when, presented = self._last_refused
            hint = f" ({self._refusal_hint})" if self._refusal_hint else ""
            notes.append(f"the last connection refused for an untrusted certificate presented "
                         f"{presented}, {now - when:.0f} s ago{hint}")  # fmt: skip
        return f"; {'; '.join(notes)}" if notes else "; no agent connected meanwhile"

    def _refused(self, presented: str) -> None:
        self._last_refused = (time.monotonic(), presented)

    async def _register(self, channel: Channel, headers: Mapping[str, str]) -> None:
        subscription = headers.get(SUBSCRIPTION_HEADER, "")
        who = subscription or "without a subscription id"
        if self._trust.trusted(channel.peer_thumbprint) is None:
            # distrusted after its handshake (or resumed a session from before)
            log.warning("refused a polling connection from %s: certificate %s is no longer "
                        "trusted", who, channel.peer_thumbprint)  # fmt: skip
            self._refused(channel.peer_thumbprint)
            await channel.close(NO_LONGER_TRUSTED)
            return
        self._last_agent = (time.monotonic(), who, channel)
        if not _SUBSCRIPTION.fullmatch(subscription):
            log.warning(
                "refused a polling connection from %s: subscription %r is not poll://<20>/",
                channel.peer_thumbprint,
                subscription,
            )
            await channel.close("no valid subscription id")
            return
        self._channels.setdefault(subscription, []).append(channel)
        self._wake(subscription, channel)
        log.info("agent %s connected (%s)", subscription, channel.peer_thumbprint)
        try:
            await channel.wait_closed()
        finally:
            channels = self._channels[subscription]
            channels.remove(channel)
            if not channels:  # an agent that has gone leaves nothing behind
                del self._channels[subscription]
