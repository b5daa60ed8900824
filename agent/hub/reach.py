"""How the hub reaches a worker: a client for its endpoint, listening or polling.

Everything the hub does to a worker goes through ``agent.client``; this module
only picks the client for a worker's row: dialing ``https://host:port/`` with
the worker's thumbprint pinned, or through the hub's polling listener for
``poll://subscription/``.
"""

from __future__ import annotations

from agent.client import AgentClient, ChannelSettings, Endpoint, PollingListener
from agent.errors import TentacleError
from agent.hub.store.records import Row

CALL_TIMEOUT = 120.0  # seconds for one call to a worker


class Unreachable(TentacleError):
    """The hub has no way to reach this worker (a polling worker without a listener)."""


class WorkerReach:
    """Clients for workers, as this hub node reaches them."""

    def __init__(self, settings: ChannelSettings, listener: PollingListener | None) -> None:
        self.settings = settings
        self.listener = listener

    def client(self, worker: Row, wait: float = 30.0) -> AgentClient:
        """A client for ``worker``; ``wait``: how long a polling worker may take to connect."""
        endpoint = Endpoint(worker["uri"], worker["thumbprint"])
        if worker["communication_style"] == "TentacleActive":
            if self.listener is None:
                raise Unreachable(
                    "this hub node has no polling port, so it cannot reach "
                    f"polling worker {worker['name']}"
                )
            return AgentClient.polling(self.listener, endpoint, self.settings, wait)
        if worker["communication_style"] == "TentaclePassive":
            return AgentClient(endpoint, self.settings, call_timeout=CALL_TIMEOUT)
        raise Unreachable(f"{worker['communication_style']} workers are not supported yet")
