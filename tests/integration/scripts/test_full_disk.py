"""A full disk loses no outcome: scripts that end on it report their real exit
code, ``complete`` answers, and everything is written once space returns.

The agent's ``Work/`` is a real small tmpfs (the tests run as root, in CI too).
"""

from __future__ import annotations

import mmap
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

        # complete's tombstone is written at once into the space its workspace
        # freed; what stays in memory until space returns is tested below.
        await eventually(lambda: _on_disk(work), "the tombstone is written")
        (work / "filler").unlink()

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


@pytest.fixture
def tiny_agent(tentacle: TentacleCli) -> Iterator[AgentProcess]:
    """An agent (not started) whose Work/ is a tmpfs of SIZE_MIB MiB and whose
    tombstones' folder Work/.completed is a tmpfs of its own (1 MiB): filled,
    it refuses a tombstone however much space a removed workspace frees."""
    agent = AgentProcess(tentacle)
    work = agent.home / "Work"
    with small_disk(work, SIZE_MIB), small_disk(work / tombstones.FOLDER, 1):
        try:
            yield agent
        finally:
            agent.stop()


async def test_outcomes_a_full_disk_refuses_are_kept_in_memory_and_written_when_space_returns(
    tiny_agent: AgentProcess, tmp_path: Path
) -> None:
    agent = tiny_agent.start()
    counter = tmp_path / "runs"
    work, graves = agent.home / "Work", agent.home / "Work" / tombstones.FOLDER
    fillers = [work / "filler", work / "filler-2", graves / ".filler"]  # a dot: no tombstone
    async with agent.client() as client:
        scripts = Scripts(client)
        for ticket, code in (("completed", 7), ("kept", 8)):
            body_ = body(tmp_path / f"release-{ticket}", code, counter)
            await scripts.start(body_, ticket=ticket, Isolation="none")
            await eventually(lambda t=ticket: _printed(scripts, t), f"{ticket} is running")
        _pad_wrapper_record(work / "kept")
        fill(fillers[0])
        fill(fillers[2])

        # "completed" ends (its wrapper records 7) and is completed: the tombstone
        # cannot be written, its workspace's space is freed on Work/ alone.
        (tmp_path / "release-completed").touch()
        await eventually(lambda: _complete(scripts, "completed"), "completed reports Complete")
        await client.call("scripts", "complete", {"ScriptTicket": "completed"})
        assert "completed" not in tombstones.load_all(work)
        again = await scripts.start("echo never", ticket="completed")  # answered from memory
        assert (again["State"], again["ExitCode"]) == (COMPLETE, 7)

        # "kept" ends on a disk with not one byte left (that space taken again):
        # its wrapper cannot append the code, and passes it on in its exit status.
        fill(fillers[1])
        (tmp_path / "release-kept").touch()
        await eventually(lambda: _complete(scripts, "kept"), "kept reports Complete")
        status = await scripts.status("kept")
        assert (status["State"], status["ExitCode"]) == (COMPLETE, 8)
        assert runner.exit_code(work / "kept") is None, "the wrapper recorded its code"
        assert load_state(work / "kept").state != COMPLETE  # type: ignore[union-attr]

        # Space returns, with no call to prompt the agent: its retry writes both.
        for filler in fillers:
            filler.unlink()
        await eventually(lambda: _written(work, "kept", 8), "kept's state is written",
                         timeout=30)  # fmt: skip
        await eventually(lambda: "completed" in tombstones.load_all(work),
                         "completed's tombstone is written", timeout=30)  # fmt: skip

    agent.signal(signal.SIGKILL)  # nothing more is written: the disk alone must tell
    assert agent.process is not None
    agent.process.wait()
    agent.start()
    async with agent.client() as client:
        scripts = Scripts(client)
        kept = await scripts.status("kept")
        assert (kept["State"], kept["ExitCode"]) == (COMPLETE, 8)  # not -46
        again = await scripts.start("echo again", ticket="completed")
        assert (again["State"], again["ExitCode"]) == (COMPLETE, 7)  # not run again
    assert counter.read_text() == "run\nrun\n"


def _pad_wrapper_record(workspace: Path) -> None:
    """Make the wrapper's first line fill a whole page of its record, atomically.

    On tmpfs the exit code's line, appended inside the page the first line
    already holds, needs no new space: a full disk cannot refuse it. Padded,
    it needs a page of its own, as a record crossing a block does on a disk,
    so the wrapper's record itself is refused. The padding is whitespace,
    which the record's reader ignores.
    """
    record = workspace / runner.PID_FILE
    first = record.read_text().rstrip("\n")
    padded = workspace / "wrapper.pid.padded"
    padded.write_text(first.ljust(mmap.PAGESIZE - 1) + "\n")
    padded.replace(record)
    assert runner.recorded_wrapper(workspace) is not None


def _written(work: Path, ticket: str, code: int) -> bool:
    state = load_state(work / ticket)
    return state is not None and (state.state, state.exit_code) == (COMPLETE, code)
