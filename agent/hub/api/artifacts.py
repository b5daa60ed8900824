"""/api/artifacts: files a task's steps reported (``new_octopusartifact``), fetched from
their workers into the hub (``<home>/Artifacts/<id>``).

``GET /api/artifacts?regarding=ServerTasks-N`` lists a task's (Octopus's filter),
``/api/artifacts/{id}`` is one, ``/api/artifacts/{id}/content`` its bytes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from agent.hub import ids
from agent.hub.api.collections import paging, respond_counted
from agent.hub.api.common import iso
from agent.hub.api.context import context_of
from agent.hub.api.errors import ApiError, bad_request, not_found
from agent.hub.api.routes import Routes, collection_path, space_of, space_path
from agent.hub.packages import ArtifactFiles
from agent.hub.store import packages as store_packages
from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all

ARTIFACT = "Artifacts"
FILES = "artifacts"  # HubContext.extras: the ArtifactFiles


def files_of(request: web.Request) -> ArtifactFiles:
    files = context_of(request).extras.get(FILES)
    if not isinstance(files, ArtifactFiles):
        raise ApiError(503, "this hub node keeps no artifacts")
    return files


def artifact_resource(row: Row, source: str) -> dict[str, Any]:
    artifact_id = ids.format_id(ARTIFACT, row["id"])
    base = space_path(row["space_id"], f"artifacts/{artifact_id}")
    task_id = ids.format_id(ids.SERVER_TASK, row["task_id"])
    return {
        "Id": artifact_id,
        "SpaceId": ids.format_id(ids.SPACE, row["space_id"]),
        "Filename": row["filename"],
        "Source": source,
        "ServerTaskId": task_id,
        "Created": iso(row["created"]),
        "LogCorrelationId": None,
        "Length": row["size"],
        "Sha256": row["sha256"],
        "RelatedDocumentIds": [task_id],
        "Links": {"Self": base, "Content": f"{base}/content"},
    }


async def _sources(request: web.Request, rows: list[Row]) -> dict[int, str]:
    """The worker name of each artifact's step."""
    steps = {row["step_id"] for row in rows if row["step_id"] is not None}
    if not steps:
        return {}
    query = sa.select(t.task_steps.c.id, t.task_steps.c.worker_name).where(
        t.task_steps.c.id.in_(steps)
    )
    async with context_of(request).store.connect() as conn:
        return {row["id"]: row["worker_name"] for row in await fetch_all(conn, query)}


async def list_artifacts(request: web.Request) -> web.Response:
    space = await space_of(request)
    page = paging(request)
    regarding = request.query.get("regarding")
    task_id = None
    if regarding:
        task_id = ids.try_parse_id(ids.SERVER_TASK, regarding)
        if task_id is None:
            raise bad_request(
                f"regarding must be a task id (ServerTasks-N), not {regarding[:60]!r}"
            )
    async with context_of(request).store.connect() as conn:
        rows = await store_packages.artifacts_of(conn, space, task_id)
    sources = await _sources(request, rows)
    items = [artifact_resource(row, sources.get(row["step_id"], "")) for row in rows]
    return respond_counted(
        request,
        "Artifact",
        collection_path(request, "artifacts"),
        items[page.skip : page.skip + page.take],
        len(items),
        page,
        ("skip", "take", "regarding"),
    )


async def _artifact_or_404(request: web.Request) -> Row:
    space = await space_of(request)
    text = request.match_info["id"]
    number = ids.try_parse_id(ARTIFACT, text)
    async with context_of(request).store.connect() as conn:
        row = None if number is None else await store_packages.artifact(conn, number)
    if row is None or row["space_id"] != space:
        raise not_found(f"there is no artifact {text!r} in this space")
    return row


async def get_artifact(request: web.Request) -> web.Response:
    row = await _artifact_or_404(request)
    sources = await _sources(request, [row])
    return web.json_response(artifact_resource(row, sources.get(row["step_id"], "")))


async def get_content(request: web.Request) -> web.StreamResponse:
    row = await _artifact_or_404(request)
    path = files_of(request).path(row["id"])
    if not path.is_file():
        raise not_found(f"the content of Artifacts-{row['id']} is missing from the hub's home")
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in row["filename"]) or "artifact"
    return web.FileResponse(
        path,
        headers={
            "Content-Disposition": f'attachment; filename="{safe}"',
            "Content-Type": "application/octet-stream",
        },
    )


def add_routes(routes: Routes) -> None:
    routes.get("/artifacts", list_artifacts)
    routes.get("/artifacts/{id:Artifacts-[0-9]+}", get_artifact)
    routes.get("/artifacts/{id:Artifacts-[0-9]+}/content", get_content)
