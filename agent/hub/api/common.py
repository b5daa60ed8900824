"""Pieces every resource module uses: stamps, events, 404s and 409s from the rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub import ids
from agent.hub.api.context import caller_of, context_of
from agent.hub.api.errors import ApiError, conflict, not_found
from agent.hub.rules.documents import Refusal
from agent.hub.store import Store
from agent.hub.store.records import Row, fetch_one, record_event, same_name


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def stamp(request: web.Request) -> dict[str, Any]:
    """``modified_on`` and ``modified_by`` for a change made by this request."""
    return {"modified_on": context_of(request).now(), "modified_by": caller_of(request).name}


async def note(
    conn: AsyncConnection, request: web.Request, category: str, message: str, *related: str
) -> None:
    """Record the change in the events log, as the request's caller."""
    await record_event(
        conn, context_of(request).now(), caller_of(request).name, category, message, related
    )


def refuse(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise conflict(refusal.message)


async def row_or_404(
    conn: AsyncConnection, table: sa.Table, kind: str, text: str, space_id: int
) -> Row:
    """The row ``text`` (``WorkerPools-3``) names in this space; 404 naming it if none."""
    number = ids.try_parse_id(kind, text)
    row = None
    if number is not None:
        query = sa.select(table).where(table.c.id == number, table.c.space_id == space_id)
        row = await fetch_one(conn, query)
    if row is None:
        raise not_found(f"there is no {kind} {text!r} in this space")
    return row


def is_unique_violation(error: sa.exc.IntegrityError) -> bool:
    text = str(error.orig).lower()
    return "unique" in text or "duplicate" in text


async def refuse_taken_name(
    conn: AsyncConnection,
    table: sa.Table,
    kind: str,
    what: str,
    name: str,
    space_id: int,
    exclude: int | None = None,
) -> None:
    """409 naming the document that has ``name`` already, whatever its case ("Pool A"
    and "pool a" are one name, as in Octopus); ``exclude`` is the one being renamed
    (changing only the case of its own name is allowed)."""
    taken = await same_name(conn, table, name, space_id, exclude)
    if taken is not None:
        raise conflict(_taken(what, kind, taken))


async def name_race_conflict(
    store: Store, table: sa.Table, kind: str, what: str, name: str, space_id: int
) -> ApiError:
    """The 409 for a unique violation after ``refuse_taken_name`` passed: a request at
    the same time took the name (the index on lower(name) let only one win). Looked
    up on a connection of its own, the failed transaction being over."""
    async with store.connect() as conn:
        taken = await same_name(conn, table, name, space_id)
    if taken is None:
        return conflict(f"a {what} with the same name or thumbprint as {name!r} exists already")
    return conflict(_taken(what, kind, taken))


def _taken(what: str, kind: str, row: Row) -> str:
    return f"a {what} named {row['name']!r} exists already ({ids.format_id(kind, row['id'])})"
