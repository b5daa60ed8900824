"""/api/workerpools: pools of workers, one of them the default (Octopus's WorkerPoolResource)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub import ids
from agent.hub.api.bodies import Fields
from agent.hub.api.common import iso
from agent.hub.api.documents import Document, add_document_routes, rows_of
from agent.hub.api.routes import Routes, space_path
from agent.hub.rules.documents import Refusal, pool_deletion
from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all

POOL_TYPES = ("StaticWorkerPool",)  # dynamic pools are Octopus Cloud's


def pool_resource(row: Row) -> dict[str, Any]:
    pool_id = ids.format_id(ids.WORKER_POOL, row["id"])
    base = space_path(row["space_id"], f"workerpools/{pool_id}")
    return {
        "Id": pool_id,
        "SpaceId": ids.format_id(ids.SPACE, row["space_id"]),
        "Name": row["name"],
        "Slug": row["name"].lower().replace(" ", "-"),
        "Description": row["description"],
        "IsDefault": row["is_default"],
        "SortOrder": row["sort_order"],
        "WorkerPoolType": row["pool_type"],
        "CanAddWorkers": True,
        "LastModifiedOn": iso(row["modified_on"]),
        "LastModifiedBy": row["modified_by"],
        "Links": {"Self": base, "Workers": f"{base}/workers{{?skip,take}}"},
    }


async def member_counts(conn: AsyncConnection) -> Counter[int]:
    rows = await fetch_all(conn, sa.select(t.worker_pool_members.c.pool_id))
    return Counter(row["pool_id"] for row in rows)


def _pool_fields(body: dict[str, Any], current: Row | None) -> dict[str, Any]:
    fields = Fields(body)
    described = current["description"] if current else ""
    values = {
        "name": fields.name(),
        "description": fields.text("Description", default=described) or "",
        "is_default": fields.boolean("IsDefault", current["is_default"] if current else False),
        "sort_order": fields.integer("SortOrder", current["sort_order"] if current else 0),
        "pool_type": fields.choice("WorkerPoolType", POOL_TYPES, "StaticWorkerPool"),
    }
    fields.done()
    return values


async def _placed_last(conn: AsyncConnection, body: dict[str, Any], values: dict[str, Any]) -> None:
    """A new pool without a SortOrder goes after the others, as Octopus places it."""
    if body.get("SortOrder") is None:
        highest = sa.select(sa.func.max(t.worker_pools.c.sort_order))
        values["sort_order"] = int((await conn.execute(highest)).scalar() or 0) + 1


async def _deletion(conn: AsyncConnection, row: Row) -> Refusal | None:
    """The default pool, or one that still has workers, stays."""
    return pool_deletion(row["name"], row["is_default"], (await member_counts(conn))[row["id"]])


POOLS = Document(
    table=t.worker_pools,
    kind=ids.WORKER_POOL,
    label="worker pool",
    route="workerpools",
    item_type="WorkerPool",
    resource=pool_resource,
    values=_pool_fields,
    deletion=_deletion,
    order=("sort_order", "id"),
    prepare=_placed_last,
)


async def pools_of(conn: AsyncConnection, space_id: int) -> list[Row]:
    return await rows_of(conn, POOLS, space_id)


def add_routes(routes: Routes) -> None:
    add_document_routes(routes, POOLS)
