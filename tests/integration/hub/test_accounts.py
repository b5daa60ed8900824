"""/api/accounts: SSH key pairs and username/passwords, sealed at rest with the hub's
key, never returned, never logged; an account in use is not deleted."""

from __future__ import annotations

import base64
import logging
import secrets
import subprocess
import warnings
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.helpers.hub import RunningHub
from tests.helpers.postgres import _binary

SECRET_FIELDS = ("PrivateKeyFile", "PrivateKeyPassphrase", "Password")


def encrypted_key(passphrase: str) -> str:
    """A new ed25519 private key in OpenSSH form, encrypted with ``passphrase``."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    # few bcrypt rounds: the test's keys need not resist brute force (bcrypt warns so)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return key.export_private_key("openssh", passphrase, rounds=4).decode()


def _database_text(url: str) -> str:
    """Everything the database holds, as text: the SQLite file (and its WAL), or a
    pg_dump of the PostgreSQL database."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        files = [path, *(path.with_name(path.name + end) for end in ("-wal", "-journal"))]
        return "".join(f.read_bytes().decode("latin-1") for f in files if f.exists())
    dump = subprocess.run(
        [_binary("pg_dump"), "--data-only", url],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return dump.stdout


async def test_accounts_are_sealed_at_rest_never_returned_nor_logged(
    hub: RunningHub, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    passphrase, password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    key = encrypted_key(passphrase)
    # base64 of the key's body: any line of it in the database would be the key in clear
    body_lines = [line for line in key.splitlines() if not line.startswith("-----")]
    status, pair = await hub.api.request(
        "POST",
        "/api/accounts",
        json={
            "Name": "deploy key",
            "AccountType": "SshKeyPair",
            "Username": "deploy",
            "PrivateKeyFile": {"HasValue": True, "NewValue": key},
            "PrivateKeyPassphrase": {"HasValue": True, "NewValue": passphrase},
        },
    )
    assert status == 201, pair
    assert pair["Id"].startswith("Accounts-")
    assert (pair["AccountType"], pair["Username"]) == ("SshKeyPair", "deploy")
    assert pair["PrivateKeyFile"] == {"HasValue": True, "NewValue": None}
    assert pair["PrivateKeyPassphrase"] == {"HasValue": True, "NewValue": None}
    status, login = await hub.api.request(
        "POST",
        "/api/accounts",
        json={
            "Name": "ops",
            "AccountType": "UsernamePassword",
            "Username": "ops",
            "Password": password,  # a plain string is a new value too
        },
    )
    assert status == 201, login
    assert login["Password"] == {"HasValue": True, "NewValue": None}
    # renamed, the secrets kept (left out); read every way: never a value
    status, renamed = await hub.api.request(
        "PUT", f"/api/accounts/{pair['Id']}", json={**pair, "Name": "deploy-key"}
    )
    assert status == 200, renamed
    assert renamed["PrivateKeyFile"]["HasValue"] is True
    answers = [
        await hub.api.get("/api/accounts"),
        await hub.api.get("/api/accounts/all"),
        await hub.api.get(f"/api/accounts/{pair['Id']}"),
        await hub.api.get(f"/api/Spaces-1/accounts/{login['Id']}"),
        await hub.api.get("/api/events"),
    ]
    shown = repr(answers)
    assert "deploy-key" in shown
    assert "ops" in shown
    await hub.server.stop()  # everything written and the WAL checkpointed
    stored = _database_text(database_url)
    assert "deploy-key" in stored  # the dump is the real thing
    for text in (shown, stored, caplog.text):
        assert passphrase not in text
        assert password not in text
        assert not [line for line in body_lines if line in text]


async def _new(hub: RunningHub, body: dict[str, Any]) -> tuple[int, Any]:
    return await hub.api.request("POST", "/api/accounts", json=body)


async def test_a_bad_account_is_refused_naming_each_field_never_the_secret(
    hub: RunningHub,
) -> None:
    passphrase = secrets.token_urlsafe(16)
    key = encrypted_key(passphrase)
    status, body = await _new(hub, {"Name": "x", "AccountType": "Ssh"})
    assert status == 422
    assert "AccountType must be one of SshKeyPair, UsernamePassword" in repr(body)
    status, body = await _new(hub, {"AccountType": "UsernamePassword", "Username": "a b"})
    assert status == 422
    errors = "\n".join(body["Errors"])
    assert "Name is required" in errors
    assert "Username must be a user name" in errors
    assert "Password is required" in errors
    wrong = secrets.token_urlsafe(16)
    status, body = await _new(
        hub,
        {"Name": "k", "AccountType": "SshKeyPair", "Username": "u", "PrivateKeyFile": key,
         "PrivateKeyPassphrase": wrong},
    )  # fmt: skip
    assert status == 422
    assert "PrivateKeyPassphrase does not open PrivateKeyFile" in repr(body)
    status, body = await _new(
        hub, {"Name": "k", "AccountType": "SshKeyPair", "Username": "u", "PrivateKeyFile": key}
    )
    assert status == 422
    assert "PrivateKeyPassphrase does not open PrivateKeyFile" in repr(body)
    status, body = await _new(
        hub,
        {"Name": "k", "AccountType": "SshKeyPair", "Username": "u",
         "PrivateKeyFile": "not a key " + passphrase},
    )  # fmt: skip
    assert status == 422
    assert "PrivateKeyFile must be a private key in OpenSSH or PEM form" in repr(body)
    assert passphrase not in repr(body)
    assert wrong not in repr(body)
    # the key's file in base64, as Octopus's clients send it, is a key too
    status, made = await _new(
        hub,
        {"Name": "k", "AccountType": "SshKeyPair", "Username": "u",
         "PrivateKeyFile": base64.b64encode(key.encode()).decode(),
         "PrivateKeyPassphrase": passphrase},
    )  # fmt: skip
    assert status == 201, made
    status, body = await _new(
        hub, {"Name": "K", "AccountType": "UsernamePassword", "Username": "u", "Password": "p"}
    )
    assert status == 409
    assert f"a worker account named 'k' exists already ({made['Id']})" in body["ErrorMessage"]
    status, body = await hub.api.request(
        "PUT", f"/api/accounts/{made['Id']}", json={**made, "AccountType": "UsernamePassword"}
    )
    assert status == 422
    assert "AccountType cannot change" in repr(body)
    status, body = await hub.api.request(
        "PUT",
        f"/api/accounts/{made['Id']}",
        json={**made, "PrivateKeyPassphrase": {"HasValue": False, "NewValue": None}},
    )
    assert status == 422  # the key is encrypted: without its passphrase it cannot log in
    assert "PrivateKeyPassphrase does not open PrivateKeyFile" in repr(body)
    status, _ = await hub.api.request("DELETE", f"/api/accounts/{made['Id']}")
    assert status == 200
    status, _ = await hub.api.request("GET", f"/api/accounts/{made['Id']}")
    assert status == 404
