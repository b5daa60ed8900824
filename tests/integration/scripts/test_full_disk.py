"""A full disk loses no outcome: scripts that end on it report their real exit
code, ``complete`` answers, and everything is written once space returns.

The agent's ``Work/`` is a real small tmpfs (the tests run as root, in CI too).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import RemoteError
from agent.scripts import runner, tombstones
from agent.scripts.state import COMPLETE, load_state
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually
from tests.helpers.smalldisk import fill, small_disk
from tests.integration.scripts.conftest import Scripts

SIZE_MIB = 8


@pytest.fixture
def small_agent(tentacle: TentacleCli) -> Iterator[AgentProcess]:
    """An agent (not started) whose Work/ is a tmpfs of SIZE_MIB MiB."""
    agent = AgentProcess(tentacle)
    with small_disk(agent.home / "Work", SIZE_MIB):
        try:
            yield agent
        finally:
            agent.stop()


def body(release: Path, code: int, counter: Path) -> str:
    return (f'echo run >> "{counter}"; echo up\n'
            f'for i in $(seq 2400); do [ -e "{release}" ] && break; sleep 0.05; done\n'
            f"exit {code}\n")  # fmt: skip


async def test_scripts_ending_on_a_full_disk_report_and_persist_their_outcome(
    small_agent: AgentProcess, tmp_path: Path
) -> None:
    agent = small_agent.start()
    release, counter = tmp_path / "release", tmp_path / "runs"
    work = agent.home / "Work"
    async with agent.client() as client:
        scripts = Scripts(client)
        await scripts.start(body(release, 7, counter), ticket="completed", Isolation="none")
        await scripts.start(body(release, 8, counter), ticket="kept", Isolation="none")
        for ticket in ("completed", "kept"):
            await eventually(lambda t=ticket: _printed(scripts, t), f"{ticket} is running")

        fill(work / "filler")
        with pytest.raises(RemoteError) as refused:
            await scripts.start("echo never", ticket="no-room")
        assert refused.value.kind == "insufficient_space"
        assert "no space left" in str(refused.value)

        release.touch()  # both end while the disk is full
        for ticket, code in (("completed", 7), ("kept", 8)):
            await eventually(lambda t=ticket: _complete(scripts, t), f"{ticket} reports Complete")
            status = await scripts.status(ticket)
            assert (status["State"], status["ExitCode"]) == (COMPLETE, code)
        assert load_state(work / "kept") is not None
        # The wrappers recorded the codes even on the full disk (a line appended
        # inside wrapper.pid's first block needs no new space); the state files
        # are not rewritten for them: a restart reads the same record.
        assert runner.exit_code(work / "kept") == 8
        assert load_state(work / "kept").state != COMPLETE  # type: ignore[union-attr]
        await client.call("scripts", "complete", {"ScriptTicket": "completed"})  # answers

        (work / "filler").unlink()  # space returns: what was kept in memory is written
        await eventually(lambda: _on_disk(work), "the outcomes are written")

    agent.signal(signal.SIGKILL)  # nothing more is written: the disk alone must tell
    assert agent.process is not None
    agent.process.wait()
    agent.start()
    async with agent.client() as client:
        scripts = Scripts(client)
        kept = await scripts.status("kept")
        assert (kept["State"], kept["ExitCode"]) == (COMPLETE, 8)
        again = await scripts.start("echo again", ticket="completed")
        assert (again["State"], again["ExitCode"]) == (COMPLETE, 7)
    assert counter.read_text() == "run\nrun\n"


async def _printed(scripts: Scripts, ticket: str) -> bool:
    return bool((await scripts.status(ticket))["Logs"])


async def _complete(scripts: Scripts, ticket: str) -> bool:
    return bool((await scripts.status(ticket))["State"] == COMPLETE)


async def _on_disk(work: Path) -> bool:
    return "completed" in tombstones.load_all(work)
