"""The Worker interface: one scenario, the same calls, a listening and a polling agent."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from agent.client import LogChunk, ScriptRequest, Worker
from tests.helpers.agent import AgentProcess


async def scenario(worker: Worker, home: Path, tmp_path: Path) -> None:
    """What the hub's health check and tasks do with a worker, through Worker alone."""
    facts = await worker.capabilities()
    assert "scripts/1" in facts["SupportedCapabilities"]

    package = tmp_path / "package.bin"
    package.write_bytes(os.urandom(300_000))
    uploaded = await worker.upload(package, "Files/package.bin")
    assert uploaded["Sha256"] == hashlib.sha256(package.read_bytes()).hexdigest()
    assert (home / "Files" / "package.bin").read_bytes() == package.read_bytes()

    back = tmp_path / "back.bin"
    downloaded = await worker.download("Files/package.bin", back)
    assert (downloaded["Sha256"], back.read_bytes()) == (uploaded["Sha256"], package.read_bytes())

    chunks: list[LogChunk] = []
    outcome = await worker.execute(ScriptRequest("seq 1 3; echo oops >&2; exit 5"), chunks.append)
    assert outcome.exit_code == 5
    assert sorted(line for chunk in chunks for line in chunk.lines) == ["1", "2", "3", "oops"]

    # cancelled by someone else than the caller following it (another hub node, say)
    request = ScriptRequest("echo begun; exec sleep 600")
    begun = asyncio.Event()
    following = asyncio.ensure_future(worker.execute(request, lambda _: begun.set()))
    await asyncio.wait_for(begun.wait(), 60)
    await worker.cancel(request.ticket)
    cancelled = await asyncio.wait_for(following, 60)
    assert (cancelled.ticket, cancelled.cancelled) == (request.ticket, False)
    assert cancelled.exit_code != 0

    await worker.cancel("never-started")  # nothing to cancel: does nothing, raises nothing


async def test_the_same_scenario_through_worker(any_agent: AgentProcess, tmp_path: Path) -> None:
    worker: Worker = any_agent.client()
    assert isinstance(worker, Worker)
    try:
        await scenario(worker, any_agent.home, tmp_path)
    finally:
        await worker.close()
