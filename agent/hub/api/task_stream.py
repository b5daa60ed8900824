"""``GET /api/tasks/{id}/details/stream``: a task's details as server-sent events.

The same documents as ``/details?since=N``, pushed instead of polled: one at once,
then one whenever the task changes (a log line, a step's status, its state), each
carrying only the log after the previous one. An event is ``event: details``,
``id:`` the document's ``NextLogCursor`` and ``data:`` the document as one line
of JSON; a client that lost the stream asks again with ``since=`` (or the
``Last-Event-ID`` header) that id and misses nothing. Once the task is completed
and its whole log sent comes ``event: end`` and the stream closes. A comment line
every ``KEEPALIVE`` seconds of quiet keeps proxies from closing it, and the answer's
``X-Keepalive-Seconds`` header says how often that is: a follower that hears
nothing for about twice as long knows the connection froze (a laptop's sleep, a
NAT that forgot it) and asks again with its last id.

Changes are heard from this node (agent.hub.changes) and, for another node's
tasks, by reading the store again every ``RECHECK`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from agent.hub import ids
from agent.hub.api.context import context_of
from agent.hub.api.routes import Routes, space_of
from agent.hub.api.tasks import details_document, log_cursor
from agent.hub.changes import RECHECK

KEEPALIVE = 15.0  # seconds of quiet before a comment line
KEEPALIVE_HEADER = "X-Keepalive-Seconds"
HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # a reverse proxy in front passes each event on at once
}


def event(name: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    """One server-sent event (its data one line: JSON escapes every newline)."""
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def signature(document: dict[str, Any]) -> tuple[Any, ...]:
    """What a follower has not seen yet if it differs: the log cursor, the task's
    state and each step's status, end and output variables."""
    [root] = document["ActivityLogs"]
    steps = tuple(
        (step["Id"], step["Status"], step["Ended"], len(step.get("OutputVariables", [])))
        for step in root["Children"]
    )
    return (document["NextLogCursor"], document["Task"]["State"], root["Status"], steps)


def first_cursor(request: web.Request) -> int:
    if request.query.get("since"):
        return log_cursor(request.query["since"], "since")
    return log_cursor(request.headers.get("Last-Event-ID"), "Last-Event-ID")


async def stream_details(request: web.Request) -> web.StreamResponse:
    cursor = first_cursor(request)
    await space_of(request)  # first: details_document must not take a 2nd connection
    context = context_of(request)
    number = ids.try_parse_id(ids.SERVER_TASK, request.match_info["id"]) or 0
    document = await details_document(request, cursor)  # a 404 is still JSON, not a stream
    # read when the stream starts, so a test may make it shorter
    response = web.StreamResponse(headers={**HEADERS, KEEPALIVE_HEADER: f"{KEEPALIVE:g}"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    sent: tuple[Any, ...] | None = None
    wrote = loop.time()
    with contextlib.suppress(ConnectionError):  # the follower went away
        while True:
            with context.task_changes.watching(number) as changed:  # before the read
                if sent is not None:
                    document = await details_document(request, cursor)
                if signature(document) != sent:
                    cursor = document["NextLogCursor"]
                    await response.write(event("details", document, cursor))
                    sent, wrote = signature(document), loop.time()
                if document["HasMoreLogs"]:
                    continue  # the next page at once
                if document["Task"]["IsCompleted"]:
                    await response.write(event("end", {}))
                    break
                if context.task_changes.closed:  # the hub stops: the follower comes back
                    break
                # woken in time for the keepalive: the follower's watchdog counts on it
                quiet = max(0.0, KEEPALIVE - (loop.time() - wrote))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(RECHECK, quiet)):
                        await changed.wait()
            if loop.time() - wrote >= KEEPALIVE:
                await response.write(b": keepalive\n\n")
                wrote = loop.time()
    return response


def add_routes(routes: Routes) -> None:
    routes.get("/tasks/{id:ServerTasks-[0-9]+}/details/stream", stream_details)
