"""The observability endpoint: a small aiohttp app on the ``--metrics HOST:PORT`` port.

- ``/metrics``: the process's registry in Prometheus's text format.
- ``/livez``: 200 while the event loop turns: the Heartbeat (below) beat within
  ``max_age`` seconds. That the HTTP server answers is not enough: a loop stuck in
  one task answers nothing anyway, but a loop whose timers no longer fire (a task
  spinning on ``sleep(0)``, a starved loop) would answer and yet do no work.
- ``/readyz``: 200 when the process's own readiness check says so (the agent:
  listening or holding a polling connection; the hub: serving, its store
  answering), 503 with the reason otherwise.

Each answer is one line of text saying why. The endpoint binds only where it is
told (no wildcard default) and never serves anything else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agent.errors import TentacleError
from agent.observability.heartbeat import Heartbeat

log = logging.getLogger(__name__)

LIVE_MAX_AGE = 30.0  # /livez fails when the last beat is older than this

# the reason a process is not ready, or None when it is
Readiness = Callable[[], Awaitable[str | None]]
BeforeScrape = Callable[[], Awaitable[None]]


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6; port 0 picks a free one) -> (host, port).

    Raises ValueError naming the expected form: a host is required (the endpoint
    binds only where it is told, never every interface by default)."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9100, or [::1]:9100; port 0 picks "
            "a free one)"
        )
    return host, int(port)


@dataclass
class Probes:
    """What the endpoint asks: the heartbeat (/livez), readiness (/readyz) and what to
    refresh before a scrape (the hub's gauges read from its store)."""

    heartbeat: Heartbeat
    readiness: Readiness
    max_age: float = LIVE_MAX_AGE
    before_scrape: BeforeScrape | None = None


def build_app(registry: CollectorRegistry, probes: Probes) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        if probes.before_scrape is not None:
            try:
                await probes.before_scrape()
            except Exception as error:  # the store is down: the rest is still worth serving
                log.warning("metrics: cannot refresh the store's figures: %s", error)
        # off the loop: the collectors stat the disk and walk the Work folder (bounded)
        body = await asyncio.to_thread(generate_latest, registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def livez(request: web.Request) -> web.Response:
        age = probes.heartbeat.age()
        if age <= probes.max_age:
            return web.Response(text=f"live: the event loop turned {age:.1f} s ago\n")
        return web.Response(
            status=503,
            text=f"not live: the event loop last turned {age:.1f} s ago "
            f"(more than {probes.max_age:g} s)\n",
        )

    async def readyz(request: web.Request) -> web.Response:
        try:
            reason = await probes.readiness()
        except Exception as error:
            reason = f"the readiness check failed: {error}"
        if reason is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app


class EndpointError(TentacleError):
    """The endpoint cannot listen where it was told (the port is taken, say): a
    condition that may pass, unlike a configuration error."""


class Endpoint:
    """The endpoint's server: ``start()`` binds (EndpointError naming the address when
    it cannot), ``stop()`` closes."""

    def __init__(self, registry: CollectorRegistry, probes: Probes) -> None:
        self._runner = web.AppRunner(build_app(registry, probes), access_log=None,
                                     handle_signals=False)  # fmt: skip
        self.url = ""

    async def start(self, host: str, port: int) -> str:
        """Listen on ``host:port``; returns the URL served (port 0 resolved)."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            raise EndpointError(
                f"cannot serve metrics on {host}:{port} (--metrics): {error.strerror or error}"
            ) from None
        bound_host, bound_port = self._runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}/"
        return self.url

    async def stop(self) -> None:
        await self._runner.cleanup()
