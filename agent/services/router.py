"""Route a call to ``service.method``; unknown names get typed errors.

Parameters are validated by each method through its request type in
agent.protocol.services.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agent.errors import CallError
from agent.protocol.calls import IncomingCall, Reply
from agent.protocol.messages import UNKNOWN_METHOD, UNKNOWN_SERVICE

Method = Callable[[IncomingCall], Awaitable[Reply]]


class Router:
    def __init__(self) -> None:
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
