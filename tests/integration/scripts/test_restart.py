"""An agent restart does not lose a running script: the goal beyond Tentacle."""

from __future__ import annotations

import asyncio
import os
import signal
from functools import partial
from pathlib import Path

from agent.client import AgentClient, Endpoint
from agent.scripts import runner
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually
from tests.integration.scripts.conftest import Scripts

SCRIPTS = 20
LINES = 50

# Prints LINES lines, waits for its release file, prints LINES more, exits with its number.
BODY = f"""
n=$1; release=$2
for i in $(seq {LINES}); do echo "before $n $i"; done
echo "started" >&2
for i in $(seq 2400); do [ -e "$release" ] && break; sleep 0.05; done
for i in $(seq {LINES}); do echo "after $n $i"; done
exit $n
"""


def client_for(agent: AgentProcess) -> AgentClient:
    return AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings())


async def full_log(scripts: Scripts, ticket: str) -> list[tuple[int, str, str]]:
    """Every line of a complete script's log, fetched page by page."""
    lines: list[tuple[int, str, str]] = []
    last = 0
    while True:
        status = await scripts.status(ticket, last)
        for entry in status["Logs"]:
            for offset, text in enumerate(entry["Text"].split("\n")):
                lines.append((entry["Sequence"] + offset, entry["Source"], text))
        if not status["Logs"]:
            return lines
        last = status["NextLogSequence"]


async def _has_logged_to_stderr(scripts: Scripts, ticket: str) -> bool:
    return any(entry["Source"] == "stderr" for entry in (await scripts.status(ticket))["Logs"])


