"""Once the node stops, its API serves no new request.

aiohttp's runner closes, as it is cleaned up, the connections it knows of. It learns
of a TLS connection only when the connection's handshake is over, so one still in its
handshake then escapes it: it finishes later and is served by a node that has
stopped, for as long as its client keeps it (a follower of a task never saw its hub
go). Python 3.11's asyncio.Server cannot close such a connection either (3.13 added
``close_clients``). So the outermost middleware drops the connection of any request
that arrives once the node has begun to stop, sending no response: to its client,
as to every other, the hub is simply not there (aiohttp's own replies before the
middlewares, a ``100 Continue`` or a 400 for a request it cannot parse, still go).
The access log shows such a request as a 503, though nothing was sent. Requests
already in their handlers finish. A late connection that sends no request is left
to aiohttp's keep-alive timeout; a stopping process exits long before.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from agent.hub.api.errors import Handler


class Serving:
    """Whether the node's API takes new requests: yes until ``stop()``, then never."""

    def __init__(self) -> None:
        self.open = True

    def stop(self) -> None:
        self.open = False


def stopping_middleware(serving: Serving) -> Middleware:
    """The middleware that closes a request's connection once ``serving`` has stopped."""

    @web.middleware
    async def refuse_once_stopped(request: web.Request, handler: Handler) -> web.StreamResponse:
        if serving.open:
            return await handler(request)
        if request.transport is not None:  # None: its client went already
            request.transport.abort()  # no TLS close either: the node is not there
        raise web.HTTPServiceUnavailable(text="the hub node has stopped")  # never sent

    return refuse_once_stopped
