"""Health checks as server tasks, with real agents over real TLS: each status, the
task's log, the policies' clean-up, a check not blocked by FullIsolation, a restart."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent import __version__
from agent.client import ScriptRequest, execute_script
from agent.config.index import InstanceIndex
from agent.config.instances import open_instance
from agent.hub.server import HubServer
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually
from tests.helpers.hub import RunningHub, running_hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path) as running:
        yield running


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def register(hub: RunningHub, tentacle: TentacleCli, name: str, *extra: str) -> None:
    """The real register-worker for instance ``agent``, into the default pool."""
    await asyncio.to_thread(
        tentacle.ok,
        "register-worker",
        "--instance",
        "agent",
        "--server",
        hub.api.url,
        "--apikey",
        str(hub.api.key),
        "--server-thumbprint",
        hub.home.identity().thumbprint,
        "--workerpool",
        "Default Worker Pool",
        "--name",
        name,
        *extra,
    )


async def listening_worker(
    hub: RunningHub, tentacle: TentacleCli, *extra: str, name: str = "web-1"
) -> AgentProcess:
    """A real listening agent, registered with the real command, then started."""
    agent = AgentProcess(tentacle)
    port = free_port()
    agent.instance = agent.instance.save(agent.instance.config.with_settings(port=port))
    await register(hub, tentacle, name, "--publicHostName", "127.0.0.1", *extra)
    return agent.start()


async def finished_tasks(hub: RunningHub) -> list[dict[str, Any]]:
    tasks = await hub.api.get("/api/tasks/all")
    return [task for task in tasks if task["IsCompleted"]]


async def health_of(hub: RunningHub, name: str) -> str:
    [worker] = await hub.api.get(f"/api/workers/all?name={name}")
    return str(worker["HealthStatus"])


async def run_health_check(hub: RunningHub, **arguments: Any) -> dict[str, Any]:
    status, task = await hub.api.request(
        "POST", "/api/tasks", json={"Name": "Health", "Arguments": arguments}
    )
    assert status == 201, task

    async def done() -> bool:
        return bool((await hub.api.get(f"/api/tasks/{task['Id']}"))["IsCompleted"])

    await eventually(done, f"health task {task['Id']} finished")
    return await hub.api.get(f"/api/tasks/{task['Id']}")  # type: ignore[no-any-return]


async def test_a_new_worker_is_checked_at_once_and_turns_healthy(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    agent = await listening_worker(hub, tentacle)
    try:

        async def healthy() -> bool:
            return await health_of(hub, "web-1") == "Healthy"

        await eventually(healthy, "web-1 became Healthy")
        [worker] = await hub.api.get("/api/workers/all")
        assert worker["Status"] == "Online"
        assert worker["AgentVersion"] == __version__
        assert worker["OperatingSystem"].startswith("Linux")
        assert worker["FreeDiskSpaceMegabytes"] > 0
        connection = await hub.api.get(f"/api/workers/{worker['Id']}/connection")
        assert connection["Status"] == "Online"
        assert any("answered" in entry["MessageText"] for entry in connection["Logs"])

        # the check queued at registration ran before the agent started; the next one
        # (the policy's, for a worker not yet checked while up) found it healthy
        # the worker's record is written before its task's end (one batched writer)
        async def succeeded() -> list[dict[str, Any]]:
            return [t for t in await finished_tasks(hub) if t["State"] == "Success"]

        task = (await eventually(succeeded, "a health check of web-1 finished with Success"))[0]
        assert (task["Name"], task["FinishedSuccessfully"]) == ("Health", True)
        details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
        [root] = details["ActivityLogs"]
        [activity] = root["Children"]
        assert (activity["Name"], activity["Status"]) == ("Check web-1", "Success")
        assert any("Free disk space" in e["MessageText"] for e in activity["LogElements"])
        raw = await hub.api.session.get(
            f"{hub.api.url}/api/tasks/{task['Id']}/raw",
            headers={"X-Octopus-ApiKey": str(hub.api.key)},
        )
        assert "Check web-1" in await raw.text()
    finally:
        agent.stop()


async def test_a_stopped_agent_is_unavailable(hub: RunningHub, tentacle: TentacleCli) -> None:
    agent = await listening_worker(hub, tentacle)
    agent.stop()
    task = await run_health_check(hub, WorkerpoolId="WorkerPools-1")
    assert task["State"] == "Failed"
    assert "1 Unavailable" in task["ErrorMessage"]
    assert await health_of(hub, "web-1") == "Unavailable"
    [worker] = await hub.api.get("/api/workers/all")
    assert worker["Status"] == "Offline"
    assert worker["StatusSummary"].startswith("Unavailable:")


async def policy(hub: RunningHub, name: str, **settings: Any) -> str:
    template = await hub.api.get("/api/machinepolicies/template")
    for key, value in settings.items():
        if isinstance(value, dict):
            template[key] = {**template[key], **value}
        else:
            template[key] = value
    status, made = await hub.api.request(
        "POST", "/api/machinepolicies", json={**template, "Name": name}
    )
    assert status == 201, made
    return str(made["Id"])


async def test_a_failing_health_script_makes_the_worker_unhealthy(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    script = {"RunType": "Inline", "ScriptBody": "fail_healthcheck 'the disk is on fire'\n"}
    failing = await policy(
        hub, "Failing", MachineHealthCheckPolicy={"BashHealthCheckPolicy": script}
    )
    agent = await listening_worker(hub, tentacle, "--policy", failing)
    try:
        task = await run_health_check(hub)
        assert task["State"] == "Failed"
        assert await health_of(hub, "web-1") == "Unhealthy"
        [worker] = await hub.api.get("/api/workers/all")
        assert "the disk is on fire" in worker["StatusSummary"]
    finally:
        agent.stop()


async def test_low_disk_space_or_a_warning_gives_has_warnings(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    greedy = await policy(hub, "Greedy", FreeDiskSpaceWarningMegabytes=2**31 - 1)
    agent = await listening_worker(hub, tentacle, "--policy", greedy)
    try:
        task = await run_health_check(hub)
        assert (task["State"], task["HasWarningsOrErrors"]) == ("Success", True)
        [worker] = await hub.api.get("/api/workers/all")
        assert worker["HealthStatus"] == "HasWarnings"
        assert "under the policy's" in worker["StatusSummary"]
    finally:
        agent.stop()


async def test_an_unavailable_worker_is_deleted_when_its_policy_says_so(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    tidy = await policy(
        hub,
        "Tidy",
        MachineCleanupPolicy={
            "DeleteMachinesBehavior": "DeleteUnavailableMachines",
            "DeleteMachinesElapsedTimeSpan": "00:00:00",
        },
    )
    agent = await listening_worker(hub, tentacle, "--policy", tidy, name="gone")
    agent.stop()
    await run_health_check(hub)
    assert await hub.api.get("/api/workers/all") == []
    events = (await hub.api.get("/api/events"))["Items"]
    assert any("Worker gone deleted: unavailable since" in e["Message"] for e in events)


async def test_a_health_check_is_not_blocked_by_a_full_isolation_script(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    agent = await listening_worker(hub, tentacle)
    release = agent.home / "release"
    try:
        async with agent.client() as client:
            deploying = asyncio.create_task(
                execute_script(
                    client,
                    ScriptRequest(
                        f"echo holding; while [ ! -e {release} ]; do sleep 0.1; done",
                        isolation="full",
                    ),
                    lambda chunk: None,
                )
            )
            task = await run_health_check(hub)
            assert task["State"] == "Success"
            assert not deploying.done()  # the deployment still holds its mutex
            release.touch()
            assert (await deploying).exit_code == 0
    finally:
        agent.stop()


async def test_a_hub_restart_keeps_every_record(hub: RunningHub, tentacle: TentacleCli) -> None:
    agent = await listening_worker(hub, tentacle)
    agent.stop()
    await run_health_check(hub)
    before = {
        path: await hub.api.get(path)
        for path in (
            "/api/workers/all",
            "/api/workerpools/all",
            "/api/machinepolicies/all",
            "/api/tasks/all",
        )
    }
    await hub.server.stop()
    restarted = HubServer(hub.home, __version__)
    port = int(hub.api.url.rsplit(":", 1)[1])
    await restarted.start(f"127.0.0.1:{port}", polling_port=0)
    try:
        for path, value in before.items():
            assert await hub.api.get(path) == value, path
    finally:
        await restarted.stop()


async def test_a_queued_task_can_be_cancelled(hub: RunningHub) -> None:
    assert hub.server.tasks is not None
    await hub.server.tasks.stop()  # nothing picks tasks up: this one stays queued
    status, task = await hub.api.request("POST", "/api/tasks", json={"Name": "Health"})
    assert status == 201
    status, cancelled = await hub.api.request("POST", f"/api/tasks/{task['Id']}/cancel")
    assert status == 200
    assert (cancelled["State"], cancelled["IsCompleted"]) == ("Canceled", True)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"Name": "Backup"}, "Name must be one of Health"),
        ({}, "Name is required"),
        ({"Name": "Health", "Arguments": {"WorkerpoolId": "WorkerPools-9"}}, "WorkerPools-9"),
        ({"Name": "Health", "Arguments": {"MachineIds": ["Workers-77"]}}, "Workers-77"),
        ({"Name": "Health", "Arguments": {"MachineTimeout": -1}}, "MachineTimeout"),
        ({"Name": "Health", "Arguments": "all"}, "Arguments must be an object"),
    ],
)
async def test_a_bad_task_is_422_naming_the_field(
    hub: RunningHub, body: dict[str, Any], named: str
) -> None:
    status, answer = await hub.api.request("POST", "/api/tasks", json=body)
    assert status == 422
    assert any(named in error for error in answer["Errors"]), answer


async def polling_worker(
    hub: RunningHub, tentacle: TentacleCli, name: str = "poller"
) -> AgentProcess:
    """A real polling agent, registered with the real command while the hub runs."""
    agent = AgentProcess(tentacle)
    await register(
        hub,
        tentacle,
        name,
        "--comms-style",
        "TentacleActive",
        "--server-comms-port",
        str(hub.server.polling_port),
    )
    # what register-worker wrote (the subscription, the hub to poll)
    agent.instance = open_instance(InstanceIndex(tentacle.config_home / "instances"), "agent")
    return agent.start()


async def test_a_polling_worker_connects_without_a_restart_and_is_cut_off_when_deleted(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    listener = hub.server.listener
    assert listener is not None
    agent = await polling_worker(hub, tentacle)
    try:
        subscription = agent.instance.config.subscription_id
        await eventually(lambda: subscription in listener.connected(), "the agent connected")
        task = await run_health_check(hub)
        assert task["State"] == "Success"
        [worker] = await hub.api.get("/api/workers/all")
        assert worker["HealthStatus"] == "Healthy"
        status, _ = await hub.api.request("DELETE", f"/api/workers/{worker['Id']}")
        assert status == 200
        # cut off before the DELETE answered, and refused from then on
        assert subscription not in listener.connected()
        assert agent.thumbprint not in listener.trusted()
        await asyncio.to_thread(agent.wait_for_log, "does not trust")
        assert subscription not in listener.connected()
    finally:
        agent.stop()


async def test_a_disabled_polling_worker_is_cut_off_and_back_when_enabled(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    listener = hub.server.listener
    assert listener is not None
    agent = await polling_worker(hub, tentacle)
    try:
        subscription = agent.instance.config.subscription_id
        await eventually(lambda: subscription in listener.connected(), "the agent connected")
        [worker] = await hub.api.get("/api/workers/all")
        status, _ = await hub.api.request(
            "PUT", f"/api/workers/{worker['Id']}", json={**worker, "IsDisabled": True}
        )
        assert status == 200
        assert subscription not in listener.connected()
        status, _ = await hub.api.request(
            "PUT", f"/api/workers/{worker['Id']}", json={**worker, "IsDisabled": False}
        )
        assert status == 200
        await eventually(lambda: subscription in listener.connected(), "the agent came back")
    finally:
        agent.stop()


async def test_tasks_are_filtered_by_state_and_paged(hub: RunningHub) -> None:
    assert hub.server.tasks is not None
    await hub.server.tasks.stop()  # nothing runs them: they stay queued, or get canceled
    ids = []
    for _ in range(3):
        status, task = await hub.api.request("POST", "/api/tasks", json={"Name": "Health"})
        assert status == 201
        ids.append(task["Id"])
    await hub.api.request("POST", f"/api/tasks/{ids[0]}/cancel")
    queued = await hub.api.get("/api/tasks?states=Queued")
    assert sorted(t["Id"] for t in queued["Items"]) == sorted(ids[1:])
    canceled = await hub.api.get("/api/Spaces-1/tasks?states=Canceled,Failed")
    assert [t["Id"] for t in canceled["Items"]] == [ids[0]]
    page = await hub.api.get("/api/tasks?skip=1&take=1")
    assert (page["TotalResults"], len(page["Items"])) == (3, 1)
    status, answer = await hub.api.request("GET", "/api/tasks?states=Sleeping")
    assert status == 400
    assert "states must be among" in answer["ErrorMessage"]
    status, answer = await hub.api.request("GET", "/api/tasks/ServerTasks-999")
    assert status == 404


async def test_cancelling_a_check_cancels_its_script_on_the_worker(
    hub: RunningHub, tentacle: TentacleCli, tmp_path: Path
) -> None:
    marker = tmp_path / "script.pid"
    body = f"echo $$ > {marker}; while true; do sleep 0.1; done\n"
    endless = await policy(
        hub,
        "Endless",
        MachineHealthCheckPolicy={
            "BashHealthCheckPolicy": {"RunType": "Inline", "ScriptBody": body}
        },
    )
    agent = await listening_worker(hub, tentacle, "--policy", endless)
    try:
        await eventually(lambda: marker.exists() and marker.read_text().strip(), "the script ran")
        pid = int(marker.read_text())
        running = [t for t in await hub.api.get("/api/tasks/all") if not t["IsCompleted"]]
        for task in running:
            await hub.api.request("POST", f"/api/tasks/{task['Id']}/cancel")
        await eventually(
            lambda: (
                not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            ),
            "the script was cancelled on the worker",
        )
    finally:
        agent.stop()


async def test_a_check_keeps_a_bounded_log(hub: RunningHub, tentacle: TentacleCli) -> None:
    body = "for i in $(seq 5000); do echo line $i; done\n"
    chatty = await policy(
        hub,
        "Chatty",
        MachineHealthCheckPolicy={
            "BashHealthCheckPolicy": {"RunType": "Inline", "ScriptBody": body}
        },
    )
    agent = await listening_worker(hub, tentacle, "--policy", chatty)
    try:
        task = await run_health_check(hub)
        assert task["State"] == "Success"
        [worker] = await hub.api.get("/api/workers/all")
        logs = (await hub.api.get(f"/api/workers/{worker['Id']}/connection"))["Logs"]
        assert len(logs) <= 1002
        assert any("were not kept" in entry["MessageText"] for entry in logs)
    finally:
        agent.stop()
