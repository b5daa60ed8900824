"""A drained worker (`tentacle drain`) through a real hub and real agents over TLS: the
script it runs finishes with its real output, a step it refuses runs on another worker
(never reported as the script's failure), the hub then sends it no more steps, and
`tentacle drain --resume` plus a health check bring it back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.agent import AgentProcess
from tests.helpers.cli import Result
from tests.helpers.eventually import eventually
from tests.helpers.hub import HubApi, RunningHub
from tests.integration.hub.tasks_helpers import (
    add_worker,
    counting_script,
    finished,
    started,
    submit,
)


async def drain(agent: AgentProcess, *args: str) -> Result:
    result = await asyncio.to_thread(agent.cli.run, "drain", "--instance", "agent", *args)
    assert result.code == 0, result
    return result


async def worker_named(api: HubApi, name: str) -> dict[str, Any]:
    [worker] = [w for w in (await api.get("/api/workers/all")) if w["Name"] == name]
    return worker  # type: ignore[no-any-return]


async def check_health(api: HubApi, worker: dict[str, Any]) -> None:
    status, task = await api.request(
        "POST", "/api/tasks", json={"Name": "Health", "Arguments": {"MachineIds": [worker["Id"]]}}
    )
    assert status == 201, task
    await finished(api, task)


async def step_of(api: HubApi, task: dict[str, Any]) -> dict[str, Any]:
    details = await api.get(f"/api/tasks/{task['Id']}/details")
    [step] = details["ActivityLogs"][0]["Children"]
    return step  # type: ignore[no-any-return]


def texts(step: dict[str, Any]) -> list[str]:
    return [e["MessageText"] for e in step["LogElements"]]


@pytest.mark.parametrize(
    ("drained_style", "database_url"),
    [("listening", "sqlite"), ("polling", "postgresql")],
    indirect=["database_url"],
)
async def test_a_drained_worker_finishes_its_script_and_its_next_step_goes_elsewhere(
    hub: RunningHub, tmp_path: Path, drained_style: str
) -> None:
    polling_port = hub.server.polling_port
    one_polls = drained_style == "polling"
    web1 = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1",
                            polling_port if one_polls else None)  # fmt: skip
    web2 = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-2",
                            None if one_polls else polling_port)  # fmt: skip
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        w1, w2 = await worker_named(hub.api, "web-1"), await worker_named(hub.api, "web-2")
        script = counting_script(shared)
        # one step on each, so that the next task's least busy worker is web-1 (lowest id)
        running = await submit(hub.api, ScriptBody=script, ScriptArguments=["r1"],
                               MachineIds=[w1["Id"]])  # fmt: skip
        other = await submit(hub.api, ScriptBody=script, ScriptArguments=["r2"],
                             MachineIds=[w2["Id"]])  # fmt: skip
        await eventually(lambda: sorted(started(shared)) == ["r1", "r2"], "both steps started")

        said = await drain(web1)
        assert "draining since" in said.out

        # the hub does not know yet: it sends the step to web-1, which refuses it
        moved = await submit(hub.api, ScriptBody="echo moved-step-ran")
        done = await finished(hub.api, moved)
        assert (done["State"], done["ErrorMessage"]) == ("Success", "")
        step = await step_of(hub.api, moved)
        assert (step["Name"], step["Worker"], step["Status"]) == ("web-2", "web-2", "Success")
        [note] = [t for t in texts(step) if "refused the step" in t]
        assert note.startswith("web-1 refused the step (the agent is draining since ")
        assert note.endswith("; it runs on web-2 instead")
        assert "moved-step-ran" in texts(step)
        record = await worker_named(hub.api, "web-1")
        assert record["IsDraining"] is True
        assert record["DrainingSince"]
        assert record["DrainingSince"] in note

        # now it knows: the next step goes to web-2 without asking web-1
        direct = await submit(hub.api, ScriptBody="echo direct")
        assert (await finished(hub.api, direct))["State"] == "Success"
        step = await step_of(hub.api, direct)
        assert step["Worker"] == "web-2"
        assert not [t for t in texts(step) if "refused" in t]

        # the script web-1 was running when it drained finishes with its real output
        (shared / "release-all").touch()
        for task in (running, other):
            assert (await finished(hub.api, task))["State"] == "Success"
        assert "done r1" in texts(await step_of(hub.api, running))

        # a health check keeps it draining (and says so); --resume and another bring it back
        await check_health(hub.api, w1)
        record = await worker_named(hub.api, "web-1")
        assert record["IsDraining"] is True
        assert "draining since" in record["StatusSummary"]
        await drain(web1, "--resume")
        await check_health(hub.api, w1)
        record = await worker_named(hub.api, "web-1")
        assert (record["IsDraining"], record["DrainingSince"]) == (False, None)
        back = await submit(hub.api, ScriptBody="echo back", MachineIds=[w1["Id"]])
        assert (await finished(hub.api, back))["State"] == "Success"
    finally:
        web1.stop()
        web2.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_step_with_no_other_worker_fails_saying_the_worker_drains(
    hub: RunningHub, tmp_path: Path
) -> None:
    web1 = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    try:
        await drain(web1)
        task = await submit(hub.api, ScriptBody="echo never")
        done = await finished(hub.api, task)
        assert done["State"] == "Failed"
        assert done["ErrorMessage"] == (
            "web-1 is draining (it starts no new scripts), and no other worker in "
            "Default Worker Pool can run it"
        )
        step = await step_of(hub.api, task)
        assert "exited with code" not in " ".join(texts(step))
        assert any(
            t.startswith("web-1 refused the step: the agent is draining") for t in texts(step)
        )
        # known to drain: refused at selection, naming why
        task = await submit(hub.api, ScriptBody="echo never")
        done = await finished(hub.api, task)
        assert done["ErrorMessage"] == "no healthy worker in Default Worker Pool (web-1 draining)"
        # asked for by name, it is refused naming why
        w1 = await worker_named(hub.api, "web-1")
        task = await submit(hub.api, ScriptBody="echo never", MachineIds=[w1["Id"]])
        done = await finished(hub.api, task)
        assert done["ErrorMessage"] == (
            f"cannot run on the workers asked for: web-1 ({w1['Id']}) is draining"
        )
    finally:
        web1.stop()
