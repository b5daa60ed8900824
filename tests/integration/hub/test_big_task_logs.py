"""A task with a big log: details answers bounded pages a follower reads on by
cursor, /raw streams, and the hub answers other requests meanwhile. The lines are
inserted straight into the store (a script printing them would only be slower)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent.hub.api.context import utc_now
from agent.hub.api.tasks import LOG_PAGE
from agent.hub.store import open_store, tables
from agent.hub.store import steps as store_steps
from tests.helpers.hub import RunningHub
from tests.integration.hub.tasks_helpers import add_worker, finished, submit

BIG = 50_000


async def _big_task(hub: RunningHub, tmp_path: Path) -> tuple[dict[str, Any], list[str]]:
    """A finished task whose step's log has BIG more lines (``big-<i>`` and 90 x's)."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    try:
        task = await submit(hub.api, ScriptBody="echo small")
        assert (await finished(hub.api, task))["State"] == "Success"
    finally:
        agent.stop()
    number = int(task["Id"].removeprefix("ServerTasks-"))
    texts = [f"big-{i} " + "x" * 90 for i in range(BIG)]
    store = await open_store(hub.home.settings.database)
    try:
        async with store.transaction() as conn:
            [step] = await store_steps.steps_of(conn, number)
            now = utc_now()
            rows = [
                {"task_id": number, "activity_id": step["activity_id"], "category": "Info",
                 "occurred": now, "message": text}
                for text in texts
            ]  # fmt: skip
            await conn.execute(sa.insert(tables.task_log), rows)
    finally:
        await store.close()
    return task, texts


def _elements(details: dict[str, Any]) -> list[dict[str, Any]]:
    root = details["ActivityLogs"][0]
    found = list(root["LogElements"])
    for child in root["Children"]:
        found += child["LogElements"]
    return sorted(found, key=lambda element: int(element["Id"]))


async def test_details_pages_a_big_log_and_raw_streams_it(hub: RunningHub, tmp_path: Path) -> None:
    task, texts = await _big_task(hub, tmp_path)
    url = f"/api/tasks/{task['Id']}/details"
    seen: list[dict[str, Any]] = []
    since, pages = 0, 0
    while True:
        pages += 1
        assert pages < 100, "details never said there was no more"
        details = await hub.api.get(url, params={"since": str(since)})
        page = _elements(details)
        assert len(page) <= LOG_PAGE
        assert details["PhysicalLogSize"] == sum(len(e["MessageText"]) + 1 for e in page)
        seen += page
        if not details["HasMoreLogs"]:
            break
        assert details["NextLogCursor"] == page[-1]["Id"]
        since = details["NextLogCursor"]
    assert pages > BIG // LOG_PAGE
    ids = [element["Id"] for element in seen]
    assert len(ids) == len(set(ids))  # each element once
    messages = [element["MessageText"] for element in seen]
    assert messages[-BIG:] == texts
    assert "small" in messages

    headers = {"X-Octopus-ApiKey": str(hub.api.key)}
    async with hub.api.session.get(
        f"{hub.api.url}/api/tasks/{task['Id']}/raw", headers=headers
    ) as raw:
        assert raw.status == 200
        assert "Content-Length" not in raw.headers  # streamed, not built whole
        first = await raw.content.readany()
        assert first
        # the hub answers others while the /raw is being read
        root = await hub.api.get("/api")
        assert "PollingPort" in root
        body = (first + await raw.read()).decode()
    lines = body.splitlines()
    assert [line.rsplit(": ", 1)[1] for line in lines[-BIG:]] == texts
    assert any(line.endswith(": small") for line in lines)
