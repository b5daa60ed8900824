"""What the web page reads that no other client needed: who the key is, the task
counts and who queued each task, the steps running on each worker, the nodes' task
caps, and a task's details pushed as server-sent events."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from agent.hub.keys import Permission
from tests.helpers.eventually import eventually
from tests.helpers.hub import HubApi, RunningHub
from tests.helpers.sse import Event, events, log_lines
from tests.integration.hub.tasks_helpers import add_worker, finished, submit

# prints a line, waits for the test's file, prints another
WAITING = """echo first line
i=0; until [ -e {release} ]; do i=$((i+1)); [ $i -gt 3000 ] && exit 9; sleep 0.05; done
echo second line
"""


async def test_users_me_says_who_the_key_is_and_whether_it_may_change_anything(
    hub: RunningHub,
) -> None:
    reader = await hub.key("watcher", Permission.READ_ONLY)
    status, me = await hub.api.request("GET", "/api/users/me", key=reader)
    assert status == 200, me
    assert (me["Username"], me["Permission"], me["CanChange"]) == ("watcher", "ReadOnly", False)
    assert me["Id"].startswith("ApiKeys-")
    admin = await hub.api.get("/api/users/me")
    assert (admin["Permission"], admin["CanChange"]) == ("ConfigureServer", True)
    status, body = await hub.api.request(
        "GET", "/api/users/me", key="API-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    )
    assert status == 401
    assert body["ErrorMessage"] == "the API key is not valid for this hub"


async def _stream(api: HubApi, task_id: str, **headers: str) -> aiohttp.ClientResponse:
    response = await api.session.get(
        f"{api.url}/api/tasks/{task_id}/details/stream",
        headers={"X-Octopus-ApiKey": api.key or "", **headers},
    )
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response


async def _until(stream: aiohttp.ClientResponse, wanted: str) -> tuple[list[Event], list[str]]:
    """Events (and their log lines) read until one holds the line ``wanted``."""
    seen: list[Event] = []
    lines: list[str] = []
    async with asyncio.timeout(60):  # a bound for a hung stream, not a measure
        async for event in events(stream):
            seen.append(event)
            if event.name == "details":
                lines += log_lines(event.data)
                if wanted in lines:
                    return seen, lines
    raise AssertionError(f"the stream ended before {wanted!r}: {lines}")


async def test_a_running_task_s_lines_are_pushed_as_they_come_and_counted_everywhere(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    release = tmp_path / "release"
    try:
        operator = HubApi(hub.api.url, hub.api.session, await hub.key("ops"))
        task = await submit(operator, ScriptBody=WAITING.format(release=release), Syntax="Bash")
        assert task["QueuedBy"] == "ops"
        stream = await _stream(hub.api, task["Id"])
        # the first line arrives while the script still waits: pushed, not read at the end
        seen, lines = await _until(stream, "first line")
        assert "second line" not in lines
        cursor = seen[-1].id
        assert cursor == str(seen[-1].data["NextLogCursor"])

        # meanwhile: the step counts on its worker, the task on its node and in the counts
        [worker] = await hub.api.get("/api/workers/all")
        assert worker["RunningSteps"] == 1
        assert (await hub.api.get(f"/api/workers/{worker['Id']}"))["RunningSteps"] == 1
        [node] = (await hub.api.get("/api/octopusservernodes"))["Items"]
        assert (node["MaxConcurrentTasks"], node["RunningTasks"], node["IsOffline"]) == (
            5,
            1,
            False,
        )
        counts = (await hub.api.get("/api/tasks"))["TotalCounts"]
        assert counts["Executing"] == 1
        assert set(counts) >= {"Queued", "Executing", "Success", "Failed", "Canceled"}

        # a follower that lost the stream comes back from its last id: no line twice
        again = await _stream(hub.api, task["Id"], **{"Last-Event-ID": cursor or ""})
        release.touch()
        _, rest = await _until(again, "second line")
        assert "first line" not in rest
        async with asyncio.timeout(60):
            tail = [event.name async for event in events(again)]
        assert tail[-1] == "end"
        stream.close()
        done = await finished(hub.api, task)
        assert done["State"] == "Success"
        [worker] = await hub.api.get("/api/workers/all")
        assert worker["RunningSteps"] == 0
        every = await hub.api.get("/api/tasks/all")  # the health checks too
        counts = (await hub.api.get("/api/tasks"))["TotalCounts"]
        assert counts["Executing"] == 0
        assert counts["Success"] == sum(task["State"] == "Success" for task in every) >= 2
    finally:
        release.touch()
        agent.stop()


async def test_a_finished_task_s_stream_is_its_whole_log_then_its_end(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    try:
        task = await finished(hub.api, await submit(hub.api, ScriptBody="echo all done"))
        stream = await _stream(hub.api, task["Id"])
        async with asyncio.timeout(60):
            seen = [event async for event in events(stream)]
        assert [event.name for event in seen] == ["details", "end"]
        assert "all done" in log_lines(seen[0].data)
        assert seen[0].data["Task"]["State"] == "Success"
        [step] = seen[0].data["ActivityLogs"][0]["Children"]
        assert (step["Worker"], step["ExitCode"]) == ("web-1", 0)
        # the health check queued when the worker was added names the key that added it
        checks = await hub.api.get("/api/tasks/all?name=Health")  # add_worker may ask again
        assert {check["QueuedBy"] for check in checks} == {"admin"}  # running_hub's key
    finally:
        agent.stop()


async def test_a_stream_of_an_unknown_task_or_with_a_bad_cursor_is_a_clear_error(
    hub: RunningHub,
) -> None:
    status, body = await hub.api.request("GET", "/api/tasks/ServerTasks-999/details/stream")
    assert status == 404
    assert body["ErrorMessage"] == "there is no task 'ServerTasks-999'"
    task = await submit(hub.api, ScriptBody="echo hi", WorkerPoolId="WorkerPools-1")
    path = f"/api/tasks/{task['Id']}/details/stream"
    status, body = await hub.api.request("GET", path, headers={"Last-Event-ID": "yesterday"})
    assert status == 400
    assert "Last-Event-ID must be a log cursor" in body["ErrorMessage"]
    status, body = await hub.api.request("GET", path, params={"since": "-1"})
    assert status == 400
    assert "since must be a log cursor" in body["ErrorMessage"]
    status, body = await hub.api.request("GET", path, key="")
    assert status == 401


async def test_a_hub_stopping_ends_its_streams(hub: RunningHub, tmp_path: Path) -> None:
    """A follower of a task that never ends is let go when the hub stops (else the
    stop would wait on it), and can come back."""
    task = await submit(hub.api, ScriptBody="echo hi", WorkerPoolId="WorkerPools-1")
    stream = await _stream(hub.api, task["Id"])
    reading = asyncio.ensure_future(_all(stream))
    await eventually(lambda: stream.content.total_bytes > 0, "the first event was sent")
    await hub.server.stop()
    async with asyncio.timeout(60):
        names = await reading
    assert names[0] == "details"
    assert "end" not in names


async def _all(stream: aiohttp.ClientResponse) -> list[str]:
    try:
        return [event.name async for event in events(stream)]
    except aiohttp.ClientPayloadError:
        return ["(cut)"]
