"""Accounts: the credentials the hub logs in to SSH workers with, sealed at rest.

An account's secret (``PrivateKeyFile`` and ``PrivateKeyPassphrase`` of an
``SshKeyPair``, ``Password`` of a ``UsernamePassword``) is one JSON document
sealed with the hub's key (``HubKey``, AES-256-GCM) with the account's id as
associated data: a token copied to another account's row does not open. The
secret is opened only to log in (``credentials_of``), never shown, never logged.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.client import SshCredentials
from agent.errors import TentacleError
from agent.hub import ids
from agent.hub.secrets import HubKey
from agent.hub.store import tables as t
from agent.hub.store.records import fetch_one

KEY_PAIR = "SshKeyPair"
USERNAME_PASSWORD = "UsernamePassword"  # noqa: S105 - a type, not a secret
ACCOUNT_TYPES = (KEY_PAIR, USERNAME_PASSWORD)
# the secret's fields of each account type
SECRET_FIELDS = {
    KEY_PAIR: ("PrivateKeyFile", "PrivateKeyPassphrase"),
    USERNAME_PASSWORD: ("Password",),
}


class AccountMissing(TentacleError):
    """A worker's account is not there (deleted under it, or none given)."""


def _associated(number: int) -> str:
    return ids.format_id(ids.ACCOUNT, number)


def seal_secret(key: HubKey, number: int, secret: dict[str, str | None]) -> str:
    """The sealed token of the account ``number``'s secret."""
    return key.seal(_associated(number), json.dumps(secret, sort_keys=True))


def open_secret(key: HubKey, number: int, token: str) -> dict[str, str | None]:
    """The secret in the clear; SecretError if this hub's key does not open it."""
    opened: dict[str, Any] = json.loads(key.open(_associated(number), token))
    return {name: (None if value is None else str(value)) for name, value in opened.items()}


async def credentials_of(
    conn: AsyncConnection, key: HubKey, account_id: int | None
) -> SshCredentials:
    """The SSH login of the account ``account_id``, its secret opened; AccountMissing
    if there is none, SecretError if this hub's key does not open it."""
    row = None
    if account_id is not None:
        row = await fetch_one(conn, sa.select(t.accounts).where(t.accounts.c.id == account_id))
    if row is None:
        raise AccountMissing(
            f"the SSH worker's account {account_id} does not exist: give the worker an account"
        )
    secret = open_secret(key, row["id"], row["sealed_secret"])
    if row["account_type"] == KEY_PAIR:
        return SshCredentials(
            username=row["username"],
            private_key=secret.get("PrivateKeyFile"),
            passphrase=secret.get("PrivateKeyPassphrase"),
        )
    return SshCredentials(username=row["username"], password=secret.get("Password"))
