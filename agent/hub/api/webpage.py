"""Serving the web page (agent.hub.web) at ``/app/``: open files, no API key needed.

The page holds no data of its own; everything it shows comes from /api with
the key the person signed in with. What it is served with keeps it to itself:
a content security policy that allows only this hub's own scripts, styles and
API (no inline script, no other origin, not framed), no referrer, no sniffing.
"""

from __future__ import annotations

import mimetypes

from aiohttp import web

from agent.hub.api.errors import not_found
from agent.hub.web import STATIC

PREFIX = "/app/"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # the page changes with the hub's version: a browser asks again (304 when unchanged)
    "Cache-Control": "no-cache",
}
TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


def static_file(name: str) -> web.FileResponse:
    """The page's file ``name`` (a path under static/), or 404: nothing outside
    static/ is served, whatever the name's dots, slashes or links."""
    root = STATIC.resolve()
    try:
        path = (root / (name or "index.html")).resolve()
        found = path.is_relative_to(root) and path.is_file()
    except (ValueError, OSError):  # a NUL byte, a name too long, a loop of links
        found = False
    if not found:
        raise not_found(f"the web page has no file {name!r}")
    kind = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/binary"
    return web.FileResponse(path, headers={**SECURITY_HEADERS, "Content-Type": kind})


async def page_file(request: web.Request) -> web.FileResponse:
    return static_file(request.match_info.get("name", ""))


async def to_page(request: web.Request) -> web.Response:
    raise web.HTTPFound(PREFIX)


async def favicon(request: web.Request) -> web.FileResponse:
    """The browser asks for /favicon.ico whatever the page links: the page's icon."""
    return static_file("icon.svg")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", to_page)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/app", to_page)
    app.router.add_get(PREFIX, page_file)
    app.router.add_get(PREFIX + "{name:.+}", page_file)
