"""How the hub reaches a worker: a client for its endpoint, listening or polling.

Everything the hub does to a worker goes through ``agent.client``; this module
only picks the client for a worker's row: dialing ``https://host:port/`` with
the worker's thumbprint pinned, through the hub's polling listener for
``poll://subscription/``, or over SSH (``ssh://host:port/``: the pinned host key
fingerprint, the worker's account read and opened when the worker is first used;
one ``SshConnections`` per hub process, closed at stop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.client import (
    AgentClient,
    Backoff,
    ChannelSettings,
    Connections,
    Endpoint,
    LogChunk,
    PollingListener,
    Progress,
    ScriptOutcome,
    ScriptRequest,
    SshConnections,
    SshTarget,
    Worker,
)
from agent.errors import TentacleError
from agent.hub.accounts import credentials_of
from agent.hub.secrets import HubKey
from agent.hub.store import Store
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


class SshWorkerOfRow:
    """The ``Worker`` of an SSH worker's row: its account is read and opened on first
    use (``client()`` is not async), then every call goes to the shared connection's
    worker. Closing it leaves the connection open."""

    def __init__(self, reach: WorkerReach, worker: Row) -> None:
        self.reach = reach
        self.row = worker
        self._worker: Worker | None = None

    async def _inner(self) -> Worker:
        if self._worker is None:
            reach, row = self.reach, self.row
            if reach.store is None or reach.key is None:
                raise Unreachable(f"this hub node cannot log in to SSH worker {row['name']}")
            async with reach.store.connect() as conn:
                credentials = await credentials_of(conn, reach.key, row["account_id"])
            target = SshTarget(row["ssh_host"], int(row["ssh_port"]), row["ssh_fingerprint"])
            self._worker = reach.ssh.worker(target, credentials, row["name"])
        return self._worker

    async def capabilities(self) -> dict[str, Any]:
        return await (await self._inner()).capabilities()

    async def upload(
        self,
        local: Path,
        remote: str,
        progress: Progress | None = None,
        isolation_group: str | None = None,
    ) -> dict[str, Any]:
        return await (await self._inner()).upload(local, remote, progress, isolation_group)

    async def download(
        self,
        remote: str,
        local: Path,
        progress: Progress | None = None,
        isolation_group: str | None = None,
    ) -> dict[str, Any]:
        return await (await self._inner()).download(remote, local, progress, isolation_group)

    async def execute(
        self,
        request: ScriptRequest,
        on_output: Callable[[LogChunk], None],
        cancel: asyncio.Event | None = None,
    ) -> ScriptOutcome:
        return await (await self._inner()).execute(request, on_output, cancel)

    async def cancel(self, ticket: str) -> None:
        await (await self._inner()).cancel(ticket)

    async def close(self) -> None:
        if self._worker is not None:
            await self._worker.close()


class WorkerReach:
    """Clients for workers, as this hub node reaches them. ``store`` and ``key`` (the
    hub's) open SSH workers' accounts; ``ssh_root``: their folder on the targets."""

    def __init__(
        self,
        settings: ChannelSettings,
        listener: PollingListener | None,
        store: Store | None = None,
        key: HubKey | None = None,
        ssh_root: str = ".tentacle",
    ) -> None:
        self.settings = settings
        self.listener = listener
        self.store = store
        self.key = key
        # one TLS context and one connection per listening worker, shared by every task
        self.connections = Connections(settings, refusal_fix=FIX_ON_THE_WORKER)
        # one SSH connection per (server, user), shared by every task, check and transfer
        self.ssh = SshConnections(root=ssh_root)

    async def close(self) -> None:
        await self.connections.close()
        await self.ssh.close()

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
        if worker["communication_style"] == "Ssh":
            return SshWorkerOfRow(self, worker)
        raise Unreachable(f"{worker['communication_style']} workers are not supported yet")
