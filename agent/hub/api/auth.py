"""Who is calling: an API key in ``X-Octopus-ApiKey`` (or ``Authorization: Bearer``).

Reading needs any key; changing anything needs ConfigureServer. A key in the
query string is refused (401) on every route, and masked in the logs (redact.py).
A key found in the store is remembered a few seconds (agent.hub.api.callers).
"""

from __future__ import annotations

from aiohttp import web

from agent.hub.api.context import CALLER, context_of
from agent.hub.api.errors import Handler, forbidden, unauthorized
from agent.hub.api.redact import is_key_parameter
from agent.hub.keys import key_hash, looks_like_key
from agent.hub.store.apikeys import caller_for

HEADER = "X-Octopus-ApiKey"
OPEN_PATHS = {"/api", "/api/"}  # the root document: clients read it to find the server
READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def presented_key(request: web.Request) -> str | None:
    if HEADER in request.headers:
        return request.headers[HEADER].strip()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # before the open paths: a key in the URL is refused on every route, the root too,
    # so that a client learns at once that it must move the key (the logs mask it)
    if any(is_key_parameter(name) for name in request.query):
        raise unauthorized(
            f"API keys are not accepted in the URL (they end up in logs): "
            f"send the key in the {HEADER} header"
        )
    if not request.path.startswith("/api") or request.path in OPEN_PATHS:
        return await handler(request)
    key = presented_key(request)
    if key is None:
        raise unauthorized(f"no API key: send one in the {HEADER} header")
    if not looks_like_key(key):
        raise unauthorized("that is not an API key (expected API- and at least 26 letters/digits)")
    context = context_of(request)
    hashed = key_hash(key)
    caller = context.callers.get(hashed)
    if caller is None:
        async with context.store.connect() as conn:
            caller = await caller_for(conn, key)
        if caller is not None:
            context.callers.put(hashed, caller)
    if caller is None:
        raise unauthorized("the API key is not valid for this hub")
    if request.method not in READ_METHODS and not caller.permission.allows_changes():
        raise forbidden(
            f"the API key {caller.name!r} is {caller.permission.value}: "
            "this request needs ConfigureServer"
        )
    request[CALLER] = caller
    return await handler(request)
