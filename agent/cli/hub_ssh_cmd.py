"""hub add-ssh-worker, hub ssh-fingerprint: SSH workers (machines without an agent,
reached over SSH by the hub), added over the hub's REST API.

``ssh-fingerprint`` asks the hub for the host key fingerprint of an SSH server (as
the hub sees it: the key it will pin), for the operator to compare with the one the
machine's administrator reads there (``ssh-keygen -lf``). ``add-ssh-worker`` creates
the account the worker logs in with (named as the worker) and the worker itself,
pinning the fingerprint it was given. Secrets are read only from a key file and from
environment variables the command line names, never from its arguments (which every
user of the machine sees in ``ps``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click

from agent.cli.hub_views import resolve
from agent.cli.output import emit_fields, emit_json, format_option
from agent.cli.registration import hub_options
from agent.client.hub_api import HubApi, HubApiError
from agent.errors import TentacleError

SSH_PORT = 22
MAX_KEY_BYTES = 64 * 1024  # what the hub keeps of a key (agent.hub.api.accounts)


class SshWorkerError(TentacleError):
    pass


def _secret_from_environment(variable: str | None, option: str) -> str | None:
    """The value of the environment variable the option names; SshWorkerError if it is
    not set (an empty value is not a secret either)."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise SshWorkerError(
            f"{option} {variable}: the environment variable {variable} is not set "
            "(export it with the secret before running this command)"
        )
    return value


