"""Reading and writing the hub's documents: plain async functions over a connection.

Each takes an open SQLAlchemy AsyncConnection (so that callers choose the
transaction) and returns plain dicts of column values. Ids are integers here;
the API formats them.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub import defaults
from agent.hub.store import tables as t
from agent.hub.store.text import LowerText

Row = dict[str, Any]


async def fetch_all(
    conn: AsyncConnection, query: sa.Executable, params: Mapping[str, Any] | None = None
) -> list[Row]:
    """The rows of ``query`` (with ``params``: the values of its bindparams)."""
    return [dict(row) for row in (await conn.execute(query, params)).mappings()]


async def fetch_one(
    conn: AsyncConnection, query: sa.Executable, params: Mapping[str, Any] | None = None
) -> Row | None:
    """The first row of ``query`` (with ``params``), None if it has none."""
    row = (await conn.execute(query, params)).mappings().first()
    return dict(row) if row is not None else None


def among(column: sa.ColumnElement[Any], values: Sequence[Any]) -> sa.ColumnElement[bool]:
    """``column IN (values)`` for a list fixed when the statement is built (states, names):
    one bound value each. ``column.in_(values)`` binds one expanding parameter, whose
    SQL SQLAlchemy renders again at every run (its "post-compile" step): a statement run
    for every step of every task cost twice as much that way (docs/decisions.md, "The
    hub's hot statements are built once")."""
    return column.in_([sa.literal(value, column.type) for value in values])


async def same_name(
    conn: AsyncConnection,
    table: sa.Table,
    name: str,
    space_id: int | None = None,
    exclude: int | None = None,
) -> Row | None:
    """The row (in the space, when the table has one) whose name is ``name`` whatever
    its case, other than the row ``exclude``; None if there is none. Compared as
    Python's ``str.lower`` ("Élan" and "élan" are one name on both databases); the
    unique index on lower(name) (ASCII only, on SQLite) backs this check against
    a request at the same time."""
    query = sa.select(table.c.id, table.c.name).where(LowerText(table.c.name) == name.lower())
    if space_id is not None:
        query = query.where(table.c.space_id == space_id)
    if exclude is not None:
        query = query.where(table.c.id != exclude)
    return await fetch_one(conn, query.order_by(table.c.id).limit(1))


@functools.cache
def _inserting(table: sa.Table) -> sa.Insert:
    # one statement per table, its values given when it runs: built once, its cache key
    # computed once (building and keying a statement cost the hub's loop several times
    # SQLite's run of it: docs/decisions.md, "The hub's hot statements are built once")
    return sa.insert(table).returning(table.c.id)


async def insert(conn: AsyncConnection, table: sa.Table, values: Row) -> int:
    """Insert one row and return its id."""
    if any(isinstance(value, sa.ClauseElement) for value in values.values()):
        statement = sa.insert(table).values(**values).returning(table.c.id)  # SQL values
        result = await conn.execute(statement)
    else:
        result = await conn.execute(_inserting(table), values)
    return int(result.scalar_one())


async def initialise(conn: AsyncConnection, now: datetime, who: str = "system") -> None:
    """Create what a new hub starts with, unless it exists: the default space, pool and
    policy, and the installation id. Safe to run on every start."""
    stamp = {"modified_on": now, "modified_by": who}
    space = await fetch_one(conn, sa.select(t.spaces.c.id).where(t.spaces.c.is_default))
    space_id = (
        space["id"]
        if space
        else await insert(
            conn,
            t.spaces,
            {"name": defaults.DEFAULT_SPACE, "description": "", "is_default": True, **stamp},
        )
    )
    pool = t.worker_pools.c
    if await fetch_one(conn, sa.select(pool.id).where(pool.space_id == space_id)) is None:
        await insert(
            conn,
            t.worker_pools,
            {
                "space_id": space_id,
                "name": defaults.DEFAULT_POOL,
                "description": "",
                "is_default": True,
                "sort_order": 1,
                "pool_type": "StaticWorkerPool",
                **stamp,
            },
        )
    policy = t.machine_policies.c
    if await fetch_one(conn, sa.select(policy.id).where(policy.space_id == space_id)) is None:
        await insert(
            conn,
            t.machine_policies,
            {
                "space_id": space_id,
                "name": defaults.DEFAULT_POLICY,
                "description": "",
                "is_default": True,
                "settings": defaults.policy_settings(),
                **stamp,
            },
        )
    if await fact(conn, "InstallationId") is None:
        await conn.execute(
            sa.insert(t.hub_facts).values(name="InstallationId", value=str(uuid.uuid4()))
        )


async def fact(conn: AsyncConnection, name: str) -> str | None:
    row = await fetch_one(conn, sa.select(t.hub_facts.c.value).where(t.hub_facts.c.name == name))
    return None if row is None else str(row["value"])


_DEFAULT_SPACE = sa.select(t.spaces.c.id).where(t.spaces.c.is_default)
_EVENT = sa.insert(t.events)


async def default_space_id(conn: AsyncConnection) -> int:
    row = await fetch_one(conn, _DEFAULT_SPACE)
    assert row is not None, "the hub was not initialised"
    return int(row["id"])


async def record_event(
    conn: AsyncConnection,
    now: datetime,
    who: str,
    category: str,
    message: str,
    related: Sequence[str] = (),
) -> None:
    """Note a change in the audit log that /api/events shows."""
    values = {"occurred": now, "username": who, "category": category, "message": message,
              "related_document_ids": list(related)}  # fmt: skip
    await conn.execute(_EVENT, values)


async def polling_certificates(conn: AsyncConnection) -> dict[str, str]:
    """The certificates the polling port trusts, by SHA-1 thumbprint: those of enabled
    polling workers (the API keeps a worker's thumbprint its certificate's)."""
    workers = t.workers.c
    rows = await fetch_all(
        conn,
        sa.select(workers.thumbprint, workers.certificate).where(
            workers.communication_style == "TentacleActive",
            workers.is_disabled.is_(False),
            workers.certificate.is_not(None),
        ),
    )
    return {str(row["thumbprint"]): str(row["certificate"]) for row in rows}
