"""/api/machinepolicies: how workers are health-checked and cleaned up
(Octopus's MachinePolicyResource)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub import defaults, ids
from agent.hub.api.bodies import Fields
from agent.hub.api.common import iso
from agent.hub.api.documents import Document, add_document_routes
from agent.hub.api.errors import invalid
from agent.hub.api.routes import Routes, space_of, space_path
from agent.hub.rules.documents import Refusal, policy_deletion
from agent.hub.rules.policies import merge, policy_errors
from agent.hub.store import tables as t
from agent.hub.store.records import Row

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


async def _workers_using(conn: AsyncConnection, policy_id: int) -> int:
    query = sa.select(sa.func.count()).select_from(t.workers)
    return int(
        (await conn.execute(query.where(t.workers.c.machine_policy_id == policy_id))).scalar_one()
    )


async def _deletion(conn: AsyncConnection, row: Row) -> Refusal | None:
    """The default policy, or one that workers still follow, stays."""
    return policy_deletion(row["name"], row["is_default"], await _workers_using(conn, row["id"]))


POLICIES = Document(
    table=t.machine_policies,
    kind=ids.MACHINE_POLICY,
    label="machine policy",
    route="machinepolicies",
    item_type="MachinePolicy",
    resource=policy_resource,
    values=_policy_values,
    deletion=_deletion,
    changed="policies",  # the scheduler follows each policy's interval
)


def add_routes(routes: Routes) -> None:
    routes.get("/machinepolicies/template", template)
    add_document_routes(routes, POLICIES)
