"""Route a call to ``service.method``; unknown names get typed errors.

Parameters are validated by each method through its request type in
agent.protocol.services.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agent.errors import CallError
from agent.protocol.calls import IncomingCall, Reply
from agent.protocol.messages import UNKNOWN_METHOD, UNKNOWN_SERVICE

if TYPE_CHECKING:
    from agent.observability.metrics import AgentMetrics

Method = Callable[[IncomingCall], Awaitable[Reply]]


class Router:
    def __init__(self, metrics: AgentMetrics | None = None) -> None:
        """``metrics``: where each call's latency is counted, by service and method
        (None: not counted)."""
        self.metrics = metrics
        self._services: dict[str, dict[str, Method]] = {}
        self._versions: dict[str, int] = {}

    def add(self, service: str, version: int, methods: dict[str, Method]) -> None:
        self._services[service] = dict(methods)
        self._versions[service] = version

    @property
    def advertised(self) -> tuple[str, ...]:
        """``name/version`` for every service, as announced in hello and capabilities:
        every version up to the one served, since a later version only adds to the
        earlier ones (scripts/2 is scripts/1 with ``Environment``), so that a peer
        looking for ``scripts/1`` finds it (docs/protocol.md §4)."""
        return tuple(
            f"{name}/{number}"
            for name, version in self._versions.items()
            for number in range(1, version + 1)
        )

    async def __call__(self, call: IncomingCall) -> Reply:
        if self.metrics is None:
            return await self._route(call)
        known = call.method in self._services.get(call.service, {})
        labels = self.metrics.call_labels(call.service, call.method, known)
        started = time.perf_counter()
        try:
            return await self._route(call)
        finally:  # failed calls too: a refusal's latency is a latency
            self.metrics.call_seconds.labels(*labels).observe(time.perf_counter() - started)

    async def _route(self, call: IncomingCall) -> Reply:
        methods = self._services.get(call.service)
        if methods is None:
            known = ", ".join(self._services) or "none"
            raise CallError(UNKNOWN_SERVICE, f"no service {call.service!r} (served: {known})")
        method = methods.get(call.method)
        if method is None:
            known = ", ".join(methods)
            raise CallError(
                UNKNOWN_METHOD, f"service {call.service!r} has no method {call.method!r} ({known})"
            )
        return await method(call)
