"""Worker: the one interface of "a machine that runs work", however it is reached.

The hub's task and health-check code calls only this. ``AgentClient``
implements it for listening and polling agents; the hub's built-in worker and
SSH workers implement it too (structurally: a Protocol, no base class needed).

Every method may raise ``agent.errors.ConnectionLost`` once the worker's retry
policy gives up reaching it, ``TrustError`` when the worker is not the one
pinned (or does not trust us), ``AgentNotConnected`` when a polling worker did
not connect in time, and ``RemoteError`` when the worker refused the request
(it names what was wrong).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agent.client.scripts import LogChunk, ScriptOutcome, ScriptRequest

Progress = Callable[[int], None]


@runtime_checkable
class Worker(Protocol):
    """A machine that runs work: facts, files in and out, scripts with streamed logs."""

    async def capabilities(self) -> dict[str, Any]:
        """What the worker is and can do: ``SupportedCapabilities``, ``AgentVersion``,
        OS, architecture, shells, free disk. Idempotent; the health check's connectivity."""
        ...

    async def upload(
        self,
        local: Path,
        remote: str,
        progress: Progress | None = None,
        isolation_group: str | None = None,
    ) -> dict[str, Any]:
        """Send the file ``local`` to ``remote`` (relative to the worker's home: with
        ``isolation_group``, that group's scripts' ``TentacleHome``), replacing it whole or
        not at all; returns ``{FullPath, Length, Sha256}``."""
        ...

    async def download(
        self,
        remote: str,
        local: Path,
        progress: Progress | None = None,
        isolation_group: str | None = None,
    ) -> dict[str, Any]:
        """Fetch ``remote`` into ``local``, replaced only when complete; returns
        ``{FullPath, Length, Sha256}`` (the local hash). ``isolation_group``: the group
        whose script named ``remote`` (an artifact); a worker that runs scripts as their
        groups' uids serves only that group's own file."""
        ...

    async def execute(
        self,
        request: ScriptRequest,
        on_output: Callable[[LogChunk], None],
        cancel: asyncio.Event | None = None,
    ) -> ScriptOutcome:
        """Run ``request`` to completion, handing every log line to ``on_output`` once, in
        order. Started once per ``request.ticket``: executing the same ticket again (after
        a hub restart, say) follows the script already running. Setting ``cancel``
        cancels it; the outcome then still carries its real exit code. If
        ``on_output`` has an async ``drained()`` method, it is awaited after each
        delivery before more output is fetched (the caller's backpressure: the hub
        stores lines before asking for more), and before the script's end is returned."""
        ...

    async def cancel(self, ticket: str) -> None:
        """Ask the worker to cancel the script ``ticket``, from anywhere (another hub node,
        say); returns once the request is delivered. Whoever executes the ticket learns
        the outcome. Cancelling a finished or unknown ticket does nothing."""
        ...

    async def close(self) -> None:
        """Release what the worker holds for this caller (connections, background calls)."""
        ...
