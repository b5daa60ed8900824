"""scripts.start's Environment (scripts/2): in the script's process, never on the agent's disk."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import signal
import stat
from pathlib import Path

import pytest

from agent.certs import generate_identity
from agent.client import AgentClient, Endpoint, LogChunk, ScriptRequest
from agent.client.scripts import execute_script
from agent.errors import CallError, RemoteError, UnsupportedFeature
from agent.protocol.calls import IncomingCall, Reply
from agent.protocol.services import ExitCode
from agent.transport.listener import Listener
from agent.transport.settings import ChannelSettings
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.integration.scripts.conftest import Scripts, texts
from tests.integration.scripts.test_isolation import holding, wait_for_note

# Prints the digests of its variables (never the values: its output is on disk), says
# it is ready, then blocks reading the FIFO $1 until the test writes to it.
BODY = """
printf '%s' "$DEPLOY_SECRET" | sha256sum | cut -c1-64
printf '%s' "$WITH_NEWLINE" | sha256sum | cut -c1-64
echo "path=$PATH"
echo "ticket=${TentacleScriptTicket:-none}"
echo ready
IFS= read -r line < "$1"
echo "released: $line"
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def files_holding(root: Path, secret: bytes) -> list[Path]:
    """Every regular file under ``root`` whose bytes contain ``secret``."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            try:
                if not stat.S_ISREG(path.lstat().st_mode):
                    continue
                if secret in path.read_bytes():
                    found.append(path)
            except FileNotFoundError:
                continue  # removed while walking (a temporary file renamed)
    return found


async def test_a_script_sees_its_environment_and_no_file_of_the_agent_holds_it(
    agent: AgentProcess, tmp_path: Path
) -> None:
    secret = f"pw-{secrets.token_hex(16)}"
    other = f"two\nlines {secrets.token_hex(8)}"
    fifo = tmp_path / "release.fifo"
    os.mkfifo(fifo)
    ready = asyncio.Event()
    chunks: list[LogChunk] = []

    def output(chunk: LogChunk) -> None:
        chunks.append(chunk)
        if "ready" in chunk.lines:
            ready.set()

    request = ScriptRequest(
        BODY,
        arguments=[str(fifo)],
        environment={"DEPLOY_SECRET": secret, "WITH_NEWLINE": other, "PATH": "/usr/bin:/bin"},
    )
    async with agent.client() as client:
        running = asyncio.ensure_future(execute_script(client, request, output))
        waited = asyncio.ensure_future(ready.wait())
        await asyncio.wait({running, waited}, return_when=asyncio.FIRST_COMPLETED)
        assert ready.is_set(), f"the script ended before it was ready: {running.result()}"
        # The script runs, blocked on the FIFO: its workspace, state and logs exist now
        assert (agent.home / "Work" / request.ticket).is_dir()
        assert files_holding(agent.home, secret.encode()) == []
        assert files_holding(agent.home, other.encode()) == []
        await asyncio.to_thread(fifo.write_text, "go\n")
        outcome = await running
    stdout = [text for chunk in chunks if chunk.source == "stdout" for text in chunk.lines]
    assert outcome.exit_code == 0, stdout
    assert stdout[:4] == [sha(secret), sha(other), "path=/usr/bin:/bin", f"ticket={request.ticket}"]
    assert stdout[-1] == "released: go"
    assert files_holding(agent.home, secret.encode()) == []
    assert secret not in agent.log()
    assert secret not in agent.stdout()


async def test_a_bad_environment_is_refused_naming_it_and_the_agent_stays_up(
    scripts: Scripts,
) -> None:
    secret = f"pw-{secrets.token_hex(16)}"
    cases = {
        "'1BAD' is not a variable name": {"1BAD": secret},
        "the value of GOOD contains a NUL character": {"GOOD": f"{secret}\0"},
        "TentacleWorkspace is set by the agent": {"TentacleWorkspace": secret},
        "(MAX_ENVIRONMENT_VARIABLES)": {f"V{n}": secret for n in range(257)},
        "(MAX_ENVIRONMENT_BYTES)": {"BIG": secret * 3000},
    }
    for expected, environment in cases.items():
        with pytest.raises(RemoteError) as caught:
            await scripts.start("echo never", ticket="refused", Environment=environment)
        assert caught.value.kind == "bad_params"
        assert expected in str(caught.value)
        assert "Environment" in str(caught.value)
        assert secret not in str(caught.value)
    # nothing was started under that ticket, and the agent answers as before
    assert (await scripts.status("refused"))["ExitCode"] == ExitCode.UNKNOWN_SCRIPT
    code, lines = await scripts.run('echo "$FINE"', environment={"FINE": "yes"})
    assert (code, texts(lines)) == (0, ["yes"])


async def test_a_script_pending_when_the_agent_restarts_is_not_run_without_its_environment(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    agent = AgentProcess(tentacle).start()
    release, ran = tmp_path / "release", tmp_path / "ran"
    try:
        async with agent.client() as client:
            scripts = Scripts(client)
            holder = await holding(scripts, release)  # holds the isolation mutex
            waiting = await scripts.start(
                f'touch "{ran}"; echo "$SECRET"', Environment={"SECRET": "in memory only"}
            )
            await wait_for_note(scripts, waiting["Ticket"], "Waiting for the isolation mutex")
        agent.signal(signal.SIGKILL)
        agent.wait_exit()
        agent.start()
        async with agent.client() as client:
            scripts = Scripts(client)
            status = await scripts.wait_complete(waiting["Ticket"])
            assert status["ExitCode"] == ExitCode.LAUNCH_FAILED
            note = await wait_for_note(scripts, waiting["Ticket"], "Environment")
            assert "restarted before this script was launched" in note
            release.touch()
            assert (await scripts.wait_complete(holder))["ExitCode"] == 0
        assert not ran.exists()
    finally:
        agent.stop()


async def test_an_agent_without_scripts_2_is_never_sent_an_environment() -> None:
    """An agent of an older version (its hello lists scripts/1 only) would ignore the
    field and run the script without it: the client refuses before any start is sent."""
    agent_identity, caller = generate_identity(), generate_identity()
    calls: list[str] = []

    async def handler(call: IncomingCall) -> Reply:
        calls.append(f"{call.service}.{call.method}")
        raise CallError("unknown_method", "an old agent in a test")

    old = ChannelSettings(agent_identity, "old-agent", "0.9",
                          ("capabilities/1", "files/1", "scripts/1"))  # fmt: skip
    listener = Listener(old, [caller.certificate_pem.decode()], handler)
    [(host, port), *_] = await listener.start("127.0.0.1", 0)
    try:
        endpoint = Endpoint(f"https://{host}:{port}/", agent_identity.thumbprint)
        settings = ChannelSettings(caller, "test-caller", "test")
        async with AgentClient(endpoint, settings) as client:
            request = ScriptRequest("echo $PW", environment={"PW": "secret"})
            with pytest.raises(UnsupportedFeature, match=r"serves scripts/1; scripts/2 is needed"):
                await execute_script(client, request, lambda chunk: None)
        assert "scripts.start" not in calls
    finally:
        await listener.stop(1.0)
