"""SshWorker: agent.client.Worker on a machine reached over SSH (no agent there)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.client.scripts import LogChunk, ScriptOutcome, ScriptRequest
from agent.client.ssh.connections import Link
from agent.client.worker import Progress
from agent.errors import UnsupportedFeature


class SshWorker:
    """A ``Worker`` over one shared SSH connection (see SshConnections)."""

    def __init__(self, link: Link, name: str) -> None:
        self.link = link
        self.name = name

    async def capabilities(self) -> dict[str, Any]:
        raise UnsupportedFeature("not yet")

    async def upload(
        self, local: Path, remote: str, progress: Progress | None = None
    ) -> dict[str, Any]:
        raise UnsupportedFeature("not yet")

    async def download(
        self, remote: str, local: Path, progress: Progress | None = None
    ) -> dict[str, Any]:
        raise UnsupportedFeature("not yet")

    async def execute(
        self,
        request: ScriptRequest,
        on_output: Callable[[LogChunk], None],
        cancel: asyncio.Event | None = None,
    ) -> ScriptOutcome:
        raise UnsupportedFeature("not yet")

    async def cancel(self, ticket: str) -> None:
        raise UnsupportedFeature("not yet")

    async def close(self) -> None:
        """Nothing per handle: the connection is SshConnections'."""
