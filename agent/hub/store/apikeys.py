"""API keys in the store: only their SHA-256 hash, name and permission are kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.errors import TentacleError
from agent.hub.keys import Permission, key_hash, new_api_key
from agent.hub.store import tables as t
from agent.hub.store.records import fetch_one


class DuplicateKeyName(TentacleError):
    pass


@dataclass(frozen=True)
class Caller:
    """Who made a request: the API key's name and what it may do."""

    name: str
    permission: Permission


async def create_api_key(
    conn: AsyncConnection, name: str, permission: Permission, now: datetime
) -> str:
    """Make a key, store its hash, and return the key (the only time it exists in full)."""
    existing = await fetch_one(conn, sa.select(t.api_keys.c.id).where(t.api_keys.c.name == name))
    if existing is not None:
        raise DuplicateKeyName(f"an API key named {name!r} exists already: choose another name")
    key = new_api_key()
    await conn.execute(
        sa.insert(t.api_keys).values(
            name=name,
            permission=permission.value,
            key_hash=key_hash(key),
            created=now,
        )
    )
    return key


async def caller_for(conn: AsyncConnection, key: str) -> Caller | None:
    """The caller whose key this is, or None. Looked up by hash: the key is never stored."""
    row = await fetch_one(
        conn,
        sa.select(t.api_keys.c.name, t.api_keys.c.permission).where(
            t.api_keys.c.key_hash == key_hash(key)
        ),
    )
    return None if row is None else Caller(row["name"], Permission(row["permission"]))
