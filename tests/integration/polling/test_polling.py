"""Polling mode: the agent dials out to the server and answers its calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.client import PollingListener
from agent.client.scripts import LogChunk, ScriptRequest, execute_script
from agent.errors import ConnectionLost
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli


@pytest.fixture
async def polling(tentacle: TentacleCli) -> AsyncIterator[tuple[AgentProcess, PollingListener]]:
    """A polling-only agent connected to a polling listener run by the test."""
    agent = AgentProcess(tentacle)
    await agent.poll_a_listener()
    agent.start()
    assert agent.listener is not None
    yield agent, agent.listener
    agent.stop()
    await agent.listener.stop()


async def test_calls_reach_a_polling_agent(
    polling: tuple[AgentProcess, PollingListener], tmp_path: Path
) -> None:
    agent, _ = polling
    async with agent.client() as hub:
        assert "scripts/1" in (await hub.capabilities())["SupportedCapabilities"]
        local = tmp_path / "payload"
        local.write_bytes(b"polled" * 1000)
        uploaded = await hub.upload(local, "Files/payload")
        assert uploaded["Length"] == 6000
        chunks: list[LogChunk] = []
        outcome = await execute_script(hub, ScriptRequest("wc -c < ../../Files/payload; exit 5"),
                                       chunks.append)  # fmt: skip
    assert outcome.exit_code == 5
    assert [line for chunk in chunks for line in chunk.lines] == ["6000"]


async def test_a_call_waits_for_the_agent_and_then_times_out_clearly(
    polling: tuple[AgentProcess, PollingListener],
) -> None:
    agent, listener = polling
    with pytest.raises(ConnectionLost, match=r"did not connect within 0 s"):
        await listener.channel("poll://aaaaaaaaaaaaaaaaaaaa/", agent.thumbprint, timeout=0.1)
    with pytest.raises(ConnectionLost, match=r"did not connect"):  # right id, wrong certificate
        await listener.channel(agent.subscription, "AB" * 20, timeout=0.1)


def test_run_script_over_polling_from_the_command_line(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = AgentProcess(tentacle)
    agent.poll("127.0.0.1", port, agent.caller.thumbprint)
    certificate = tmp_path / "agent.pem"
    certificate.write_bytes(agent.identity.certificate_pem)
    script = tmp_path / "hello.sh"
    script.write_text('echo "polled $1"; echo oops >&2; exit 3\n')
    command = subprocess.Popen(
        [sys.executable, "-m", "agent", "client", "--instance", "hub", "run-script",
         "--endpoint", agent.subscription, "--listen", f"127.0.0.1:{port}",
         "--agent-certificate", str(certificate), str(script), "--", "world"],
        env=tentacle.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert command.stderr is not None
    assert command.stderr.readline().startswith(f"Waiting for {agent.subscription}")
    agent.start()
    try:
        out, err = command.communicate(timeout=60)
    finally:
        agent.stop()
    assert (command.returncode, out, err) == (3, "polled world\n", "oops\n")
