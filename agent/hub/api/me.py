"""/api/users/me: who the API key is and what it may do.

The hub's callers are API keys, not people: the key's name is its user name, and
``Permission`` (ReadOnly or ConfigureServer) with ``CanChange`` tells a client
such as the web page whether to offer actions at all; the hub refuses them
anyway (403) whatever a client offers.
"""

from __future__ import annotations

from aiohttp import web

from agent.hub.api.context import caller_of
from agent.hub.api.routes import Routes


async def me(request: web.Request) -> web.Response:
    caller = caller_of(request)
    return web.json_response(
        {
            "Id": f"ApiKeys-{caller.key_id}",
            "Username": caller.name,
            "DisplayName": caller.name,
            "IsService": True,
            "IsActive": True,
            "Permission": caller.permission.value,
            "CanChange": caller.permission.allows_changes(),
            "Links": {"Self": "/api/users/me"},
        }
    )


def add_routes(routes: Routes) -> None:
    routes.get("/users/me", me, spaced=False)
