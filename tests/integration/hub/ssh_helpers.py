"""Shared parts of the hub's SSH worker tests: accounts and workers for the session's
real sshd (tests/helpers/sshd.py), added through the API."""

from __future__ import annotations

from typing import Any

from tests.helpers.eventually import eventually
from tests.helpers.hub import HubApi
from tests.helpers.sshd import SshServer


async def key_account(api: HubApi, sshd: SshServer, name: str) -> dict[str, Any]:
    """An SshKeyPair account with the server's encrypted key and its passphrase."""
    assert sshd.encrypted_key is not None
    status, account = await api.request(
        "POST",
        "/api/accounts",
        json={
            "Name": name,
            "AccountType": "SshKeyPair",
            "Username": sshd.user,
            "PrivateKeyFile": {"HasValue": True, "NewValue": sshd.encrypted_key.private},
            "PrivateKeyPassphrase": {"HasValue": True, "NewValue": sshd.encrypted_key.passphrase},
        },
    )
    assert status == 201, account
    return account  # type: ignore[no-any-return]


async def add_ssh_worker(
    api: HubApi,
    sshd: SshServer,
    name: str,
    account: dict[str, Any],
    port: int | None = None,
    pool: str = "WorkerPools-1",
) -> dict[str, Any]:
    """An SSH worker on ``sshd`` (its fingerprint read through the discover route)."""
    port = port or sshd.port
    found = await api.get(f"/api/workers/discover?type=Ssh&host=127.0.0.1&port={port}")
    status, worker = await api.request(
        "POST",
        "/api/workers",
        json={
            "Name": name,
            "WorkerPoolIds": [pool],
            "Endpoint": {**found["Endpoint"], "AccountId": account["Id"]},
        },
    )
    assert status == 201, worker
    return worker  # type: ignore[no-any-return]


async def checked(api: HubApi, worker: dict[str, Any]) -> dict[str, Any]:
    """The worker once its first health check (queued when it was added) is over."""

    async def done() -> dict[str, Any] | None:
        record = await api.get(f"/api/workers/{worker['Id']}")
        return record if record["LastCheckedOn"] is not None else None

    return await eventually(done, f"{worker['Name']} checked", timeout=60)  # type: ignore[no-any-return]