async def test_kill_9_during_20_running_scripts_loses_nothing(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    agent = AgentProcess(tentacle).start()
    releases = [tmp_path / f"release-{n}" for n in range(SCRIPTS)]
    tickets = [f"survivor-{n}" for n in range(SCRIPTS)]
    async with client_for(agent) as client:
        scripts = Scripts(client)
        for n, ticket in enumerate(tickets):
            await scripts.start(BODY, ticket=ticket, Isolation="none",
                                Arguments=[str(n), str(releases[n])])  # fmt: skip
        for ticket in tickets:  # all running and past their first half
            await eventually(partial(_has_logged_to_stderr, scripts, ticket),
                             f"{ticket} past its first half")  # fmt: skip

    agent.signal(signal.SIGKILL)
    assert agent.process is not None
    agent.process.wait()
    for release in releases[: SCRIPTS // 2]:  # half finish while the agent is down
        release.touch()

    agent.start()
    assert "re-attached to script" in agent.wait_for_log("re-attached to script")
    for release in releases[SCRIPTS // 2 :]:  # the other half after the restart
        release.touch()
    try:
        async with client_for(agent) as client:
            scripts = Scripts(client)
            for n, ticket in enumerate(tickets):
                status = await scripts.wait_complete(ticket)
                assert status["ExitCode"] == n, f"{ticket}: {status}"
                lines = await full_log(scripts, ticket)
                assert [sequence for sequence, _, _ in lines] == list(range(1, len(lines) + 1))
                stdout = [text for _, source, text in lines if source == "stdout"]
                assert stdout == [f"before {n} {i}" for i in range(1, LINES + 1)] + [
                    f"after {n} {i}" for i in range(1, LINES + 1)
                ]
                assert [text for _, source, text in lines if source == "stderr"] == ["started"]
    finally:
        agent.stop()


async def test_a_script_that_vanished_without_a_result_reports_minus_46(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    agent = AgentProcess(tentacle).start()
    async with client_for(agent) as client:
        scripts = Scripts(client)
        await scripts.start("echo up >&2; sleep 1000", ticket="lost")
        await scripts.wait_for_output("lost")
    agent.signal(signal.SIGKILL)
    assert agent.process is not None
    agent.process.wait()
    wrapper = runner.recorded_wrapper(agent.home / "Work" / "lost")
    assert wrapper is not None
    # The whole script, wrapper included, dies while the agent is down. The
    # wrapper goes first: killed by SIGKILL it can write nothing more. Killing
    # the script first would let the wrapper wake from its wait and record
    # 137 in rc before its own SIGKILL arrives, and the agent would rightly
    # report 137 instead of -46 (a race the test sometimes lost).
    os.kill(wrapper.pid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: wait until it took effect
    await eventually(lambda: runner.is_zombie(wrapper.pid), "the wrapper to die of SIGKILL")
    runner.signal_script(wrapper, signal.SIGKILL)
    agent.start()
    try:
        async with client_for(agent) as client:
            status = await Scripts(client).wait_complete("lost")
        assert status["ExitCode"] == -46
    finally:
        agent.stop()


async def test_the_cleaner_removes_old_finished_workspaces_but_never_running_ones(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    agent = AgentProcess(tentacle, env={"TENTACLE_WORKSPACE_CLEANER_DELETE_OLDER_THAN": "0"})
    agent.start()
    release = tmp_path / "release"
    async with client_for(agent) as client:
        scripts = Scripts(client)
        await scripts.start("echo done", ticket="finished", DurationToWaitForScriptToFinish=30)
        wait = f'for i in $(seq 1200); do [ -e "{release}" ] && exit 0; sleep 0.05; done'
        await scripts.start(wait, ticket="running")
    agent.stop()
    agent.start()  # the sweep at start-up applies the retention
    try:
        assert "removed 1 old workspace(s): finished" in agent.wait_for_log("old workspace")
        assert not (agent.home / "Work" / "finished").exists()
        assert (agent.home / "Work" / "running").is_dir()
        release.touch()
        async with client_for(agent) as client:
            assert (await Scripts(client).wait_complete("running"))["ExitCode"] == 0
    finally:
        agent.stop()


async def test_the_client_rides_through_an_agent_restart_without_losing_a_line(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    import socket

    from agent.client.scripts import LogChunk, ScriptRequest, execute_script

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = AgentProcess(tentacle, env={"TENTACLE_SERVICE_PORT": str(port)}).start()
    release = tmp_path / "release"
    body = (
        f'for i in $(seq 5); do echo "before $i"; done\n'
        f'while [ ! -e "{release}" ]; do sleep 0.05; done\n'
        f'for i in $(seq 5); do echo "after $i"; done\nexit 7\n'
    )
    chunks: list[LogChunk] = []
    halfway = asyncio.Event()

    def collect(chunk: LogChunk) -> None:
        chunks.append(chunk)
        if sum(len(c.lines) for c in chunks) >= 5:
            halfway.set()

    try:
        async with client_for(agent) as client:
            run = asyncio.create_task(execute_script(client, ScriptRequest(body), collect))
            await halfway.wait()
            agent.signal(signal.SIGKILL)
            assert agent.process is not None
            agent.process.wait()
            agent.start()
            release.touch()
            outcome = await run
    finally:
        agent.stop()
    assert outcome.exit_code == 7
    lines = [(chunk.first + n, text) for chunk in chunks for n, text in enumerate(chunk.lines)]
    assert [text for _, text in lines] == [f"before {i}" for i in range(1, 6)] + [
        f"after {i}" for i in range(1, 6)
    ]
    assert [sequence for sequence, _ in lines] == list(range(1, 11))


async def test_a_script_that_cannot_be_launched_is_minus_42(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    agent = AgentProcess(tentacle, env={"PATH": str(tmp_path)}).start()  # no bash to be found
    try:
        async with client_for(agent) as client:
            started = await Scripts(client).start("echo never", DurationToWaitForScriptToFinish=30)
            status = await Scripts(client).status(started["Ticket"])
    finally:
        agent.stop()
    assert (started["State"], started["ExitCode"]) == ("Complete", -42)
    notes = [e["Text"] for e in status["Logs"] if e["Source"] == "debug"]
    assert any("Could not launch the script" in note and "bash" in note for note in notes)
