"""/api/events: who changed what, when (the audit log)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from agent.hub import ids
from agent.hub.api.collections import respond_page
from agent.hub.api.common import iso
from agent.hub.api.context import context_of
from agent.hub.api.routes import Routes, collection_path, space_of
from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all


def event_resource(row: Row, space_id: int) -> dict[str, Any]:
    event_id = ids.format_id(ids.EVENT, row["id"])
    return {
        "Id": event_id,
        "SpaceId": ids.format_id(ids.SPACE, space_id),
        "Category": row["category"],
        "Username": row["username"],
        "Message": row["message"],
        "MessageText": row["message"],
        "Occurred": iso(row["occurred"]),
        "RelatedDocumentIds": row["related_document_ids"],
        "Links": {"Self": f"/api/events/{event_id}"},
    }


async def list_events(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        rows = await fetch_all(conn, sa.select(t.events).order_by(t.events.c.id.desc()))
    items = [event_resource(row, space) for row in rows]
    related = request.query.get("regarding")
    if related:
        items = [item for item in items if related in item["RelatedDocumentIds"]]
    return respond_page(
        request,
        "Event",
        collection_path(request, "events"),
        items,
        ("skip", "take", "ids", "regarding"),
    )


def add_routes(routes: Routes) -> None:
    routes.get("/events", list_events)
