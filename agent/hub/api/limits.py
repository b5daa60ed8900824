"""The request line and header limits, answered in Octopus's error shape.

aiohttp's parser refuses a URL or a header longer than 8190 bytes itself, with a
plain-text 400 that no Octopus client can read. Its error page is made by its
connection handler, which has no public hook (replacing it means overriding
private parts of aiohttp's runner and server), so instead the hub's runner lets
the parser take up to PARSER_LIMIT bytes, and this middleware, public API only,
enforces the usual limits with a JSON 414 or 431 naming the limit. A request
beyond PARSER_LIMIT still gets aiohttp's own 400: a client that sends that much
is not an API client.
"""

from __future__ import annotations

from aiohttp import web

from agent.hub.api.errors import ApiError, Handler

URL_LIMIT = 8190  # bytes of the request target (path and query), aiohttp's own default
HEADER_LIMIT = 8190  # bytes of one header's name and value, likewise
PARSER_LIMIT = 32768  # what the parser takes, so that this middleware sees the request


def limit_error(url_size: int, headers: list[tuple[bytes, bytes]]) -> ApiError | None:
    """The 414 or 431 for a request whose URL or one of whose headers is too long."""
    if url_size > URL_LIMIT:
        return ApiError(
            414,
            f"the request line is too long: its URL has {url_size} bytes, "
            f"the limit is {URL_LIMIT}; send long lists in several requests",
        )
    for name, value in headers:
        if len(name) + len(value) > HEADER_LIMIT:
            shown = name.decode("latin-1")[:60]
            return ApiError(
                431,
                f"the request header {shown!r} is too long: {len(name) + len(value)} bytes, "
                f"the limit is {HEADER_LIMIT}",
            )
    return None


@web.middleware
async def limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    error = limit_error(len(request.raw_path.encode("utf-8")), list(request.raw_headers))
    if error is not None:
        raise error
    return await handler(request)
