"""/api/workerpools: pools of workers, one of them the default (Octopus's WorkerPoolResource)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub import ids
from agent.hub.api.bodies import Fields, json_object
from agent.hub.api.collections import respond_all, respond_page
from agent.hub.api.common import (
    is_unique_violation,
    iso,
    name_race_conflict,
    note,
    refuse,
    refuse_taken_name,
    row_or_404,
    stamp,
)
from agent.hub.api.context import context_of
from agent.hub.api.routes import Routes, collection_path, space_of, space_path
from agent.hub.rules.documents import default_change, pool_deletion
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


async def pools_of(conn: AsyncConnection, space_id: int) -> list[Row]:
    query = sa.select(t.worker_pools).where(t.worker_pools.c.space_id == space_id)
    return await fetch_all(conn, query.order_by(t.worker_pools.c.sort_order, t.worker_pools.c.id))


async def member_counts(conn: AsyncConnection) -> Counter[int]:
    rows = await fetch_all(conn, sa.select(t.worker_pool_members.c.pool_id))
    return Counter(row["pool_id"] for row in rows)


async def list_pools(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        pools = [pool_resource(row) for row in await pools_of(conn, space)]
    return respond_page(request, "WorkerPool", collection_path(request, "workerpools"), pools)


async def all_pools(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        return respond_all(request, [pool_resource(row) for row in await pools_of(conn, space)])


async def get_pool(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        row = await row_or_404(
            conn, t.worker_pools, ids.WORKER_POOL, request.match_info["id"], space
        )
    return web.json_response(pool_resource(row))


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


async def _make_only_default(conn: AsyncConnection, space_id: int, pool_id: int) -> None:
    pools = t.worker_pools
    await conn.execute(
        sa.update(pools)
        .where(pools.c.space_id == space_id, pools.c.id != pool_id)
        .values(is_default=False)
    )


async def create_pool(request: web.Request) -> web.Response:
    space = await space_of(request)
    body = await json_object(request)
    values = _pool_fields(body, None)
    store = context_of(request).store
    try:
        async with store.transaction() as conn:
            await refuse_taken_name(
                conn, t.worker_pools, ids.WORKER_POOL, "worker pool", values["name"], space
            )
            if body.get("SortOrder") is None:  # after the others, as Octopus places a new pool
                highest = sa.select(sa.func.max(t.worker_pools.c.sort_order))
                values["sort_order"] = int((await conn.execute(highest)).scalar() or 0) + 1
            result = await conn.execute(
                sa.insert(t.worker_pools)
                .values(space_id=space, **values, **stamp(request))
                .returning(t.worker_pools.c.id)
            )
            pool_id = int(result.scalar_one())
            if values["is_default"]:
                await _make_only_default(conn, space, pool_id)
            row = await row_or_404(
                conn,
                t.worker_pools,
                ids.WORKER_POOL,
                ids.format_id(ids.WORKER_POOL, pool_id),
                space,
            )
            await note(
                conn,
                request,
                "Created",
                f"Worker pool {values['name']} created",
                ids.format_id(ids.WORKER_POOL, pool_id),
            )
    except sa.exc.IntegrityError as error:
        if not is_unique_violation(error):
            raise
        raise await name_race_conflict(
            store, t.worker_pools, ids.WORKER_POOL, "worker pool", values["name"], space
        ) from None
    return web.json_response(pool_resource(row), status=201)


async def update_pool(request: web.Request) -> web.Response:
    space = await space_of(request)
    body = await json_object(request)
    store = context_of(request).store
    values: dict[str, Any] = {}
    try:
        async with store.transaction() as conn:
            current = await row_or_404(
                conn, t.worker_pools, ids.WORKER_POOL, request.match_info["id"], space
            )
            values = _pool_fields(body, current)
            refuse(default_change(current["name"], current["is_default"], values["is_default"]))
            await refuse_taken_name(
                conn,
                t.worker_pools,
                ids.WORKER_POOL,
                "worker pool",
                values["name"],
                space,
                exclude=current["id"],
            )
            await conn.execute(
                sa.update(t.worker_pools)
                .where(t.worker_pools.c.id == current["id"])
                .values(**values, **stamp(request))
            )
            if values["is_default"]:
                await _make_only_default(conn, space, current["id"])
            pool_id = ids.format_id(ids.WORKER_POOL, current["id"])
            row = await row_or_404(conn, t.worker_pools, ids.WORKER_POOL, pool_id, space)
            await note(conn, request, "Modified", f"Worker pool {row['name']} modified", pool_id)
    except sa.exc.IntegrityError as error:
        if not is_unique_violation(error):
            raise
        raise await name_race_conflict(
            store, t.worker_pools, ids.WORKER_POOL, "worker pool", values["name"], space
        ) from None
    return web.json_response(pool_resource(row))


async def delete_pool(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.transaction() as conn:
        row = await row_or_404(
            conn, t.worker_pools, ids.WORKER_POOL, request.match_info["id"], space
        )
        members = (await member_counts(conn))[row["id"]]
        refuse(pool_deletion(row["name"], row["is_default"], members))
        await conn.execute(sa.delete(t.worker_pools).where(t.worker_pools.c.id == row["id"]))
        await note(
            conn,
            request,
            "Deleted",
            f"Worker pool {row['name']} deleted",
            ids.format_id(ids.WORKER_POOL, row["id"]),
        )
    return web.json_response(None, status=200)


def add_routes(routes: Routes) -> None:
    routes.get("/workerpools", list_pools)
    routes.get("/workerpools/all", all_pools)
    routes.post("/workerpools", create_pool)
    routes.get("/workerpools/{id:WorkerPools-[0-9]+}", get_pool)
    routes.put("/workerpools/{id:WorkerPools-[0-9]+}", update_pool)
    routes.delete("/workerpools/{id:WorkerPools-[0-9]+}", delete_pool)
