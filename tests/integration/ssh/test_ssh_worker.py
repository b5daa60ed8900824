"""SshWorker against a real OpenSSH server: the Worker contract over SSH."""

from __future__ import annotations

import asyncio
import platform
import signal

import psutil

from agent.client import ScriptRequest, SshWorker
from tests.helpers.eventually import eventually
from tests.helpers.sshd import SshServer
from tests.integration.ssh.conftest import Output


async def test_a_script_streams_its_output_and_keeps_its_exit_code(worker: SshWorker) -> None:
    output = Output()
    body = 'echo one; echo two >&2; printf "no newline"; echo "$1-$SECRET"; exit 3'
    request = ScriptRequest(body=body, arguments=["arg"], environment={"SECRET": "s3cr3t"})
    outcome = await worker.execute(request, output)
    assert outcome.exit_code == 3
    assert not outcome.cancelled
    assert output.lines() == ["one", "no newlinearg-s3cr3t"]
    assert output.lines("stderr") == ["two"]
    sequences = [chunk.first for chunk in output.chunks]
    assert sequences == sorted(sequences)
    again = await worker.execute(request, Output())
    assert again.already_finished
    assert again.exit_code == 3


def _processes_of(user: str, marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["username", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["username"] == user and marker in cmdline:
            found.append(process)
    return found


async def test_cancel_kills_the_remote_process_group_with_its_grace(
    sshd: SshServer, worker: SshWorker
) -> None:
    # a child that ignores SIGTERM: only the SIGKILL after the grace ends it
    body = "sleep 3001 &\n(trap '' TERM; sleep 3002) &\necho started\nwait\n"
    output = Output()
    cancel = asyncio.Event()
    run = asyncio.ensure_future(worker.execute(ScriptRequest(body=body, grace=1), output, cancel))
    await output.wait_for("started")
    assert len(_processes_of(sshd.user, "sleep 300")) == 2
    cancel.set()
    outcome = await run
    assert outcome.cancelled
    assert outcome.exit_code == 128 + signal.SIGTERM
    await eventually(lambda: not _processes_of(sshd.user, "sleep 300"), "the group is gone")


async def test_cancel_from_anywhere_and_the_capabilities(
    sshd: SshServer, worker: SshWorker
) -> None:
    capabilities = await worker.capabilities()
    assert capabilities["CommunicationStyle"] == "Ssh"
    assert capabilities["OS"] == platform.system()
    assert capabilities["Architecture"] == platform.machine()
    assert capabilities["AgentVersion"] is None
    assert {"bash", "sh", "python"} <= set(capabilities["Shells"])
    assert capabilities["Python"].startswith("Python 3")
    assert capabilities["FreeDiskBytes"] > 0
    assert "scripts/2" in capabilities["SupportedCapabilities"]

    output = Output()
    request = ScriptRequest(body="echo started; exec sleep 3003")
    run = asyncio.ensure_future(worker.execute(request, output))
    await output.wait_for("started")
    await worker.cancel(request.ticket)
    outcome = await run
    assert outcome.exit_code == 128 + signal.SIGTERM
    assert not _processes_of(sshd.user, "sleep 3003")
