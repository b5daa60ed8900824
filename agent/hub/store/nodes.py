"""The hub nodes' leases in the store (``hub_nodes``): take one, renew it, give it back.

Every change is conditional on what was read (no row, or the expired holder's
token), so of two processes taking one name at the same time exactly one wins,
on SQLite as on PostgreSQL; agent.hub.rules.lease judges the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub.rules.lease import LeaseState, expired_before, lease_state
from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all, fetch_one


def _named(name: str) -> sa.ColumnElement[bool]:
    """Node names are one whatever their case ("HUB" is "hub")."""
    return sa.func.lower(t.hub_nodes.c.name) == sa.func.lower(sa.literal(name))


async def holder(conn: AsyncConnection, name: str) -> Row | None:
    return await fetch_one(conn, sa.select(t.hub_nodes).where(_named(name)))


async def take(
    conn: AsyncConnection,
    mine: Row,
    now: datetime,
    lease_seconds: float,
    gone: Callable[[Row], bool] = lambda _: False,
) -> tuple[LeaseState, Row | None]:
    """Take the lease on ``mine["name"]`` for ``mine`` (its token, host, pid) unless a
    live holder has it. Returns the state found and the row found: FREE, EXPIRED or
    GONE (``gone(row)``: its process is known dead; then taken: the row is the
    holder that died) or HELD (then not taken).

    Raises IntegrityError when a process taking it at the same time inserted first
    (the caller reads the holder again); an expired holder taken over by another
    meanwhile is returned as HELD by that one."""
    nodes = t.hub_nodes
    found = await holder(conn, mine["name"])
    state = lease_state(found, now, lease_seconds, mine["token"])
    if state is LeaseState.HELD and found is not None and gone(found):
        state = LeaseState.GONE
    if state is LeaseState.HELD:
        return state, found
    values = {**mine, "started": now, "last_seen": now}
    if found is None:
        await conn.execute(sa.insert(nodes).values(**values))
    else:
        taken = await conn.execute(
            sa.update(nodes)
            .where(nodes.c.name == found["name"], nodes.c.token == found["token"])
            .values(**values)
        )
        if taken.rowcount != 1:
            return LeaseState.HELD, await holder(conn, mine["name"])
    return state, found


async def renew(conn: AsyncConnection, name: str, token: str, now: datetime) -> bool:
    """Note that this process still runs; False if the lease is no longer its own
    (another process took it over after it expired)."""
    nodes = t.hub_nodes
    renewed = await conn.execute(
        sa.update(nodes).where(_named(name), nodes.c.token == token).values(last_seen=now)
    )
    return renewed.rowcount == 1


async def expired(conn: AsyncConnection, now: datetime, lease_seconds: float) -> list[Row]:
    """The leases whose holders stopped renewing them (each judged by its own lease
    time): nodes that died, whose tasks nobody will finish."""
    rows = await fetch_all(conn, sa.select(t.hub_nodes).order_by(t.hub_nodes.c.name))
    return [row for row in rows if row["last_seen"] <= expired_before(row, now, lease_seconds)]


async def remove_expired(
    conn: AsyncConnection, row: Row, now: datetime, lease_seconds: float
) -> bool:
    """Delete the dead holder's lease if it is still that holder's and still expired
    (it did not renew meanwhile); True for the one process that did (of several
    live nodes finding it at once), which then fails its tasks."""
    nodes = t.hub_nodes
    removed = await conn.execute(
        sa.delete(nodes).where(
            nodes.c.name == row["name"],
            nodes.c.token == row["token"],
            nodes.c.last_seen <= expired_before(row, now, lease_seconds),
        )
    )
    return removed.rowcount == 1


async def give_back(conn: AsyncConnection, name: str, token: str) -> None:
    """A clean stop: the next process with this name takes over at once."""
    nodes = t.hub_nodes
    await conn.execute(sa.delete(nodes).where(_named(name), nodes.c.token == token))
