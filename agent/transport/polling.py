"""Polling mode, the agent's side: dial out to a server and answer its calls.

The agent keeps each connection to a polling server open, presenting its
subscription id, and answers whatever the server calls on it, exactly as a
listening agent does. When a connection drops or cannot be made, it dials again
after a jittered exponential backoff: the first retry within a second, never
more than BACKOFF_CAP apart, reset once a connection completes its hello, so
that a thousand agents do not return to a restarted server all at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from urllib.parse import urlsplit

from agent.errors import TentacleError
from agent.protocol.dispatch import Handler
from agent.transport.dialer import Proxy, dial
from agent.transport.settings import ChannelSettings

log = logging.getLogger(__name__)

SUBSCRIPTION_HEADER = "X-Tentacle-Subscription"
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 60.0


def backoff_delay(failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row (>= 1): "full jitter",
    uniform below min(cap, first * 2^(failures-1))."""
    ceiling = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (failures - 1))
    return (rng or random).uniform(0, ceiling)


async def poll(
    address: str,
    thumbprint: str,
    subscription: str,
    settings: ChannelSettings,
    handler: Handler,
    stop: asyncio.Event,
    proxy: Proxy | None = None,
) -> None:
    """Keep one connection to ``address`` (through ``proxy``) until ``stop`` is set."""
    failures = 0
    while not stop.is_set():
        try:
            channel = await dial(
                address,
                thumbprint,
                settings,
                handler=handler,
                headers={SUBSCRIPTION_HEADER: subscription},
                proxy=proxy,
            )
        except TentacleError as error:
            failures += 1
            delay = backoff_delay(failures)
            log.warning("cannot reach polling server %s (%s); retrying in %.1f s",
                        address, error, delay)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            continue
        failures = 0
        log.info("polling %s as %s", address, subscription)
        closed = asyncio.ensure_future(channel.wait_closed())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not closed.done():
            closed.cancel()
            await channel.drain()
            await channel.close("the agent is stopping")
            return
        log.warning("connection to %s closed: %s", address, channel.close_reason)
        failures = 1  # come back soon, but not all at the same instant
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff_delay(failures))


def proxy_from_environment(address: str, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy HTTPS_PROXY names for ``address``, unless NO_PROXY exempts its host."""
    url = environ.get("HTTPS_PROXY") or environ.get("https_proxy")
    if not url:
        return None
    host = urlsplit(address).hostname or ""
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        if entry == "*" or (
            entry and (host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")))
        ):
            return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        return None
    return Proxy(parts.hostname, parts.port or 80, parts.username, parts.password)
