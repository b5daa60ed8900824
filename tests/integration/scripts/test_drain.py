"""`tentacle drain`: a running agent refuses new scripts, serves everything else, and
goes on draining across a restart until `tentacle drain --resume` (real agent, real
TLS, listening and polling)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import RemoteError
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import Result
from tests.integration.scripts.conftest import Scripts

# Prints a line, waits for its release file, prints another, exits 7.
WAITING = """
echo "first line"
for i in $(seq 2400); do [ -e "$1" ] && break; sleep 0.05; done
echo "last line"
exit 7
"""


async def drain(agent: AgentProcess, *args: str) -> Result:
    """`tentacle drain` off the event loop (a polling agent's listener runs on it)."""
    return await asyncio.to_thread(agent.cli.run, "drain", "--instance", "agent", *args)


async def refused(scripts: Scripts, ticket: str) -> RemoteError:
    with pytest.raises(RemoteError) as caught:
        await scripts.start("echo never", ticket=ticket, Isolation="none")
    return caught.value


async def test_a_drained_agent_refuses_new_scripts_and_serves_the_running_one(
    agent: AgentProcess, scripts: Scripts, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    await scripts.start(WAITING, ticket="running", Isolation="none", Arguments=[str(release)])
    await scripts.wait_for_output("running")

    result = await drain(agent)
    assert result.code == 0, result
    assert "agent is draining since" in result.out
    assert "1 script(s) still running" in result.out

    error = await refused(scripts, "new-one")
    assert error.kind == "draining"
    assert "the agent is draining since 20" in error.remote_message
    assert "'new-one' was not started" in error.remote_message
    capabilities = await scripts.client.capabilities()
    assert capabilities["Draining"] is True
    assert capabilities["DrainingSince"] in error.remote_message
    # everything but a new start carries on: a repeated start, status, uploads
    assert (await scripts.start(WAITING, ticket="running"))["State"] == "Running"
    local = tmp_path / "upload.txt"
    local.write_text("payload")
    uploaded = await scripts.client.upload(local, "uploaded.txt")
    assert uploaded["Length"] == len("payload")
    for own in ("drain.json", "drain.ack.json"):  # the instance's own: a caller cannot undo it
        with pytest.raises(RemoteError) as caught:
            await scripts.client.upload(local, own)
        assert caught.value.kind == "refused"
    release.touch()
    status = await scripts.wait_complete("running")
    assert status["ExitCode"] == 7
    stdout = "\n".join(e["Text"] for e in status["Logs"] if e["Source"] == "stdout")
    assert stdout == "first line\nlast line"
    await scripts.client.call("scripts", "complete", {"ScriptTicket": "running"})

    result = await drain(agent, "--resume")
    assert result.code == 0, result
    assert "agent accepts new scripts" in result.out
    assert (await scripts.client.capabilities())["Draining"] is False
    code, _ = await scripts.run("echo back", isolation="none")
    assert code == 0


async def test_draining_twice_keeps_the_first_time(agent: AgentProcess, scripts: Scripts) -> None:
    first = await drain(agent)
    since = (await scripts.client.capabilities())["DrainingSince"]
    second = await drain(agent)
    assert first.code == second.code == 0, (first, second)
    assert f"since {since}" in first.out
    assert f"since {since}" in second.out
    assert (await scripts.client.capabilities())["DrainingSince"] == since
    assert (await refused(scripts, "refused-twice")).kind == "draining"


async def test_a_cancel_of_a_running_script_works_while_draining(
    agent: AgentProcess, scripts: Scripts, tmp_path: Path
) -> None:
    await scripts.start(WAITING, ticket="to-cancel", Isolation="none",
                        Arguments=[str(tmp_path / "never")])  # fmt: skip
    await scripts.wait_for_output("to-cancel")
    assert (await drain(agent)).code == 0
    await scripts.cancel("to-cancel")
    status = await scripts.wait_complete("to-cancel")
    assert status["ExitCode"] != 7  # stopped, not run to its end


def test_drain_with_no_running_agent_is_a_clear_error(listening_agent: AgentProcess) -> None:
    listening_agent.stop()
    result = listening_agent.cli.fails("drain", "--instance", "agent")
    assert "no agent is running for the instance agent" in result.err
    assert "nothing to drain" in result.err
    assert not (listening_agent.home / "drain.json").exists()
    resumed = listening_agent.cli.ok("drain", "--instance", "agent", "--resume")
    assert "No agent is running for agent" in resumed.out


def test_drain_of_an_unknown_instance_names_it(listening_agent: AgentProcess) -> None:
    result = listening_agent.cli.fails("drain", "--instance", "nosuch")
    assert "nosuch" in result.err


async def test_an_agent_killed_while_drained_starts_drained(
    listening_agent: AgentProcess,
) -> None:
    agent = listening_agent
    assert (await drain(agent)).code == 0
    async with agent.client() as client:
        since = (await client.capabilities())["DrainingSince"]
    agent.signal(signal.SIGKILL)
    agent.wait_exit()
    agent.start()
    assert "draining since" in agent.wait_for_log("draining since")
    async with agent.client() as client:
        scripts = Scripts(client)
        capabilities = await client.capabilities()
        assert capabilities["Draining"] is True
        assert capabilities["DrainingSince"] == since
        assert (await refused(scripts, "after-restart")).kind == "draining"
    assert (await drain(agent, "--resume")).code == 0
    async with agent.client() as client:
        code, _ = await Scripts(client).run("echo back", isolation="none")
        assert code == 0


async def test_show_configuration_says_whether_the_instance_drains(
    listening_agent: AgentProcess,
) -> None:
    agent = listening_agent
    shown = agent.cli.ok("show-configuration", "--instance", "agent", "--format", "json").json()
    assert shown["Draining"] is False
    assert shown["DrainingSince"] is None
    assert (await drain(agent)).code == 0
    shown = agent.cli.ok("show-configuration", "--instance", "agent", "--format", "json").json()
    assert shown["Draining"] is True
    assert shown["DrainingSince"].startswith("20")


def test_a_malformed_drain_request_stops_the_start_with_a_configuration_error(
    listening_agent: AgentProcess,
) -> None:
    agent = listening_agent
    agent.stop()
    (agent.home / "drain.json").write_text(json.dumps({"Draining": "yes"}))
    result = agent.cli.run("agent", "--instance", "agent")
    assert result.code == 3, result
    assert "drain.json is not a drain request" in result.err
    assert "tentacle drain --resume" in result.err


async def test_a_malformed_request_sent_to_a_running_agent_changes_nothing(
    listening_agent: AgentProcess,
) -> None:
    agent = listening_agent
    assert (await drain(agent)).code == 0
    (agent.home / "drain.json").write_text("{not json")
    agent.signal(signal.SIGUSR1)
    agent.wait_for_log("drain request ignored")
    async with agent.client() as client:
        assert (await client.capabilities())["Draining"] is True


async def test_the_first_sigterm_refuses_new_scripts_while_calls_in_flight_finish(
    listening_agent: AgentProcess, tmp_path: Path
) -> None:
    agent = listening_agent
    release = tmp_path / "release"
    async with agent.client() as client:
        scripts = Scripts(client)
        # a call in flight that keeps the stop's grace going: a start waiting for its end
        waiting = asyncio.create_task(
            scripts.start(WAITING, ticket="in-flight", Isolation="none",
                          Arguments=[str(release)], DurationToWaitForScriptToFinish=60)
        )  # fmt: skip
        await scripts.wait_for_output("in-flight")
        agent.signal(signal.SIGTERM)
        agent.wait_for_log("stopping: no new connections")
        error = await refused(scripts, "after-sigterm")
        assert error.kind == "draining"
        assert (await client.capabilities())["Draining"] is True
        release.touch()
        status = await waiting
        assert (status["State"], status["ExitCode"]) == ("Complete", 7)
    assert agent.wait_exit() == 0


HOLDER = """
import fcntl, os, signal, sys
signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # an agent that never answers
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, f"{os.getpid()}\\n".encode())
print("holding", flush=True)
sys.stdin.read()
"""


def test_an_agent_that_does_not_answer_is_an_error_and_the_request_is_kept(
    listening_agent: AgentProcess,
) -> None:
    agent = listening_agent
    agent.stop()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(agent.home / "tentacle.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        result = agent.cli.fails("drain", "--instance", "agent", "--timeout", "0.2")
        assert f"(pid {holder.pid}) did not acknowledge within 0.2 s" in result.err
        assert "drain.json and takes effect" in result.err
    finally:
        holder.communicate("")
    agent.start()  # the kept request applies at the next start
    agent.wait_for_log("draining since")
