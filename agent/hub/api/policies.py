"""/api/machinepolicies: how workers are health-checked and cleaned up
(Octopus's MachinePolicyResource)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub import defaults, ids
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
from agent.hub.api.errors import invalid
from agent.hub.api.routes import Routes, collection_path, space_of, space_path
from agent.hub.rules.documents import default_change, policy_deletion
from agent.hub.rules.policies import merge, policy_errors
from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all

SETTINGS_KEYS = tuple(defaults.policy_settings())


def policy_resource(row: Row) -> dict[str, Any]:
    policy_id = ids.format_id(ids.MACHINE_POLICY, row["id"]) if row.get("id") else None
    base = space_path(row["space_id"], f"machinepolicies/{policy_id}")
    return {
        "Id": policy_id,
        "SpaceId": ids.format_id(ids.SPACE, row["space_id"]),
        "Name": row["name"],
        "Description": row["description"],
        "IsDefault": row["is_default"],
        **row["settings"],
        "LastModifiedOn": iso(row.get("modified_on")),
        "LastModifiedBy": row.get("modified_by"),
        "Links": {"Self": base, "Workers": f"{base}/workers"} if policy_id else {},
    }


async def policies_of(conn: AsyncConnection, space_id: int) -> list[Row]:
    table = t.machine_policies
    return await fetch_all(
        conn, sa.select(table).where(table.c.space_id == space_id).order_by(table.c.id)
    )


async def list_policies(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        items = [policy_resource(row) for row in await policies_of(conn, space)]
    return respond_page(
        request, "MachinePolicy", collection_path(request, "machinepolicies"), items
    )


async def all_policies(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        return respond_all(request, [policy_resource(r) for r in await policies_of(conn, space)])


async def template(request: web.Request) -> web.Response:
    space = await space_of(request)
    row = {
        "id": None,
        "space_id": space,
        "name": "",
        "description": "",
        "is_default": False,
        "settings": defaults.policy_settings(),
    }
    return web.json_response(policy_resource(row))


async def get_policy(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.connect() as conn:
        row = await row_or_404(
            conn, t.machine_policies, ids.MACHINE_POLICY, request.match_info["id"], space
        )
    return web.json_response(policy_resource(row))


def _policy_values(body: dict[str, Any], current: Row | None) -> dict[str, Any]:
    fields = Fields(body)
    described = current["description"] if current else ""
    base = current["settings"] if current else defaults.policy_settings()
    given = {key: body[key] for key in SETTINGS_KEYS if key in body}
    for key, value in given.items():
        if isinstance(base[key], dict) and not isinstance(value, dict):
            fields.errors.append(f"{key} must be an object")
    settings = merge(
        base,
        {k: v for k, v in given.items() if not isinstance(base[k], dict) or isinstance(v, dict)},
    )
    values = {
        "name": fields.name(),
        "description": fields.text("Description", default=described) or "",
        "is_default": fields.boolean("IsDefault", current["is_default"] if current else False),
        "settings": settings,
    }
    errors = fields.errors + policy_errors(settings)
    if errors:
        raise invalid(errors)
    return values


async def _only_default(conn: AsyncConnection, space_id: int, policy_id: int) -> None:
    table = t.machine_policies
    await conn.execute(
        sa.update(table)
        .where(table.c.space_id == space_id, table.c.id != policy_id)
        .values(is_default=False)
    )


async def _workers_using(conn: AsyncConnection, policy_id: int) -> int:
    query = sa.select(sa.func.count()).select_from(t.workers)
    return int(
        (await conn.execute(query.where(t.workers.c.machine_policy_id == policy_id))).scalar_one()
    )


async def create_policy(request: web.Request) -> web.Response:
    space = await space_of(request)
    values = _policy_values(await json_object(request), None)
    store = context_of(request).store
    try:
        async with store.transaction() as conn:
            await refuse_taken_name(
                conn,
                t.machine_policies,
                ids.MACHINE_POLICY,
                "machine policy",
                values["name"],
                space,
            )
            result = await conn.execute(
                sa.insert(t.machine_policies)
                .values(space_id=space, **values, **stamp(request))
                .returning(t.machine_policies.c.id)
            )
            number = int(result.scalar_one())
            if values["is_default"]:
                await _only_default(conn, space, number)
            policy_id = ids.format_id(ids.MACHINE_POLICY, number)
            row = await row_or_404(conn, t.machine_policies, ids.MACHINE_POLICY, policy_id, space)
            await note(
                conn, request, "Created", f"Machine policy {values['name']} created", policy_id
            )
    except sa.exc.IntegrityError as error:
        if not is_unique_violation(error):
            raise
        raise await name_race_conflict(
            store, t.machine_policies, ids.MACHINE_POLICY, "machine policy", values["name"], space
        ) from None
    return web.json_response(policy_resource(row), status=201)


async def update_policy(request: web.Request) -> web.Response:
    space = await space_of(request)
    body = await json_object(request)
    store = context_of(request).store
    values: dict[str, Any] = {}
    try:
        async with store.transaction() as conn:
            current = await row_or_404(
                conn, t.machine_policies, ids.MACHINE_POLICY, request.match_info["id"], space
            )
            values = _policy_values(body, current)
            refuse(default_change(current["name"], current["is_default"], values["is_default"]))
            await refuse_taken_name(
                conn,
                t.machine_policies,
                ids.MACHINE_POLICY,
                "machine policy",
                values["name"],
                space,
                exclude=current["id"],
            )
            await conn.execute(
                sa.update(t.machine_policies)
                .where(t.machine_policies.c.id == current["id"])
                .values(**values, **stamp(request))
            )
            if values["is_default"]:
                await _only_default(conn, space, current["id"])
            policy_id = ids.format_id(ids.MACHINE_POLICY, current["id"])
            row = await row_or_404(conn, t.machine_policies, ids.MACHINE_POLICY, policy_id, space)
            await note(
                conn, request, "Modified", f"Machine policy {row['name']} modified", policy_id
            )
    except sa.exc.IntegrityError as error:
        if not is_unique_violation(error):
            raise
        raise await name_race_conflict(
            store, t.machine_policies, ids.MACHINE_POLICY, "machine policy", values["name"], space
        ) from None
    await context_of(request).changed("policies")
    return web.json_response(policy_resource(row))


async def delete_policy(request: web.Request) -> web.Response:
    space = await space_of(request)
    async with context_of(request).store.transaction() as conn:
        row = await row_or_404(
            conn, t.machine_policies, ids.MACHINE_POLICY, request.match_info["id"], space
        )
        refuse(
            policy_deletion(row["name"], row["is_default"], await _workers_using(conn, row["id"]))
        )
        await conn.execute(
            sa.delete(t.machine_policies).where(t.machine_policies.c.id == row["id"])
        )
        await note(
            conn,
            request,
            "Deleted",
            f"Machine policy {row['name']} deleted",
            ids.format_id(ids.MACHINE_POLICY, row["id"]),
        )
    return web.json_response(None)


def add_routes(routes: Routes) -> None:
    routes.get("/machinepolicies", list_policies)
    routes.get("/machinepolicies/all", all_policies)
    routes.get("/machinepolicies/template", template)
    routes.post("/machinepolicies", create_policy)
    routes.get("/machinepolicies/{id:MachinePolicies-[0-9]+}", get_policy)
    routes.put("/machinepolicies/{id:MachinePolicies-[0-9]+}", update_policy)
    routes.delete("/machinepolicies/{id:MachinePolicies-[0-9]+}", delete_policy)
