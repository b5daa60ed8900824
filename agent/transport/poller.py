"""Polling mode, the agent's side: dial out to a server and answer its calls.

The agent keeps each connection to a polling server open, presenting its
subscription id, and answers whatever the server calls on it, exactly as a
listening agent does. When a connection drops or cannot be made, it dials again
after a jittered exponential backoff (``agent.protocol.retry.POLLING``): the
first retry within a second, never more than 15 s apart, reset once a
connection completes its hello, so that a thousand agents do not return to a
restarted server all at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.errors import TentacleError
from agent.protocol.calls import Handler
from agent.protocol.retry import POLLING, Retry
from agent.transport.dialer import DISTRUST_EVIDENCE, Dialer, DroppedAfterHandshake, Proxy
from agent.transport.listener import drain
from agent.transport.metered import counted_connection
from agent.transport.settings import ChannelSettings

if TYPE_CHECKING:
    from agent.observability.metrics import AgentMetrics

log = logging.getLogger(__name__)

SUBSCRIPTION_HEADER = "X-Tentacle-Subscription"

FIX_ON_THE_SERVER = (
    "on the server: trust this agent's certificate, which `tentacle export-certificate` prints"
)


class Complaints:
    """Which failures of one polling connection to log, so that a server down for
    hours does not fill the log: the first, any whose message differs from the
    one before, and the 2nd, 4th, 8th... in a row; and, once, the recovery."""

    def __init__(self) -> None:
        self.failures = 0
        self._last: str | None = None

    def failed(self, message: str) -> bool:
        """Count a failure; whether to log it."""
        self.failures += 1
        changed, self._last = message != self._last, message
        return changed or self.failures & (self.failures - 1) == 0

    def recovered(self) -> int:
        """Count a success; returns how many failures it ends (0: nothing to report)."""
        failures, self.failures, self._last = self.failures, 0, None
        return failures


async def poll(
    address: str,
    thumbprint: str,
    subscription: str,
    settings: ChannelSettings,
    handler: Handler,
    stop: asyncio.Event,
    proxy: Proxy | None = None,
    *,
    grace: float = 30.0,
    hurry: asyncio.Event | None = None,
    dialer: Dialer | None = None,
    metrics: AgentMetrics | None = None,
) -> bool:
    """Keep one connection to ``address`` (through ``proxy``) until ``stop`` is set;
    then give its calls in flight ``grace`` seconds (less if ``hurry`` is set).
    Returns whether they all finished. Every redial goes through ``dialer`` (one
    TLS context for all of an agent's connections), by default one of its own.
    ``metrics``: where the connection, its redials and heartbeat misses are counted."""
    own = dialer is None
    through = Dialer(settings.identity) if dialer is None else dialer
    try:
        return await _poll(address, thumbprint, subscription, settings, handler, stop, proxy,
                           grace, hurry, through, metrics)  # fmt: skip
    finally:
        if own:
            await through.close()


async def _poll(
    address: str,
    thumbprint: str,
    subscription: str,
    settings: ChannelSettings,
    handler: Handler,
    stop: asyncio.Event,
    proxy: Proxy | None,
    grace: float,
    hurry: asyncio.Event | None,
    dialer: Dialer,
    metrics: AgentMetrics | None = None,
) -> bool:
    loop = asyncio.get_running_loop()
    retry = Retry(POLLING)  # reset by a hello, unlike the complaints
    complaints = Complaints()
    dropped = 0
    first = True
    while not stop.is_set():
        if metrics is not None and not first:
            metrics.reconnects.inc()
        first = False
        try:
            channel = await dialer.dial(
                address,
                thumbprint,
                settings,
                handler=handler,
                headers={SUBSCRIPTION_HEADER: subscription},
                proxy=proxy,
                refusal_fix=FIX_ON_THE_SERVER,
            )
        except TentacleError as error:
            dropped = dropped + 1 if isinstance(error, DroppedAfterHandshake) else 0
            if isinstance(error, DroppedAfterHandshake) and dropped >= DISTRUST_EVIDENCE:
                error = error.as_trust_error(dropped)
            delay = retry.failed(loop.time()) or 0.0  # POLLING has no deadline
            # the count in a distrust message changes each time; the error does not
            if complaints.failed("distrusted" if dropped >= DISTRUST_EVIDENCE else str(error)):
                log.warning("cannot reach polling server %s (%s; failure %d in a row); retrying "
                            "in %.1f s (further failures: logged on a change or each doubling)",
                            address, error, complaints.failures, delay)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            continue
        retry.succeeded()
        dropped = 0
        if ended := complaints.recovered():
            log.info("reached polling server %s again after %d failed attempts", address, ended)
        log.info("polling %s as %s", address, subscription)
        closed = asyncio.ensure_future(channel.wait_closed())
        stopping = asyncio.ensure_future(stop.wait())
        with counted_connection(metrics, "polling", channel):
            await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not closed.done():
            closed.cancel()
            drained = await drain([channel], grace, hurry)
            await channel.close("the agent is stopping")
            return drained
        log.warning("connection to %s closed: %s", address, channel.close_reason)
        # come back soon, but not all at the same instant
        delay = retry.failed(loop.time()) or 0.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
    return True


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
