"""The root document and spaces: what Octopus's clients read first to find their way."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from agent.hub import ids
from agent.hub.api.collections import respond_all, respond_page
from agent.hub.api.context import context_of
from agent.hub.api.errors import not_found
from agent.hub.api.routes import Routes
from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all

API_VERSION = "3.0.0"

# the collections a client finds from the root document (space-scoped ones with a
# {spaceId} form as well, as Octopus's root lists them)
COLLECTIONS = {
    "Spaces": "/api/spaces{/id}{?skip,take,ids,partialName}",
    "Workers": "/api/workers{/id}{?skip,take,name,partialName,ids,workerPoolIds,healthStatuses,"
    "commStyles,thumbprint,isDisabled}",
    "WorkerPools": "/api/workerpools{/id}{?skip,take,ids,partialName}",
    "WorkerPoolsSummary": "/api/workerpools/summary",
    "MachinePolicies": "/api/machinepolicies{/id}{?skip,take,ids,partialName}",
    "MachinePolicyTemplate": "/api/machinepolicies/template",
    "DiscoverWorker": "/api/workers/discover{?host,port,type}",
    "Tasks": "/api/tasks{/id}{?skip,take,ids,states,name}",
    "Events": "/api/events{/id}{?skip,take,ids}",
}


async def root(request: web.Request) -> web.Response:
    context = context_of(request)
    links = {"Self": "/api", **COLLECTIONS}
    return web.json_response(
        {
            "Application": "Tentacle Hub",
            "Version": context.version,
            "ApiVersion": API_VERSION,
            "InstallationId": context.installation_id,
            "IsEarlyAccessProgram": False,
            "HasLongTermSupport": False,
            # ours: where this node's polling port is, so that register-worker need not guess
            "PollingPort": context.polling_port or None,
            # ours: whether this node runs steps of pools without workers itself
            "BuiltinWorkerEnabled": context.builtin_worker,
            "Links": links,
        }
    )


def space_resource(row: Row) -> dict[str, Any]:
    space_id = ids.format_id(ids.SPACE, row["id"])
    return {
        "Id": space_id,
        "Name": row["name"],
        "Description": row["description"],
        "IsDefault": row["is_default"],
        "TaskQueueStopped": False,
        "SpaceManagersTeams": [],
        "SpaceManagersTeamMembers": [],
        "LastModifiedOn": row["modified_on"].isoformat(),
        "LastModifiedBy": row["modified_by"],
        "Links": {"Self": f"/api/spaces/{space_id}", "Web": f"/app#/{space_id}"},
    }


async def _spaces(request: web.Request) -> list[dict[str, Any]]:
    async with context_of(request).store.connect() as conn:
        rows = await fetch_all(conn, sa.select(t.spaces).order_by(t.spaces.c.id))
    return [space_resource(row) for row in rows]


async def list_spaces(request: web.Request) -> web.Response:
    return respond_page(request, "Space", "/api/spaces", await _spaces(request))


async def all_spaces(request: web.Request) -> web.Response:
    return respond_all(request, await _spaces(request))


async def get_space(request: web.Request) -> web.Response:
    wanted = request.match_info["id"]
    for space in await _spaces(request):
        if space["Id"].lower() == wanted.lower():
            return web.json_response(space)
    raise not_found(f"there is no space {wanted}")


async def hub_certificate(request: web.Request) -> web.Response:
    """The hub's own certificate, which workers trust (Octopus: certificate-global).

    ``CertificatePem`` is ours: registration needs the whole certificate, not only
    its thumbprint, because a listening agent trusts certificates.
    """
    context = context_of(request)
    return web.json_response(
        {
            "Id": "certificate-global",
            "Name": "Tentacle Hub",
            "Thumbprint": context.thumbprint,
            "CertificatePem": context.certificate_pem,
            "Links": {"Self": "/api/certificates/certificate-global"},
        }
    )


def add_routes(routes: Routes) -> None:
    routes.get("/certificates/certificate-global", hub_certificate, spaced=False)
    routes.get("", root, spaced=False)
    routes.get("/", root, spaced=False)
    routes.get("/spaces", list_spaces, spaced=False)
    routes.get("/spaces/all", all_spaces, spaced=False)
    routes.get("/spaces/{id}", get_space, spaced=False)
