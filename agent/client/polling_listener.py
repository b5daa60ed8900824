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

log = logging.getLogger(__name__)

DEFAULT_QUEUE_TIMEOUT = 120.0
_SUBSCRIPTION = re.compile(r"poll://[a-z2-9]{20}/")


class AgentNotConnected(TentacleError):
    """The polling agent did not connect within the time a call may wait for it.

    Not a ConnectionLost: the wait was the retry, so callers do not repeat it.
    """


class PollingListener:
    def __init__(self, settings: ChannelSettings, trusted_agent_pems: Sequence[str]) -> None:
        self._listener = Listener(settings, trusted_agent_pems, None,
                                  on_channel=self._register, on_refusal=self._refused)  # fmt: skip
        self._channels: dict[str, list[Channel]] = {}
        self._arrived = asyncio.Condition()
        # what came, for the message when a wait expires
        self._last_refused: tuple[float, str] | None = None  # (when, thumbprint)
        self._last_agent: tuple[float, str, Channel] | None = None  # (when, subscription, ...)

    async def start(self, host: str | None, port: int) -> list[tuple[str, int]]:
        """Listen; returns the bound addresses (port 0 is resolved)."""
        return await self._listener.start(host, port)

    async def stop(self) -> None:
        await self._listener.stop(grace=0)

    def connected(self) -> dict[str, int]:
        """Live connections by subscription id, for agents connected now."""
        return {
            subscription: live
            for subscription, channels in self._channels.items()
            if (live := sum(not channel.closed.is_set() for channel in channels))
        }

    async def channel(
        self, subscription: str, thumbprint: str, timeout: float = DEFAULT_QUEUE_TIMEOUT
    ) -> Channel:
        """A live connection of the agent ``subscription`` presenting ``thumbprint``.

        Waits up to ``timeout`` seconds for the agent to connect; then raises
        AgentNotConnected saying what was waited for, and which other agent
        connected or which certificate was refused meanwhile, if any.
        """
        expected = parse_thumbprint(thumbprint)

        def live() -> Channel | None:
            for channel in self._channels.get(subscription, []):
                if not channel.closed.is_set() and expected in channel.peer_thumbprints:
                    return channel
            return None

        async with self._arrived:
            try:
                await asyncio.wait_for(self._arrived.wait_for(live), timeout)
            except TimeoutError:
                raise AgentNotConnected(
                    f"agent {subscription} with certificate {expected} did not connect "
                    f"within {timeout:g} s{self._meanwhile(subscription, expected)}"
                ) from None
            found = live()
            assert found is not None
            return found

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
            notes.append(f"the last connection refused for an untrusted certificate presented "
                         f"{presented}, {now - when:.0f} s ago "
                         "(is --agent-certificate the agent's?)")  # fmt: skip
        return f"; {'; '.join(notes)}" if notes else "; no agent connected meanwhile"

    def _refused(self, presented: str) -> None:
        self._last_refused = (time.monotonic(), presented)

    async def _register(self, channel: Channel, headers: Mapping[str, str]) -> None:
        subscription = headers.get(SUBSCRIPTION_HEADER, "")
        who = subscription or "without a subscription id"
        self._last_agent = (time.monotonic(), who, channel)
        if not _SUBSCRIPTION.fullmatch(subscription):
            log.warning(
                "refused a polling connection from %s: subscription %r is not poll://<20>/",
                channel.peer_thumbprint,
                subscription,
            )
            await channel.close("no valid subscription id")
            return
        async with self._arrived:
            self._channels.setdefault(subscription, []).append(channel)
            self._arrived.notify_all()
        log.info("agent %s connected (%s)", subscription, channel.peer_thumbprint)
        await channel.wait_closed()
        async with self._arrived:
            self._channels[subscription].remove(channel)
