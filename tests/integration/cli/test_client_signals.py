"""Stopping `tentacle client …` by signal: at once, with nothing partial left behind.

The transfers are held mid-way by a forwarder that freezes the connection, so
the signal always lands during the transfer, whatever the machine's speed.
The client starts with SIGINT ignored, as a background job of a script does:
a ``kill -INT`` sent on purpose must still stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from agent.scripts.runner import is_alive, recorded_wrapper
from tests.helpers.agent import AgentProcess
from tests.helpers.eventually import eventually
from tests.helpers.forwarder import Forwarder

BOUND = 30.0  # seconds: a bound for a hung client, far above the expected instant


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def client(agent: AgentProcess, port: int, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "client", "--instance", "hub", args[0],
        "--endpoint", f"https://127.0.0.1:{port}/", "--thumbprint", agent.thumbprint, *args[1:],
        env=agent.cli.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_ignore_sigint,
    )  # fmt: skip


async def stopped(process: asyncio.subprocess.Process) -> tuple[int, str]:
    _, err = await asyncio.wait_for(process.communicate(), BOUND)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_sigint_stops_an_upload_at_once_and_the_agent_keeps_nothing(
    agent: AgentProcess, tmp_path: Path
) -> None:
    local = tmp_path / "big.bin"
    with local.open("wb") as file:
        file.truncate(64 * 1024 * 1024)  # far more than the agent's 4 MiB window
    files = agent.home / "Files"
    forwarder = Forwarder(agent.port, agent_dials=False)
    port = await forwarder.start()
    try:
        process = await client(agent, port, "upload", str(local), "Files/big.bin")
        await eventually(lambda: files.is_dir() and any(files.iterdir()), "the upload started")
        forwarder.arm("freeze")  # the agent's next window grant never arrives
        await asyncio.wait_for(forwarder.fired.wait(), BOUND)
        process.send_signal(signal.SIGINT)
        code, err = await stopped(process)
        assert (code, err.strip()) == (130, "Interrupted")
    finally:
        await forwarder.stop()  # the agent sees its connection drop
    await eventually(lambda: not any(files.iterdir()), f"no partial upload in {files}")


async def test_sigint_stops_a_download_at_once_and_leaves_no_partial_file(
    agent: AgentProcess, tmp_path: Path
) -> None:
    remote = agent.home / "Files" / "big.bin"
    remote.parent.mkdir(parents=True, exist_ok=True)
    with remote.open("wb") as file:
        file.truncate(64 * 1024 * 1024)
    into = tmp_path / "downloads"
    into.mkdir()
    forwarder = Forwarder(agent.port, agent_dials=False)
    port = await forwarder.start()
    try:
        process = await client(agent, port, "download", "Files/big.bin", str(into / "big.bin"))
        await eventually(lambda: any(into.iterdir()), "the download started")
        forwarder.arm("freeze")
        await asyncio.wait_for(forwarder.fired.wait(), BOUND)
        process.send_signal(signal.SIGINT)
        code, err = await stopped(process)
        assert (code, err.strip()) == (130, "Interrupted")
        assert os.listdir(into) == []
    finally:
        await forwarder.stop()


async def follow(agent: AgentProcess, script: Path, ticket: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "client", "--instance", "hub", "run-script",
        "--endpoint", agent.url, "--thumbprint", agent.thumbprint, "--ticket", ticket, str(script),
        env=agent.cli.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_sigterm_while_the_agent_is_unreachable_leaves_the_script_running(
    agent: AgentProcess, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    script = tmp_path / "long.sh"
    script.write_text(
        f'echo started; while [ ! -e "{go}" ]; do sleep 0.05; done; echo done; exit 7\n'
    )
    process = await follow(agent, script, "detached")
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), BOUND) == b"started\n"
    agent.process.kill()  # type: ignore[union-attr]  # unreachable: the client retries
    agent.process.wait()  # type: ignore[union-attr]
    process.send_signal(signal.SIGTERM)
    code, err = await stopped(process)
    assert code == 143
    assert "stopped following script detached; it is still running on the agent" in err
    assert "--ticket detached" in err
    agent.start()  # the restarted agent re-attaches to the script that went on running
    go.touch()
    again = await follow(agent, script, "detached")
    out, _ = await asyncio.wait_for(again.communicate(), BOUND)
    assert (again.returncode, out.decode().splitlines()[-1]) == (7, "done")


async def test_a_second_ctrl_c_stops_waiting_for_an_unreachable_agent(
    agent: AgentProcess, tmp_path: Path
) -> None:
    """The second Ctrl-C comes as soon as the first is acknowledged, which is when the
    client's wait for its next status call is ending: that cancellation must not be
    lost (tests/unit/client/test_cancellation.py puts it exactly there)."""
    script = tmp_path / "long.sh"
    script.write_text("echo started; sleep 1000\n")
    process = await follow(agent, script, "twice")
    try:
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), BOUND) == b"started\n"
        agent.process.kill()  # type: ignore[union-attr]
        agent.process.wait()  # type: ignore[union-attr]
        process.send_signal(signal.SIGINT)  # asks for a cancel the agent cannot receive
        assert process.stderr is not None
        said = await asyncio.wait_for(process.stderr.readline(), BOUND)
        assert said.startswith(b"Cancelling script twice on the agent; Ctrl-C again")
        process.send_signal(signal.SIGINT)  # only now: two signals sent at once may arrive as one
        code, err = await stopped(process)
        assert code == 130
        assert "script twice; it was asked to stop but may still be running" in err
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        _stop_orphaned_script(agent, "twice")


def _stop_orphaned_script(agent: AgentProcess, ticket: str) -> None:
    """The agent was killed, so nothing will stop its script: kill the script's session
    (the wrapper leads it), so that no ``sleep 1000`` outlives the test."""
    launched = recorded_wrapper(agent.home / "Work" / ticket)
    if launched is not None and is_alive(launched):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launched.pid, signal.SIGKILL)
