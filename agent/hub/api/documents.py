"""The CRUD of a space's named documents with one default (worker pools, machine
policies): list, all, get, create, update and delete, each change an event.

A resource module describes its kind (``Document``): its table and id, how a row
is shown, how a body becomes columns (its 422s) and what may refuse a deletion
(its 409s); the shape every such kind shares lives here once: a name taken,
whatever its case, is a 409 (``refuse_taken_name`` before the write, ``saved``
for a request at the same time that took it first), at most one default
(``only_default``), a default stops being one only when another becomes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub import ids
from agent.hub.api.bodies import json_object
from agent.hub.api.collections import respond_all, respond_page
from agent.hub.api.common import (
    is_unique_violation,
    name_race_conflict,
    note,
    refuse,
    refuse_taken_name,
    row_or_404,
    stamp,
)
from agent.hub.api.context import context_of
from agent.hub.api.routes import Routes, collection_path, space_of
from agent.hub.rules.documents import Refusal, default_change
from agent.hub.store.records import Row, fetch_all

# a body (and the current row, on update) -> the columns to write; 422 if invalid
Values = Callable[[dict[str, Any], Row | None], dict[str, Any]]
# before a new document is inserted: fill in what depends on the others (a sort order)
Prepare = Callable[[AsyncConnection, dict[str, Any], dict[str, Any]], Awaitable[None]]
# why this document may not be deleted now (in use), or None
Deletion = Callable[[AsyncConnection, Row], Awaitable[Refusal | None]]


async def _nothing_to_prepare(
    conn: AsyncConnection, body: dict[str, Any], values: dict[str, Any]
) -> None:
    return None


@dataclass(frozen=True)
class Document:
    """One kind of document: what differs between pools and policies."""

    table: sa.Table
    kind: str  # the id's prefix: ids.WORKER_POOL
    label: str  # for people: "worker pool"
    route: str  # the collection's path under /api: "workerpools"
    item_type: str  # the paging envelope's ItemType: "WorkerPool"
    resource: Callable[[Row], dict[str, Any]]
    values: Values
    deletion: Deletion
    order: Sequence[str] = ("id",)  # the listing's columns
    prepare: Prepare = _nothing_to_prepare
    changed: str | None = None  # what the live parts are told after an update

    def id_of(self, number: int) -> str:
        return ids.format_id(self.kind, number)

    @property
    def title(self) -> str:  # "Worker pool", as events begin
        return self.label[:1].upper() + self.label[1:]


async def rows_of(conn: AsyncConnection, doc: Document, space: int) -> list[Row]:
    """The space's documents of this kind, in the kind's order."""
    query = sa.select(doc.table).where(doc.table.c.space_id == space)
    return await fetch_all(conn, query.order_by(*(doc.table.c[name] for name in doc.order)))


class NameRace(Exception):
    """The database's unique index on lower(name) refused a write whose name was free
    when it was checked: a request at the same time took it. Turned into the 409 once
    the failed transaction is over."""


async def saved(
    conn: AsyncConnection, doc: Document, name: str, statement: sa.Executable
) -> CursorResult[Any]:
    """Run the insert or update of a document named ``name`` (already checked with
    ``refuse_taken_name``); a unique violation is a ``NameRace``."""
    try:
        return await conn.execute(statement)
    except sa.exc.IntegrityError as error:
        if is_unique_violation(error):
            raise NameRace(name) from None
        raise


async def only_default(conn: AsyncConnection, doc: Document, space: int, number: int) -> None:
    """Make ``number`` the space's only default of this kind."""
    table = doc.table
    await conn.execute(
        sa.update(table)
        .where(table.c.space_id == space, table.c.id != number)
        .values(is_default=False)
    )


