"""API keys in the store: only their SHA-256 hash, name and permission are kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.errors import TentacleError
from agent.hub.keys import Permission, key_hash, new_api_key
from agent.hub.store import tables as t
from agent.hub.store.records import fetch_one, same_name

# built once (every request looks its key up): agent.hub.store.tasks says why
_CALLER = sa.select(t.api_keys.c.id, t.api_keys.c.name, t.api_keys.c.permission).where(
    t.api_keys.c.key_hash == sa.bindparam("hash")
)


class DuplicateKeyName(TentacleError):
    pass


@dataclass(frozen=True)
class Caller:
    """Who made a request: the API key's name and what it may do."""

    name: str
    permission: Permission
    key_id: int = 0  # the key's row (ApiKeys-N)


async def create_api_key(
    conn: AsyncConnection, name: str, permission: Permission, now: datetime
) -> str:
    """Make a key, store its hash, and return the key (the only time it exists in full)."""
    existing = await same_name(conn, t.api_keys, name)
    if existing is not None:
        raise DuplicateKeyName(_taken(existing["name"]))
    key = new_api_key()
    try:
        await conn.execute(
            sa.insert(t.api_keys).values(
                name=name, permission=permission.value, key_hash=key_hash(key), created=now
            )
        )
    except sa.exc.IntegrityError:  # the index on lower(name): a key made meanwhile won
        # (the transaction is spoilt on PostgreSQL: the caller's ends with this error)
        raise DuplicateKeyName(_taken(name)) from None
    return key


def _taken(name: str) -> str:
    return (
        f"an API key named {name!r} exists already (names are compared whatever their case):"
        " choose another name"
    )


async def caller_for(conn: AsyncConnection, key: str) -> Caller | None:
    """The caller whose key this is, or None. Looked up by hash: the key is never stored."""
    row = await fetch_one(conn, _CALLER, {"hash": key_hash(key)})
    if row is None:
        return None
    return Caller(row["name"], Permission(row["permission"]), row["id"])
