"""How the hub reaches a worker: a client for its endpoint, listening or polling.

Everything the hub does to a worker goes through ``agent.client``; this module
only picks the client for a worker's row: dialing ``https://host:port/`` with
the worker's thumbprint pinned, or through the hub's polling listener for
``poll://subscription/``.
"""

from __future__ import annotations

from agent.client import (
    AgentClient,
    Backoff,
    ChannelSettings,
    Connections,
    Endpoint,
    PollingListener,
    Worker,
)
from agent.errors import TentacleError
from agent.hub.store.records import Row

CALL_TIMEOUT = 120.0  # seconds for one call to a worker
# A health check tells "unavailable" soon: a few quick retries through a dropped
# connection, not the two minutes a deployment's calls are given.
CHECK_RETRY = Backoff(first=0.5, cap=2.0, deadline=5.0)
# what a listening worker that refuses the hub's certificate needs (said in the check's log)
FIX_ON_THE_WORKER = (
    "on the worker: tentacle register-worker again, which trusts the hub's certificate"
)


class Unreachable(TentacleError):
    """The hub has no way to reach this worker (a polling worker without a listener)."""


class WorkerReach:
    """Clients for workers, as this hub node reaches them."""

    def __init__(self, settings: ChannelSettings, listener: PollingListener | None) -> None:
        self.settings = settings
        self.listener = listener
        # one TLS context and one connection per listening worker, shared by every task
        self.connections = Connections(settings, refusal_fix=FIX_ON_THE_WORKER)

    async def close(self) -> None:
        await self.connections.close()

    def client(self, worker: Row, wait: float = 30.0, retry: Backoff = CHECK_RETRY) -> Worker:
        """The ``Worker`` for a worker's row; ``wait``: how long a polling worker may
        take to connect. Closing it leaves the shared connections open."""
        endpoint = Endpoint(worker["uri"], worker["thumbprint"])
        if worker["communication_style"] == "TentacleActive":
            if self.listener is None:
                raise Unreachable(
                    "this hub node has no polling port, so it cannot reach "
                    f"polling worker {worker['name']}"
                )
            listener = self.listener
            return AgentClient(
                endpoint,
                self.settings,
                retry=retry,
                connector=lambda: listener.channel(endpoint.url, endpoint.thumbprint, wait),
            )
        if worker["communication_style"] == "TentaclePassive":
            return AgentClient(
                endpoint,
                self.settings,
                call_timeout=CALL_TIMEOUT,
                retry=retry,
                connections=self.connections,
            )
        raise Unreachable(f"{worker['communication_style']} workers are not supported yet")