class DocumentRoutes:
    """The handlers of one kind's routes: list, all, get, create, update, delete."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc

    async def list(self, request: web.Request) -> web.Response:
        doc, space = self.doc, await space_of(request)
        async with context_of(request).store.connect() as conn:
            items = [doc.resource(row) for row in await rows_of(conn, doc, space)]
        return respond_page(request, doc.item_type, collection_path(request, doc.route), items)

    async def all(self, request: web.Request) -> web.Response:
        doc, space = self.doc, await space_of(request)
        async with context_of(request).store.connect() as conn:
            return respond_all(request, [doc.resource(r) for r in await rows_of(conn, doc, space)])

    async def get(self, request: web.Request) -> web.Response:
        doc, space = self.doc, await space_of(request)
        async with context_of(request).store.connect() as conn:
            row = await row_or_404(conn, doc.table, doc.kind, request.match_info["id"], space)
        return web.json_response(doc.resource(row))

    async def create(self, request: web.Request) -> web.Response:
        doc, space = self.doc, await space_of(request)
        body = await json_object(request)
        values = doc.values(body, None)
        store = context_of(request).store
        try:
            async with store.transaction() as conn:
                await refuse_taken_name(conn, doc.table, doc.kind, doc.label, values["name"], space)
                await doc.prepare(conn, body, values)
                insert = sa.insert(doc.table).values(space_id=space, **values, **stamp(request))
                result = await saved(conn, doc, values["name"], insert.returning(doc.table.c.id))
                number = int(result.scalar_one())
                if values["is_default"]:
                    await only_default(conn, doc, space, number)
                document_id = doc.id_of(number)
                row = await row_or_404(conn, doc.table, doc.kind, document_id, space)
                await note(
                    conn, request, "Created", f"{doc.title} {row['name']} created", document_id
                )
        except NameRace as race:
            raise await name_race_conflict(
                store, doc.table, doc.kind, doc.label, str(race), space
            ) from None
        return web.json_response(doc.resource(row), status=201)

    async def update(self, request: web.Request) -> web.Response:
        doc, space = self.doc, await space_of(request)
        body = await json_object(request)
        store = context_of(request).store
        try:
            async with store.transaction() as conn:
                row = await self._write_update(conn, request, body, space)
        except NameRace as race:
            raise await name_race_conflict(
                store, doc.table, doc.kind, doc.label, str(race), space
            ) from None
        if doc.changed is not None:
            await context_of(request).changed(doc.changed)
        return web.json_response(doc.resource(row))

    async def _write_update(
        self, conn: AsyncConnection, request: web.Request, body: dict[str, Any], space: int
    ) -> Row:
        """The update inside its transaction; the row as it is now."""
        doc = self.doc
        current = await row_or_404(conn, doc.table, doc.kind, request.match_info["id"], space)
        values = doc.values(body, current)
        refuse(default_change(current["name"], current["is_default"], values["is_default"]))
        await refuse_taken_name(
            conn, doc.table, doc.kind, doc.label, values["name"], space, exclude=current["id"]
        )
        table = doc.table
        update = sa.update(table).where(table.c.id == current["id"])
        await saved(conn, doc, values["name"], update.values(**values, **stamp(request)))
        if values["is_default"]:
            await only_default(conn, doc, space, current["id"])
        document_id = doc.id_of(current["id"])
        row = await row_or_404(conn, table, doc.kind, document_id, space)
        await note(conn, request, "Modified", f"{doc.title} {row['name']} modified", document_id)
        return row

    async def delete(self, request: web.Request) -> web.Response:
        doc, space = self.doc, await space_of(request)
        async with context_of(request).store.transaction() as conn:
            row = await row_or_404(conn, doc.table, doc.kind, request.match_info["id"], space)
            refuse(await doc.deletion(conn, row))
            await conn.execute(sa.delete(doc.table).where(doc.table.c.id == row["id"]))
            document_id = doc.id_of(row["id"])
            await note(conn, request, "Deleted", f"{doc.title} {row['name']} deleted", document_id)
        return web.json_response(None)


def add_document_routes(routes: Routes, doc: Document) -> None:
    """``/{route}``, ``/{route}/all`` and ``/{route}/{id}`` (GET, POST, PUT, DELETE)."""
    handle = DocumentRoutes(doc)
    one = f"/{doc.route}/{{id:{doc.kind}-[0-9]+}}"
    routes.get(f"/{doc.route}", handle.list)
    routes.get(f"/{doc.route}/all", handle.all)
    routes.post(f"/{doc.route}", handle.create)
    routes.get(one, handle.get)
    routes.put(one, handle.update)
    routes.delete(one, handle.delete)
