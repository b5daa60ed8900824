"""SshWorker against a real OpenSSH server: the Worker contract over SSH."""

from __future__ import annotations

import asyncio
import hashlib
import platform
import secrets
import shutil
import signal
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent.client import RemoteError, ScriptRequest, SshConnections, SshWorker
from agent.executor_bundle import executor_bundle
from agent.hub.secrets import DeployVariable, encrypted_variables_file, one_time_password
from tests.helpers.eventually import eventually
from tests.helpers.sshd import SshServer
from tests.integration.ssh.conftest import Output, key_login, target_of, waits


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


async def test_files_move_whole_inside_the_root_only(
    sshd: SshServer, worker: SshWorker, tmp_path: Path
) -> None:
    local = tmp_path / "data.bin"
    local.write_bytes(b"x" * 300_000)
    reply = await worker.upload(local, "Files/in/data.bin")
    root = sshd.home / ".tentacle"
    assert reply["FullPath"] == str(root / "Files/in/data.bin")
    assert reply["Length"] == 300_000
    assert reply["Sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
    assert (root / "Files/in/data.bin").read_bytes() == local.read_bytes()
    back = tmp_path / "back.bin"
    assert (await worker.download("Files/in/data.bin", back))["Sha256"] == reply["Sha256"]
    assert back.read_bytes() == local.read_bytes()

    # a transfer that fails midway leaves the old file whole, and no partial file
    bigger = tmp_path / "bigger.bin"
    bigger.write_bytes(b"y" * 3_000_000)

    def fail(done: int) -> None:
        raise RuntimeError(f"stopped after {done} bytes")

    with pytest.raises(RuntimeError, match="stopped after"):
        await worker.upload(bigger, "Files/in/data.bin", fail)
    with pytest.raises(FileNotFoundError):
        await worker.upload(tmp_path / "gone.bin", "Files/in/data.bin")
    assert (root / "Files/in/data.bin").read_bytes() == local.read_bytes()
    assert sorted(p.name for p in (root / "Files/in").iterdir()) == ["data.bin"]
    with pytest.raises(RemoteError, match="not_found"):
        await worker.download("Files/in/absent.bin", tmp_path / "absent.bin")
    assert not (tmp_path / "absent.bin").exists()

    for escaping in ("../outside.bin", "/etc/passwd", "Files/../../x", "."):
        with pytest.raises(RemoteError, match="outside the SSH worker's folder"):
            await worker.upload(local, escaping)
        with pytest.raises(RemoteError, match="outside the SSH worker's folder"):
            await worker.download(escaping, tmp_path / "escaped")
    (root / "Files" / "link").unlink(missing_ok=True)  # the other way of running steps
    (root / "Files" / "link").symlink_to("/etc")
    with pytest.raises(RemoteError, match="leads to /etc"):
        await worker.download("Files/link/hostname", tmp_path / "escaped")
    assert not (tmp_path / "escaped").exists()
    assert not (sshd.home / "outside.bin").exists()


async def test_full_isolation_runs_steps_one_at_a_time(sshd: SshServer, worker: SshWorker) -> None:
    gate = sshd.home / f"gate-{id(worker)}"
    ran = sshd.home / f"ran-{id(worker)}"
    first_output = Output()
    first = asyncio.ensure_future(
        worker.execute(
            ScriptRequest(body=f"echo holding; while [ ! -e {gate} ]; do sleep 0.05; done"),
            first_output,
        )
    )
    await first_output.wait_for("holding")
    second_request = ScriptRequest(body=f"touch {ran}")
    second = asyncio.ensure_future(worker.execute(second_request, Output()))
    await eventually(lambda: waits(sshd, second_request.ticket), "the second step waits")
    # a third, cancelled while it waits for the mutex, never runs
    third_output = Output()
    cancel = asyncio.Event()
    third_request = ScriptRequest(body=f"touch {ran}-third")
    third = asyncio.ensure_future(worker.execute(third_request, third_output, cancel))
    await eventually(lambda: waits(sshd, third_request.ticket), "the third waits")
    cancel.set()
    cancelled = await third
    assert cancelled.cancelled
    assert cancelled.exit_code == 143
    assert third_output.lines("stderr") == [
        "Cancelled while waiting for the isolation mutex RunningScript"
    ]
    assert not ran.exists()
    gate.touch()
    assert (await first).exit_code == 0
    assert (await second).exit_code == 0
    assert ran.exists()
    assert not Path(f"{ran}-third").exists()


async def test_a_target_without_python3_runs_shell_scripts_and_says_why_calamari_cannot(
    sshd: SshServer, connections: SshConnections
) -> None:
    worker = connections.worker(target_of(sshd, without_python=True), key_login(sshd))
    assert (await worker.capabilities())["Python"] is None
    output = Output()
    body = 'echo shell works; "$TentacleExecutablePath" calamari deploy-package --help'
    outcome = await worker.execute(ScriptRequest(body=body), output)
    assert output.lines() == ["shell works"]
    assert output.lines("stderr") == [
        "python3 is not installed on this SSH worker: tentacle calamari needs it"
    ]
    assert outcome.exit_code == 127


async def test_a_target_without_bash_runs_sh_scripts_under_its_sh(
    sshd: SshServer, connections: SshConnections
) -> None:
    worker = connections.worker(target_of(sshd, without_bash=True), key_login(sshd))
    assert "bash" not in (await worker.capabilities())["Shells"]
    output = Output()
    body = 'echo "$1 $SECRET in $(basename "$PWD")"; echo oops >&2; exit 5'
    request = ScriptRequest(body=body, syntax="sh", arguments=["hi"], environment={"SECRET": "s"})
    outcome = await worker.execute(request, output)
    assert (outcome.exit_code, output.lines(), output.lines("stderr")) == (
        5,
        [f"hi s in {request.ticket}"],
        ["oops"],
    )
    again = await worker.execute(request, Output())
    assert again.already_finished
    assert again.exit_code == 5
    cancel = asyncio.Event()
    output = Output()
    running = asyncio.ensure_future(
        worker.execute(ScriptRequest(body="echo started; sleep 3005", syntax="sh"), output, cancel)
    )
    await output.wait_for("started")
    cancel.set()
    assert (await running).exit_code == 128 + signal.SIGTERM
    await eventually(lambda: not _processes_of(sshd.user, "sleep 3005"), "the group is gone")


async def test_the_executor_deploys_a_package_with_secrets_kept_off_the_targets_disk(
    sshd: SshServer, worker: SshWorker, tmp_path: Path
) -> None:
    secret = f"hunter-{secrets.token_hex(8)}"
    # what the other way of running steps deployed (the same server) goes first
    shutil.rmtree(sshd.home / ".tentacle" / "Files" / "Applications", ignore_errors=True)
    package = tmp_path / "Greeter.1.0.0.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("app.config", "greeting=#{Greeting}\n")
        archive.writestr(
            "Deploy.sh", 'echo "token is $(get_octopusvariable Token)"\necho deployed\n'
        )
    await worker.upload(package, "Files/packages/Greeter.1.0.0.zip")
    password = one_time_password()
    variables = [
        DeployVariable("Greeting", "hello from ssh"),
        DeployVariable("Token", secret, sensitive=True),
        DeployVariable("Octopus.Action.SubstituteInFiles.TargetFiles", "app.config"),
        DeployVariable("Octopus.Action.EnabledFeatures", "Octopus.Features.SubstituteInFiles"),
    ]
    variables_file = tmp_path / "variables.enc"
    variables_file.write_bytes(encrypted_variables_file(variables, password))
    body = (
        '"$TentacleExecutablePath" calamari deploy-package '
        '--package "$TentacleHome/Files/packages/Greeter.1.0.0.zip" --variables variables.enc'
    )
    output = Output()
    request = ScriptRequest(
        body=body,
        files=[("variables.enc", variables_file)],
        environment={"TENTACLE_VARIABLES_PASSWORD": password},
    )
    outcome = await worker.execute(request, output)
    assert outcome.exit_code == 0, output.lines("stderr")
    printed = output.lines()
    assert "token is ********" in printed
    assert "deployed" in printed
    assert all(secret not in line for line in printed + output.lines("stderr"))
    configs = list((sshd.home / ".tentacle" / "Files" / "Applications").rglob("app.config"))
    assert [c.read_text() for c in configs] == ["greeting=hello from ssh\n"]
    # neither the secret nor the password is anywhere in the user's home
    for path in sshd.home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            assert secret.encode() not in content, path
            assert password.encode() not in content, path
    bundles = list((sshd.home / ".tentacle" / "calamari").glob("*.pyz"))
    assert [b.name for b in bundles] == [f"{executor_bundle().sha256}.pyz"]


async def test_a_root_removed_under_an_open_connection_is_made_again(
    sshd: SshServer, worker: SshWorker
) -> None:
    assert (await worker.execute(ScriptRequest(body="true"), Output())).exit_code == 0
    shutil.rmtree(sshd.home / ".tentacle" / "Work")
    output = Output()
    assert (await worker.execute(ScriptRequest(body="echo back"), output)).exit_code == 0
    assert output.lines() == ["back"]


@pytest.fixture(scope="module")
def bash_sshd() -> Iterator[SshServer]:
    """A server whose user logs in with bash (deployment accounts often do): the
    steps' wrapper runs in the login shell itself."""
    server = SshServer(shell="/bin/bash").start()
    yield server
    server.close()


async def test_under_a_bash_login_shell_steps_stream_record_and_cancel(
    bash_sshd: SshServer, connections: SshConnections
) -> None:
    worker = connections.worker(target_of(bash_sshd), key_login(bash_sshd))
    output = Output()
    body = 'echo "caf\u00e9 $1 $SECRET"; echo oops >&2; exit 4'
    environment = {"SECRET": "\u00e9t\u00e9 it's"}
    request = ScriptRequest(body=body, arguments=["x y"], environment=environment)
    outcome = await worker.execute(request, output)
    assert (outcome.exit_code, output.lines(), output.lines("stderr")) == (
        4,
        ["caf\u00e9 x y \u00e9t\u00e9 it's"],
        ["oops"],
    )
    again = await worker.execute(request, Output())
    assert (again.already_finished, again.exit_code) == (True, 4)
    cancel = asyncio.Event()
    output = Output()
    running = asyncio.ensure_future(
        worker.execute(ScriptRequest(body="echo started; sleep 3006"), output, cancel)
    )
    await output.wait_for("started")
    cancel.set()
    assert (await running).exit_code == 128 + signal.SIGTERM
    await eventually(lambda: not _processes_of(bash_sshd.user, "sleep 3006"), "the group is gone")