def _private_key(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SshWorkerError(f"--key-file {path}: {error.strerror}") from None
    if len(data) > MAX_KEY_BYTES:
        raise SshWorkerError(f"--key-file {path}: {len(data)} bytes is not a private key")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if "PRIVATE KEY-----" not in text:
        raise SshWorkerError(
            f"--key-file {path} is not a private key in OpenSSH or PEM form "
            "(-----BEGIN ... PRIVATE KEY-----); give the private key, not the .pub"
        )
    return text


def account_body(
    name: str,
    username: str,
    key_file: Path | None,
    passphrase_env: str | None,
    password_env: str | None,
) -> dict[str, Any]:
    """The /api/accounts body: a key pair (the file's key, the passphrase from the
    environment) or a username and password (from the environment)."""
    if (key_file is None) == (password_env is None):
        raise SshWorkerError(
            "give one of --key-file FILE (a key pair) or --password-env VAR (a password)"
        )
    if key_file is None:
        password = _secret_from_environment(password_env, "--password-env")
        return {
            "Name": name,
            "AccountType": "UsernamePassword",
            "Username": username,
            "Password": {"HasValue": True, "NewValue": password},
        }
    passphrase = _secret_from_environment(passphrase_env, "--passphrase-env")
    return {
        "Name": name,
        "AccountType": "SshKeyPair",
        "Username": username,
        "PrivateKeyFile": {"HasValue": True, "NewValue": _private_key(key_file)},
        "PrivateKeyPassphrase": {"HasValue": passphrase is not None, "NewValue": passphrase},
    }


async def _add(
    hub: HubApi,
    account: dict[str, Any],
    worker: dict[str, Any],
    pools: tuple[str, ...],
    policy: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create the account, then the worker; the account is deleted again if the worker
    is refused (nothing half-added is left)."""
    known = await hub.get("/api/workerpools/all")
    worker["WorkerPoolIds"] = [resolve(known, pool, "worker pool")["Id"] for pool in pools]
    if policy is not None:
        policies = await hub.get("/api/machinepolicies/all")
        worker["MachinePolicyId"] = resolve(policies, policy, "machine policy")["Id"]
    made = await hub.request("POST", "/api/accounts", account)
    worker["Endpoint"]["AccountId"] = made["Id"]
    try:
        added = await hub.request("POST", "/api/workers", worker)
    except BaseException:
        await asyncio.shield(hub.request("DELETE", f"/api/accounts/{made['Id']}"))
        raise
    return dict(made), dict(added)


@click.command("add-ssh-worker")
@hub_options
@click.option("--name", required=True, metavar="NAME", help="the worker's (and its account's) name")
@click.option("--host", required=True, metavar="HOST", help="the SSH server's host name or address")
@click.option("--port", default=SSH_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--fingerprint",
    required=True,
    metavar="SHA256:...",
    help="the host key's fingerprint, checked on the machine (tentacle hub ssh-fingerprint)",
)
@click.option("--username", required=True, metavar="USER", help="the user to log in as")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="log in with this private key (OpenSSH or PEM)",
)
@click.option(
    "--passphrase-env",
    metavar="VAR",
    help="the environment variable holding the key's passphrase (if it is encrypted)",
)
@click.option(
    "--password-env",
    metavar="VAR",
    help="log in with the password in this environment variable",
)
@click.option(
    "--workerpool",
    "pools",
    multiple=True,
    required=True,
    metavar="POOL",
    help="a pool to add the worker to (name or id); repeat for several",
)
@click.option("--policy", metavar="POLICY", help="its machine policy (name or id; the default)")
@format_option
def add_ssh_worker_command(
    server: str,
    api_key: str,
    server_thumbprint: str | None,
    name: str,
    host: str,
    port: int,
    fingerprint: str,
    username: str,
    key_file: Path | None,
    passphrase_env: str | None,
    password_env: str | None,
    pools: tuple[str, ...],
    policy: str | None,
    output_format: str,
) -> None:
    """Add an SSH worker: a machine the hub reaches over SSH, without an agent.

    Creates the account NAME (the key file and its passphrase, or the password: read
    from the file and the environment variables named, never from the command line)
    and the worker, its host key pinned to --fingerprint. The hub checks its health
    at once.
    """
    account = account_body(name, username, key_file, passphrase_env, password_env)
    endpoint = {"CommunicationStyle": "Ssh", "Host": host, "Port": port, "Fingerprint": fingerprint}
    worker: dict[str, Any] = {"Name": name, "Endpoint": endpoint}

    async def add() -> tuple[dict[str, Any], dict[str, Any]]:
        async with HubApi(server, api_key, server_thumbprint) as hub:
            await hub.root()
            return await _add(hub, account, worker, pools, policy)

    made, added = asyncio.run(add())
    if output_format == "json":
        emit_json({"Account": made, "Worker": added})
        return
    emit_fields(
        [
            ("Worker", f"{added['Name']} ({added['Id']})"),
            ("Endpoint", added["Endpoint"]["Uri"]),
            ("Fingerprint", added["Endpoint"]["Fingerprint"]),
            ("Account", f"{made['Name']} ({made['Id']}, {made['AccountType']}, {username})"),
            ("Pools", ", ".join(added["WorkerPoolIds"])),
            ("Health", "being checked now (tentacle hub workers shows it)"),
        ]
    )


@click.command("ssh-fingerprint")
@hub_options
@click.option("--host", required=True, metavar="HOST", help="the SSH server's host name or address")
@click.option("--port", default=SSH_PORT, show_default=True, type=click.IntRange(1, 65535))
@format_option
def ssh_fingerprint_command(
    server: str,
    api_key: str,
    server_thumbprint: str | None,
    host: str,
    port: int,
    output_format: str,
) -> None:
    """Show the SHA256 fingerprint of an SSH server's host key, as the hub sees it.

    Compare it with the machine's own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub
    there) before giving it to add-ssh-worker --fingerprint.
    """

    async def fetch() -> dict[str, Any]:
        async with HubApi(server, api_key, server_thumbprint) as hub:
            await hub.root()
            try:
                found = await hub.get(
                    "/api/workers/discover", type="Ssh", host=host, port=str(port)
                )
            except HubApiError as error:
                raise SshWorkerError(str(error)) from None
            return dict(found)

    found = asyncio.run(fetch())
    if output_format == "json":
        emit_json(found)
        return
    emit_fields(
        [
            ("Fingerprint", found["Fingerprint"]),
            ("Endpoint", found["Endpoint"]["Uri"]),
            ("Check", "compare it with ssh-keygen -lf on that machine before pinning it"),
        ]
    )


COMMANDS = (add_ssh_worker_command, ssh_fingerprint_command)
