"""hub ssh-fingerprint and hub add-ssh-worker: the real command against a real hub and
a real sshd; secrets only from a key file and named environment variables."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.cli import Result, TentacleCli
from tests.helpers.hub import RunningHub, hub_args, running_hub
from tests.helpers.sshd import SshServer
from tests.integration.hub.ssh_helpers import checked


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path) as running:  # the CLI's, not the store's: SQLite
        yield running


async def hub_ok(cli: TentacleCli, hub: RunningHub, *args: str, **env: str) -> Result:
    return await asyncio.to_thread(cli.ok, "hub", args[0], *hub_args(hub), *args[1:], env=env)


async def hub_fails(cli: TentacleCli, hub: RunningHub, *args: str, **env: str) -> str:
    """The failure's one ``error:`` line."""
    result = await asyncio.to_thread(cli.fails, "hub", args[0], *hub_args(hub), *args[1:], env=env)
    [line] = result.err.strip().splitlines()
    assert line.startswith("error: "), result.err
    return line


def fields(result: Result) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in result.out.strip().splitlines())
    return {name.strip(): value.strip() for name, value in pairs}


async def test_the_fingerprint_is_shown_and_workers_added_with_a_key_or_a_password(
    hub: RunningHub, sshd: SshServer, tmp_path: Path
) -> None:
    cli = TentacleCli(tmp_path)
    where = ["--host", "127.0.0.1", "--port", str(sshd.port)]
    shown = fields(await hub_ok(cli, hub, "ssh-fingerprint", *where))
    assert shown["Fingerprint"] == sshd.fingerprint
    assert shown["Endpoint"] == f"ssh://127.0.0.1:{sshd.port}/"
    found = (await hub_ok(cli, hub, "ssh-fingerprint", *where, "--format", "json")).json()
    assert found["Endpoint"]["Fingerprint"] == sshd.fingerprint

    assert sshd.encrypted_key is not None
    assert sshd.encrypted_key.passphrase is not None
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(sshd.encrypted_key.private)
    key_file.chmod(0o600)
    common = [*where, "--fingerprint", sshd.fingerprint, "--username", sshd.user,
              "--workerpool", "Default Worker Pool"]  # fmt: skip
    added = await hub_ok(
        cli, hub, "add-ssh-worker", "--name", "ssh-key", *common, "--key-file", str(key_file),
        "--passphrase-env", "SSH_PASSPHRASE", SSH_PASSPHRASE=sshd.encrypted_key.passphrase,
    )  # fmt: skip
    told = fields(added)
    assert told["Fingerprint"] == sshd.fingerprint
    assert told["Account"].startswith("ssh-key (Accounts-")
    assert "SshKeyPair" in told["Account"]
    by_password = (
        await hub_ok(
            cli,
            hub,
            "add-ssh-worker",
            "--name",
            "ssh-password",
            *common,
            "--password-env",
            "SSH_PASSWORD",
            "--format",
            "json",
            SSH_PASSWORD=sshd.password,
        )
    ).json()
    assert by_password["Account"]["AccountType"] == "UsernamePassword"
    assert by_password["Account"]["Password"] == {"HasValue": True, "NewValue": None}
    for worker in await hub.api.get("/api/workers/all"):
        record = await checked(hub.api, worker)
        assert record["HealthStatus"] == "Healthy", record["StatusSummary"]
    assert sshd.password not in added.out + added.err
    table = await hub_ok(cli, hub, "workers", "--style", "Ssh")
    assert f"ssh://127.0.0.1:{sshd.port}/" in table.out
    assert "ssh-key" in table.out
    assert "ssh-password" in table.out


async def test_bad_input_is_one_clear_line_and_leaves_nothing_behind(
    hub: RunningHub, sshd: SshServer, tmp_path: Path
) -> None:
    cli = TentacleCli(tmp_path)
    common = ["--name", "s", "--host", "127.0.0.1", "--port", str(sshd.port), "--username", "u",
              "--workerpool", "Default Worker Pool"]  # fmt: skip
    good = ["--fingerprint", sshd.fingerprint]
    line = await hub_fails(cli, hub, "add-ssh-worker", *common, *good)
    assert "give one of --key-file FILE (a key pair) or --password-env VAR" in line
    line = await hub_fails(cli, hub, "add-ssh-worker", *common, *good, "--password-env", "NOPE")
    assert "--password-env NOPE: the environment variable NOPE is not set" in line
    public = tmp_path / "id.pub"
    public.write_text("ssh-ed25519 AAAA test\n")
    line = await hub_fails(cli, hub, "add-ssh-worker", *common, *good, "--key-file", str(public))
    assert "is not a private key in OpenSSH or PEM form" in line
    line = await hub_fails(
        cli, hub, "add-ssh-worker", *common, *good, "--password-env", "P", "--workerpool", "Nope",
        P="x",
    )  # fmt: skip
    assert "the hub has no worker pool 'Nope'" in line
    # the hub refuses the worker: the account made for it is deleted again
    line = await hub_fails(
        cli, hub, "add-ssh-worker", *common, "--fingerprint", "SHA256:nope", "--password-env",
        "P", P="x",
    )  # fmt: skip
    assert "Endpoint.Fingerprint must be the SSH host key's SHA256 fingerprint" in line
    assert await hub.api.get("/api/accounts/all") == []
    assert await hub.api.get("/api/workers/all") == []
    line = await hub_fails(cli, hub, "ssh-fingerprint", "--host", "127.0.0.1", "--port", "1")
    assert "cannot read the SSH host key of 127.0.0.1:1" in line
