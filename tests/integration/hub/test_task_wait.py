"""GET /api/tasks/{id}/state?wait=S: a long poll that answers when the task changes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers.eventually import eventually
from tests.helpers.hub import RunningHub
from tests.integration.hub.tasks_helpers import (
    add_worker,
    counting_script,
    started,
    state_of,
    submit,
)


async def test_a_waiting_state_request_answers_when_the_task_ends(
    hub: RunningHub, tmp_path: Path
) -> None:
    """Asked while the task runs, with a wait far longer than the test, the answer is
    its end (before: the running state at once)."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        task = await submit(
            hub.api, ScriptBody=counting_script(shared), Syntax="bash", ScriptArguments=["a"]
        )
        await eventually(lambda: started(shared) == ["a"], "the script started")
        assert await state_of(hub.api, task) == "Executing"
        path = f"/api/tasks/{task['Id']}/state"
        waiting = asyncio.ensure_future(hub.api.get(path, params={"wait": "60"}))
        (shared / "release-a").touch()
        async with asyncio.timeout(50):  # a deadline for a hung request, not a measure
            state = await waiting
        assert (state["State"], state["IsCompleted"]) == ("Success", True)
        # completed: answered at once, whatever the wait
        again = await hub.api.get(path, params={"wait": "60"})
        assert again["State"] == "Success"
    finally:
        (shared / "release-all").touch()
        agent.stop()


@pytest.mark.parametrize("wait", ["soon", "-1", "61", "nan"])
async def test_a_bad_wait_is_400_naming_it(hub: RunningHub, wait: str) -> None:
    task = await submit(hub.api, ScriptBody="echo hi", WorkerPoolId="WorkerPools-1")
    status, body = await hub.api.request(
        "GET", f"/api/tasks/{task['Id']}/state", params={"wait": wait}
    )
    assert status == 400, body
    assert f"wait must be a number of seconds from 0 to 60, not {wait!r}" in str(body)
