"""What a script leaves on disk is few files, and still enough to survive kill -9.

Creating and removing files is what a short script costs most on a disk (on
ext4 without a journal a deleted inode is not reused for a minute or more, so
every new file searches past the recently deleted ones): the exit code is a
line of ``wrapper.pid``, a recorded outcome does not rewrite ``state.json``,
and tombstones are records of one journal.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from agent.scripts import runner, tombstones
from agent.scripts.state import COMPLETE, PENDING, ScriptSpec, ScriptState, load_state, save_state
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.integration.scripts.conftest import Scripts

OWN_FILES = {"script.sh", "state.json", "wrapper.pid", "stdout.raw", "stderr.raw", "log.index"}


async def test_a_script_leaves_only_its_own_few_files(
    scripts: Scripts, agent: AgentProcess
) -> None:
    work = agent.home / "Work"
    done = await scripts.start("echo hi; exit 3", ticket="few", DurationToWaitForScriptToFinish=30)
    assert (done["State"], done["ExitCode"]) == (COMPLETE, 3)
    assert {p.name for p in (work / "few").iterdir()} == OWN_FILES
    assert runner.exit_code(work / "few") == 3
    assert load_state(work / "few").state == PENDING  # type: ignore[union-attr]
    await scripts.client.call("scripts", "complete", {"ScriptTicket": "few"})
    assert {p.name for p in (work / ".completed").iterdir()} == {tombstones.JOURNAL}
    assert tombstones.load_all(work)["few"].exit_code == 3


async def test_an_outcome_only_the_wrapper_recorded_survives_kill_9(
    tentacle: TentacleCli,
) -> None:
    agent = AgentProcess(tentacle).start()
    try:
        async with agent.client() as client:
            body = "echo out; echo err >&2; exit 4"
            done = await Scripts(client).start(
                body, ticket="k9", DurationToWaitForScriptToFinish=30
            )
            assert (done["State"], done["ExitCode"]) == (COMPLETE, 4)
        agent.signal(signal.SIGKILL)
        assert agent.process is not None
        agent.process.wait()
        agent.start()
        async with agent.client() as client:
            status = await Scripts(client).status("k9")
        assert (status["State"], status["ExitCode"]) == (COMPLETE, 4)
        assert [(e["Source"], e["Text"]) for e in status["Logs"]] == [("stdout", "out"),
                                                                     ("stderr", "err")]  # fmt: skip
        assert load_state(agent.home / "Work" / "k9").state == COMPLETE  # type: ignore[union-attr]
    finally:
        agent.stop()


async def test_a_workspace_left_by_an_earlier_version_reports_its_rc(
    tentacle: TentacleCli,
) -> None:
    """Before the exit code was a line of wrapper.pid, the wrapper wrote it to ``rc``."""
    agent = AgentProcess(tentacle)
    workspace = agent.home / "Work" / "upgraded"
    workspace.mkdir(parents=True)
    save_state(workspace, ScriptState(ScriptSpec("Upgraded", isolation="none")))
    (workspace / "script.sh").write_text("exit 9\n")
    ended = _an_ended_process()
    (workspace / runner.PID_FILE).write_text(f"{ended[0]} {ended[1]}\n")
    (workspace / "rc").write_text("9\n")
    agent.start()
    try:
        async with agent.client() as client:
            status = await Scripts(client).status("upgraded")
        assert (status["Ticket"], status["State"], status["ExitCode"]) == ("Upgraded", COMPLETE, 9)
    finally:
        agent.stop()


def _an_ended_process() -> tuple[int, int]:
    """The pid and start time of a process that has ended (and been reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    start = runner.process_start_time(pid)
    os.waitpid(pid, 0)
    assert start is not None
    return pid, start


async def test_the_work_folder_spreads_workspaces_over_the_disk(
    scripts: Scripts, agent: AgentProcess
) -> None:
    """ext4's top-directory flag (chattr +T) on Work: each workspace goes to a block
    group of its own choosing, so a new file does not search past the inodes the
    scripts before it just freed. Read back with lsattr, not with our own ioctl."""
    done = await scripts.start("echo hi", ticket="spread", DurationToWaitForScriptToFinish=30)
    assert done["State"] == COMPLETE
    listed = subprocess.run(["lsattr", "-d", str(agent.home / "Work")],
                            check=False, capture_output=True, text=True)  # fmt: skip
    if listed.returncode != 0:
        pytest.skip(f"no file attributes here: {listed.stderr.strip()}")
    assert "T" in listed.stdout.split()[0], listed.stdout
