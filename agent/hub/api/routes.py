"""Registering a route in both of Octopus's forms: ``/api/x`` and ``/api/{spaceId}/x``."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from agent.hub import ids
from agent.hub.api.context import SPACE, context_of
from agent.hub.api.errors import Handler, not_found
from agent.hub.store import tables as t
from agent.hub.store.records import default_space_id, fetch_one

SPACED = "/api/{space_id:Spaces-[0-9]+}"


class Routes:
    """A table of routes; ``add`` registers each under /api and under /api/{spaceId}."""

    def __init__(self) -> None:
        self.table: list[tuple[str, str, Handler]] = []

    def add(self, method: str, path: str, handler: Handler, *, spaced: bool = True) -> None:
        self.table.append((method, "/api" + path, handler))
        if spaced:
            self.table.append((method, SPACED + path, handler))

    def get(self, path: str, handler: Handler, *, spaced: bool = True) -> None:
        self.add("GET", path, handler, spaced=spaced)

    def post(self, path: str, handler: Handler) -> None:
        self.add("POST", path, handler)

    def put(self, path: str, handler: Handler) -> None:
        self.add("PUT", path, handler)

    def delete(self, path: str, handler: Handler) -> None:
        self.add("DELETE", path, handler)

    def install(self, app: web.Application) -> None:
        for method, path, handler in self.table:
            app.router.add_route(method, path, handler)


async def space_of(request: web.Request) -> int:
    """The space a request is about: the one its route names (404 if there is no
    such space), else the default space."""
    cached = request.get(SPACE)
    if isinstance(cached, int):
        return cached
    context = context_of(request)
    text = request.match_info.get("space_id")
    if text is None and context.default_space:
        request[SPACE] = context.default_space
        return context.default_space
    async with context.store.connect() as conn:
        if text is None:
            space = await default_space_id(conn)
        else:
            number = ids.parse_id(ids.SPACE, text)
            row = await fetch_one(conn, sa.select(t.spaces.c.id).where(t.spaces.c.id == number))
            if row is None:
                raise not_found(f"there is no space {text}")
            space = number
    request[SPACE] = space
    return space


def collection_path(request: web.Request, name: str) -> str:
    """The collection's route as the caller used it, for links."""
    text = request.match_info.get("space_id")
    return f"/api/{text}/{name}" if text else f"/api/{name}"


def space_path(space_id: int, name: str) -> str:
    return f"/api/{ids.format_id(ids.SPACE, space_id)}/{name}"
