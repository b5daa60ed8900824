"""/api/octopusservernodes: the hub nodes serving this database, with their task caps.

One per node holding a lease (agent.hub.lease): ``MaxConcurrentTasks`` is its
TaskCap, ``RunningTasks`` how many tasks it executes now, ``IsOffline`` whether
its lease has expired (it died and no node has taken over yet). Together they say
how busy the hub is against what it can run at once.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from agent.hub.api.collections import respond_page
from agent.hub.api.common import iso
from agent.hub.api.context import context_of
from agent.hub.api.routes import Routes
from agent.hub.rules.lease import LeaseState, lease_state
from agent.hub.store import tables as t
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import Row, fetch_all

RUNNING = (store_tasks.EXECUTING, store_tasks.CANCELLING)


def node_resource(row: Row, running: int, offline: bool) -> dict[str, Any]:
    return {
        "Id": row["name"],
        "Name": row["name"],
        "MaxConcurrentTasks": row["task_cap"],
        "RunningTasks": running,
        "IsInMaintenanceMode": False,
        "IsOffline": offline,
        "LastSeen": iso(row["last_seen"]),
        "Links": {"Self": f"/api/octopusservernodes/{row['name']}"},
    }


async def list_nodes(request: web.Request) -> web.Response:
    context = context_of(request)
    tasks = t.server_tasks
    busy = (
        sa.select(tasks.c.server_node, sa.func.count())
        .where(tasks.c.state.in_(RUNNING))
        .group_by(tasks.c.server_node)
    )
    async with context.store.connect() as conn:
        rows = await fetch_all(conn, sa.select(t.hub_nodes).order_by(t.hub_nodes.c.name))
        running = {node: int(number) for node, number in (await conn.execute(busy)).all()}
    now = context.now()
    items = [
        node_resource(
            row,
            running.get(row["name"], 0),
            lease_state(row, now, row["lease_seconds"]) is LeaseState.EXPIRED,
        )
        for row in rows
    ]
    return respond_page(request, "OctopusServerNode", "/api/octopusservernodes", items)


def add_routes(routes: Routes) -> None:
    routes.get("/octopusservernodes", list_nodes, spaced=False)
