"""/api/accounts: the credentials SSH workers are logged in to with (Octopus's
AccountResource: ``SshKeyPair`` and ``UsernamePassword``).

The secret fields (``PrivateKeyFile``, ``PrivateKeyPassphrase``, ``Password``)
are Octopus's sensitive values: read as ``{"HasValue": bool, "NewValue": null}``,
never the value; written as ``{"NewValue": "..."}`` (or a plain string) to set,
``{"HasValue": false}`` to clear, or left out / ``{"HasValue": true}`` to keep.
``PrivateKeyFile`` is the key's text (OpenSSH or PEM, encrypted or not) or its
base64, as Octopus's clients send the file. No error message repeats a secret.
An account a worker logs in with is not deleted (409 naming the workers).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import asyncssh
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub import ids
from agent.hub.accounts import (
    ACCOUNT_TYPES,
    KEY_PAIR,
    SECRET_FIELDS,
    USERNAME_PASSWORD,
    open_secret,
    seal_secret,
)
from agent.hub.api.bodies import Fields, json_object
from agent.hub.api.collections import respond_all, respond_page
from agent.hub.api.common import (
    is_unique_violation,
    iso,
    name_race_conflict,
    note,
    refuse_taken_name,
    row_or_404,
    stamp,
)
from agent.hub.api.context import context_of
from agent.hub.api.deployments import key_of
from agent.hub.api.documents import NameRace
from agent.hub.api.errors import conflict
from agent.hub.api.routes import Routes, collection_path, space_of, space_path
from agent.hub.secrets import HubKey
from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all

LABEL = "worker account"  # "a worker account named ... exists already"
MAX_SECRET = 64 * 1024  # characters of one secret field (a 16 kbit RSA key is ~12 k)
_USERNAME_FORBIDDEN = set(" \t\r\n\x00:@/")


def account_resource(row: Row, secret: dict[str, str | None]) -> dict[str, Any]:
    """The account as the API shows it: which secrets it has, never their values."""
    account_id = ids.format_id(ids.ACCOUNT, row["id"])
    shown: dict[str, Any] = {
        "Id": account_id,
        "SpaceId": ids.format_id(ids.SPACE, row["space_id"]),
        "Name": row["name"],
        "Description": row["description"],
        "AccountType": row["account_type"],
        "Username": row["username"],
        "EnvironmentIds": [],
        "TenantIds": [],
        "TenantTags": [],
        "TenantedDeploymentParticipation": "Untenanted",
        "LastModifiedOn": iso(row["modified_on"]),
        "LastModifiedBy": row["modified_by"],
        "Links": {
            "Self": space_path(row["space_id"], f"accounts/{account_id}"),
            "Usages": space_path(row["space_id"], f"accounts/{account_id}/usages"),
        },
    }
    for field in SECRET_FIELDS[row["account_type"]]:
        shown[field] = {"HasValue": bool(secret.get(field)), "NewValue": None}
    return shown


def _shown(row: Row, key: HubKey) -> dict[str, Any]:
    return account_resource(row, open_secret(key, row["id"], row["sealed_secret"]))


def _given_secret(fields: Fields, name: str, current: str | None) -> str | None:
    """The secret field ``name`` of the body, as a sensitive value; ``current`` when
    the body keeps it. Problems are named without the value."""
    value = fields.body.get(name)
    if value is None:
        return current
    if isinstance(value, dict):
        new = value.get("NewValue")
        if new is None:
            return current if value.get("HasValue", True) is not False else None
        value = new
    if not isinstance(value, str):
        fields.errors.append(
            f'{name} must be a string or {{"HasValue": bool, "NewValue": string or null}}'
        )
        return current
    if len(value) > MAX_SECRET or "\x00" in value:
        fields.errors.append(f"{name} must be at most {MAX_SECRET} characters, without NUL")
        return current
    return value or None


def _key_text(fields: Fields, text: str | None) -> str | None:
    """The private key's text: as given, or decoded from base64 (Octopus's clients
    send the file's bytes in base64)."""
    if text is None or "-----BEGIN" in text:
        return text
    try:
        decoded = base64.b64decode(text.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if "-----BEGIN" not in decoded:
        fields.errors.append(
            "PrivateKeyFile must be a private key in OpenSSH or PEM form "
            "(-----BEGIN ... PRIVATE KEY-----), or its base64"
        )
        return None
    return decoded


def _check_key(fields: Fields, key: str | None, passphrase: str | None) -> None:
    """The key is one asyncssh reads, and the passphrase opens it (if it is encrypted)."""
    if key is None:
        fields.errors.append("PrivateKeyFile is required for an SshKeyPair account")
        return
    try:
        asyncssh.import_private_key(key, passphrase)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as error:
        reason = str(error)
        if "passphrase" in reason.lower():
            fields.errors.append(
                "PrivateKeyPassphrase does not open PrivateKeyFile "
                f"(an encrypted key needs its passphrase): {reason}"
            )
        else:
            fields.errors.append(f"PrivateKeyFile is not a private key asyncssh can read: {reason}")


def _username(fields: Fields, current: Row | None) -> str | None:
    given = fields.text("Username", required=current is None)
    if given is None:
        return current["username"] if current else None
    if not given or len(given) > 200 or set(given) & _USERNAME_FORBIDDEN:
        fields.errors.append(
            f"Username must be a user name on the SSH worker (1 to 200 characters, no "
            f"spaces, ':', '@' or '/'), not {given[:80]!r}"
        )
        return None
    return given


def account_values(
    body: dict[str, Any], current: Row | None, secret: dict[str, str | None]
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """The columns and the secret (in the clear) a POST or PUT body asks for; 422 naming
    every bad field (no value of a secret in any message)."""
    fields = Fields(body)
    kind = fields.choice("AccountType", ACCOUNT_TYPES, current["account_type"] if current else None)
    if kind is None and not any("AccountType" in e for e in fields.errors):
        fields.errors.append(f"AccountType is required: one of {', '.join(ACCOUNT_TYPES)}")
    if current is not None and kind is not None and kind != current["account_type"]:
        fields.errors.append(
            f"AccountType cannot change ({current['account_type']} to {kind}): "
            "create another account"
        )
    values = {
        "name": fields.name(),
        "description": fields.text("Description", default=current["description"] if current else "")
        or "",
        "account_type": kind,
        "username": _username(fields, current),
    }
    new: dict[str, str | None] = {}
    if kind == KEY_PAIR:
        key = _key_text(
            fields, _given_secret(fields, "PrivateKeyFile", secret.get("PrivateKeyFile"))
        )
        phrase = _given_secret(fields, "PrivateKeyPassphrase", secret.get("PrivateKeyPassphrase"))
        if not fields.errors:
            _check_key(fields, key, phrase)
        new = {"PrivateKeyFile": key, "PrivateKeyPassphrase": phrase}
    elif kind == USERNAME_PASSWORD:
        password = _given_secret(fields, "Password", secret.get("Password"))
        if password is None:
            fields.errors.append("Password is required for a UsernamePassword account")
        new = {"Password": password}
    fields.done()
    return values, new


async def account_users(conn: AsyncConnection, number: int) -> list[Row]:
    """The workers that log in with the account ``number``."""
    query = sa.select(t.workers.c.id, t.workers.c.name).where(t.workers.c.account_id == number)
    return await fetch_all(conn, query.order_by(t.workers.c.id))


async def _rows(conn: AsyncConnection, space: int) -> list[Row]:
    query = sa.select(t.accounts).where(t.accounts.c.space_id == space)
    return await fetch_all(conn, query.order_by(t.accounts.c.id))


async def list_accounts(request: web.Request) -> web.Response:
    space, key = await space_of(request), key_of(request)
    async with context_of(request).store.connect() as conn:
        items = [_shown(row, key) for row in await _rows(conn, space)]
    return respond_page(request, "Account", collection_path(request, "accounts"), items)


async def all_accounts(request: web.Request) -> web.Response:
    space, key = await space_of(request), key_of(request)
    async with context_of(request).store.connect() as conn:
        return respond_all(request, [_shown(row, key) for row in await _rows(conn, space)])


async def get_account(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        row = await row_or_404(conn, t.accounts, ids.ACCOUNT, request.match_info["id"], space)
    return web.json_response(_shown(row, key_of(request)))


async def account_usages(request: web.Request) -> web.Response:
    """/api/accounts/{id}/usages: the workers that log in with it."""
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        row = await row_or_404(conn, t.accounts, ids.ACCOUNT, request.match_info["id"], space)
        users = await account_users(conn, row["id"])
    workers = [{"Id": ids.format_id(ids.WORKER, u["id"]), "Name": u["name"]} for u in users]
    return web.json_response({"Workers": workers})


async def _saved(conn: AsyncConnection, name: str, statement: sa.Executable) -> Any:
    try:
        return await conn.execute(statement)
    except sa.exc.IntegrityError as error:
        if is_unique_violation(error):
            raise NameRace(name) from None
        raise


async def create_account(request: web.Request) -> web.Response:
    space, key = await space_of(request), key_of(request)
    values, secret = account_values(await json_object(request), None, {})
    store = context_of(request).store
    try:
        async with store.transaction() as conn:
            await refuse_taken_name(conn, t.accounts, ids.ACCOUNT, LABEL, values["name"], space)
            insert = sa.insert(t.accounts).values(
                space_id=space, sealed_secret="", **values, **stamp(request)
            )
            result = await _saved(conn, values["name"], insert.returning(t.accounts.c.id))
            number = int(result.scalar_one())
            sealed = seal_secret(key, number, secret)  # its id is the associated data
            await conn.execute(
                sa.update(t.accounts).where(t.accounts.c.id == number).values(sealed_secret=sealed)
            )
            account_id = ids.format_id(ids.ACCOUNT, number)
            row = await row_or_404(conn, t.accounts, ids.ACCOUNT, account_id, space)
            await note(conn, request, "Created", f"Account {row['name']} created", account_id)
    except NameRace as race:
        raise await name_race_conflict(
            store, t.accounts, ids.ACCOUNT, LABEL, str(race), space
        ) from None
    return web.json_response(account_resource(row, secret), status=201)


async def update_account(request: web.Request) -> web.Response:
    space, key = await space_of(request), key_of(request)
    body = await json_object(request)
    store = context_of(request).store
    try:
        async with store.transaction() as conn:
            current = await row_or_404(
                conn, t.accounts, ids.ACCOUNT, request.match_info["id"], space
            )
            before = open_secret(key, current["id"], current["sealed_secret"])
            values, secret = account_values(body, current, before)
            await refuse_taken_name(
                conn, t.accounts, ids.ACCOUNT, LABEL, values["name"], space, current["id"]
            )
            update = (
                sa.update(t.accounts)
                .where(t.accounts.c.id == current["id"])
                .values(
                    **values,
                    sealed_secret=seal_secret(key, current["id"], secret),
                    **stamp(request),
                )
            )
            await _saved(conn, values["name"], update)
            account_id = ids.format_id(ids.ACCOUNT, current["id"])
            row = await row_or_404(conn, t.accounts, ids.ACCOUNT, account_id, space)
            await note(conn, request, "Modified", f"Account {row['name']} modified", account_id)
    except NameRace as race:
        raise await name_race_conflict(
            store, t.accounts, ids.ACCOUNT, LABEL, str(race), space
        ) from None
    # the SSH connections logged in with the old secret are not reused
    await context_of(request).changed("accounts", [current["id"]])
    return web.json_response(account_resource(row, secret))


async def delete_account(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.transaction() as conn:
        row = await row_or_404(conn, t.accounts, ids.ACCOUNT, request.match_info["id"], space)
        users = await account_users(conn, row["id"])
        if users:
            named = ", ".join(f"{u['name']} ({ids.format_id(ids.WORKER, u['id'])})" for u in users)
            raise conflict(
                f"the account {row['name']!r} is used by {len(users)} worker(s): {named}; "
                "give them another account or delete them first"
            )
        await conn.execute(sa.delete(t.accounts).where(t.accounts.c.id == row["id"]))
        account_id = ids.format_id(ids.ACCOUNT, row["id"])
        await note(conn, request, "Deleted", f"Account {row['name']} deleted", account_id)
    return web.json_response(None)


def add_routes(routes: Routes) -> None:
    one = "/accounts/{id:Accounts-[0-9]+}"
    routes.get("/accounts", list_accounts)
    routes.get("/accounts/all", all_accounts)
    routes.post("/accounts", create_account)
    routes.get(one, get_account)
    routes.get(f"{one}/usages", account_usages)
    routes.put(one, update_account)
    routes.delete(one, delete_account)
