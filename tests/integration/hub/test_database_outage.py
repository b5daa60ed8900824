"""The hub through a database outage: requests fail while it is away, and the task
queue carries on when it is back, without a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers.eventually import eventually
from tests.helpers.hub import running_hub
from tests.helpers.postgres import PostgresServer, fresh_database


async def test_tasks_run_again_once_the_database_is_back(tmp_path: Path) -> None:
    server = await asyncio.to_thread(PostgresServer().start)  # its own: this test stops it
    try:
        url = await fresh_database(server, "outage")
        async with running_hub(tmp_path, url) as hub:
            runner = hub.server.tasks
            assert runner is not None
            await asyncio.to_thread(server.pause)
            errors = runner.queue_errors
            runner.wake()
            await eventually(lambda: runner.queue_errors > errors, "the runner met the outage")
            status, _ = await hub.api.request("GET", "/api/tasks")
            assert status == 503  # the database is away, said so; the hub stays up
            await asyncio.to_thread(server.resume)

            async def submitted() -> str | None:
                status, task = await hub.api.request("POST", "/api/tasks", json={"Name": "Health"})
                return str(task["Id"]) if status == 201 else None

            task_id = await eventually(submitted, "the API works again")

            async def finished() -> bool:
                return bool((await hub.api.get(f"/api/tasks/{task_id}"))["IsCompleted"])

            await eventually(finished, "the task ran after the outage")
            assert (await hub.api.get(f"/api/tasks/{task_id}"))["State"] == "Success"
    finally:
        await asyncio.to_thread(server.stop)
