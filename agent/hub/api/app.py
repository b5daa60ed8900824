"""The hub's aiohttp application: middlewares (stopping, errors, limits, then auth) and
every route."""

from __future__ import annotations

from aiohttp import web

from agent.hub.api import (
    accounts,
    artifacts,
    discover,
    events,
    me,
    nodes,
    packages,
    policies,
    pools,
    spaces,
    task_stream,
    tasks,
    webpage,
    workers,
)
from agent.hub.api.auth import auth_middleware
from agent.hub.api.context import CONTEXT, HubContext
from agent.hub.api.errors import errors_middleware
from agent.hub.api.limits import limits_middleware
from agent.hub.api.routes import Routes
from agent.hub.api.stopping import stopping_middleware

# the fixed routes under /workers first: discover, then workers' own
RESOURCES = [
    spaces,
    discover,
    workers,
    pools,
    policies,
    tasks,
    events,
    accounts,
    packages,
    artifacts,
    me,
    nodes,
    task_stream,
]


def build_app(context: HubContext) -> web.Application:
    app = web.Application(
        middlewares=[
            stopping_middleware(context.serving),
            errors_middleware,
            limits_middleware,
            auth_middleware,
        ]
    )
    app[CONTEXT] = context
    routes = Routes()
    for resource in RESOURCES:
        resource.add_routes(routes)
    routes.install(app)
    webpage.add_routes(app)
    return app
