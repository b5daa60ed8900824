"""AdHocScript tasks through a real hub on real agents (listening and polling): the
log served by cursor, output variables, a failing step, the task cap with Health
outside it and the queue's order, MaxParallelism, a worker running steps of several
tasks at once, cancel in each state, timeouts, selection's refusals."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.hub.store import steps as store_steps
from agent.hub.store import tables as t
from agent.hub.store import tasks as store_tasks
from tests.helpers.agent import AgentProcess
from tests.helpers.eventually import eventually
from tests.helpers.hub import RunningHub, running_hub
from tests.integration.hub.tasks_helpers import (
    add_worker,
    counting_script,
    finished,
    most_at_once,
    started,
    state_of,
    submit,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def _worker(
    hub: RunningHub, tmp_path: Path, name: str, polling: bool = False
) -> AgentProcess:
    port = hub.server.polling_port if polling else None
    return await add_worker(hub.api, hub.home.identity(), tmp_path, name, port)


async def _steps(hub: RunningHub, task: dict[str, Any]) -> list[Any]:
    assert hub.server.store is not None
    async with hub.server.store.connect() as conn:
        return await store_steps.steps_of(conn, int(task["Id"].removeprefix("ServerTasks-")))


async def test_a_script_runs_on_a_worker_and_its_log_is_served_by_cursor(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await _worker(hub, tmp_path, "web-1")
    try:
        body = (
            'echo "hello $1"\necho oops >&2\n'
            f"echo \"##octopus[setVariable name='{b64('Greeting')}' value='{b64('hi there')}']\"\n"
            "for i in $(seq 1 50); do echo line-$i; done\n"
        )
        task = await submit(hub.api, ScriptBody=body, Syntax="bash", ScriptArguments=["you"])
        done = await finished(hub.api, task)
        assert (done["State"], done["ErrorMessage"]) == ("Success", "")
        details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
        [step] = details["ActivityLogs"][0]["Children"]
        assert (step["Name"], step["Worker"], step["Status"]) == ("web-1", "web-1", "Success")
        assert step["OutputVariables"] == [
            {"Name": "Greeting", "Value": "hi there", "IsSensitive": False}
        ]
        # stdout in order; stderr (another pipe) wherever it came, as an Error
        out = [e["MessageText"] for e in step["LogElements"] if e["Category"] == "Info"]
        assert out == ["hello you", *(f"line-{i}" for i in range(1, 51))]
        errors = [e["MessageText"] for e in step["LogElements"] if e["Category"] == "Error"]
        assert errors == ["oops"]
        ids = [e["Id"] for e in step["LogElements"]]
        assert ids == sorted(ids)
        assert details["NextLogCursor"] == ids[-1]
        # a follower asks from a cursor: only what is newer, the activities all listed
        later = await hub.api.get(f"/api/tasks/{task['Id']}/details?since={ids[40]}")
        [again] = later["ActivityLogs"][0]["Children"]
        assert [e["Id"] for e in again["LogElements"]] == ids[41:]
        nothing = await hub.api.get(f"/api/tasks/{task['Id']}/details?since={ids[-1]}")
        assert nothing["ActivityLogs"][0]["Children"][0]["LogElements"] == []
        assert nothing["NextLogCursor"] == ids[-1]
        state = await hub.api.get(f"/api/tasks/{task['Id']}/state")
        assert state == {
            "Id": task["Id"], "State": "Success", "IsCompleted": True,
            "FinishedSuccessfully": True, "HasWarningsOrErrors": False, "ErrorMessage": "",
        }  # fmt: skip
        raw = await hub.api.session.get(
            f"{hub.api.url}/api/tasks/{task['Id']}/raw",
            headers={"X-Octopus-ApiKey": str(hub.api.key)},
        )
        assert "web-1: hello you" in await raw.text()
        [row] = await _steps(hub, task)
        assert (row["state"], row["exit_code"], row["worker_name"]) == ("Success", 0, "web-1")
        status, rerun = await hub.api.request("POST", f"/api/tasks/rerun/{task['Id']}")
        assert status == 201, rerun
        assert (rerun["Name"], rerun["Arguments"]) == ("AdHocScript", task["Arguments"])
        assert rerun["Id"] != task["Id"]
        assert (await finished(hub.api, rerun))["State"] == "Success"
    finally:
        agent.stop()


async def test_a_failing_step_fails_the_task_with_its_message(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await _worker(hub, tmp_path, "web-1", polling=True)
    try:
        task = await submit(hub.api, ScriptBody="echo before\nexit 3", Syntax="SH")
        done = await finished(hub.api, task)
        assert (done["State"], done["ErrorMessage"]) == (
            "Failed",
            "web-1: the script exited with code 3",
        )
        details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
        [step] = details["ActivityLogs"][0]["Children"]
        assert step["Status"] == "Failed"
        texts = [e["MessageText"] for e in step["LogElements"]]
        assert texts == ["before", "web-1: the script exited with code 3"]
    finally:
        agent.stop()


async def test_the_task_cap_holds_health_runs_beside_it_and_the_queue_keeps_its_order(
    hub: RunningHub, tmp_path: Path
) -> None:
    """Seven one-worker tasks on one polling worker, cap 5: five run at once (on that
    one worker: steps of several tasks), the sixth starts before the seventh when one
    ends, and a health check runs meanwhile without waiting."""
    agent = await _worker(hub, tmp_path, "web-1", polling=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        script = counting_script(shared)
        tasks = [
            await submit(hub.api, ScriptBody=script, ScriptArguments=[f"t{n}"]) for n in range(1, 8)
        ]
        await eventually(lambda: len(started(shared)) == 5, "five tasks started")
        assert sorted(started(shared)) == [f"t{n}" for n in range(1, 6)]
        assert [await state_of(hub.api, t) for t in tasks[5:]] == ["Queued", "Queued"]
        status, health = await hub.api.request("POST", "/api/tasks", json={"Name": "Health"})
        assert status == 201
        assert (await finished(hub.api, health))["State"] == "Success"
        assert len(started(shared)) == 5  # the queue did not move meanwhile
        (shared / "release-t3").touch()
        await eventually(lambda: len(started(shared)) == 6, "a sixth task started")
        assert started(shared)[-1] == "t6"
        assert await state_of(hub.api, tasks[6]) == "Queued"
        (shared / "release-all").touch()
        for task in tasks:
            assert (await finished(hub.api, task))["State"] == "Success"
        assert most_at_once(shared) == 5
    finally:
        agent.stop()


async def test_max_parallelism_holds_across_every_worker_of_a_pool(
    hub: RunningHub, tmp_path: Path
) -> None:
    agents = [
        await _worker(hub, tmp_path, "web-1"),
        await _worker(hub, tmp_path, "web-2", polling=True),
        await _worker(hub, tmp_path, "web-3"),
    ]
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        task = await submit(
            hub.api,
            ScriptBody=counting_script(shared),
            ScriptArguments=["all"],
            TargetAllWorkers=True,
            MaxParallelism=2,
        )
        await eventually(lambda: len(started(shared)) == 2, "two steps started")
        rows = await _steps(hub, task)
        assert sorted(row["state"] for row in rows) == ["Pending", "Running", "Running"]
        (shared / "release-all").touch()
        assert (await finished(hub.api, task))["State"] == "Success"
        assert len(started(shared)) == 3
        assert most_at_once(shared) == 2
        details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
        workers = sorted(c["Worker"] for c in details["ActivityLogs"][0]["Children"])
        assert workers == ["web-1", "web-2", "web-3"]
    finally:
        for agent in agents:
            agent.stop()


async def test_cancel_in_each_state(hub: RunningHub, tmp_path: Path) -> None:
    agent = await _worker(hub, tmp_path, "web-1")
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        script = counting_script(shared)
        running = [
            await submit(hub.api, ScriptBody=script, ScriptArguments=[f"t{n}"]) for n in range(1, 6)
        ]
        queued = await submit(hub.api, ScriptBody=script, ScriptArguments=["t6"])
        await eventually(lambda: len(started(shared)) == 5, "five tasks started")
        # Queued: canceled at once, never started
        status, answer = await hub.api.request("POST", f"/api/tasks/{queued['Id']}/cancel")
        assert (status, answer["State"]) == (200, "Canceled")
        # Executing with its step running: its script is cancelled, then the task
        status, answer = await hub.api.request("POST", f"/api/tasks/{running[0]['Id']}/cancel")
        assert (status, answer["State"]) == (200, "Cancelling")
        done = await finished(hub.api, running[0])
        assert done["State"] == "Canceled"
        [row] = await _steps(hub, running[0])
        assert row["state"] == "Canceled"
        details = await hub.api.get(f"/api/tasks/{running[0]['Id']}/details")
        assert details["ActivityLogs"][0]["Children"][0]["Status"] == "Canceled"
        (shared / "release-all").touch()
        for task in running[1:]:
            assert (await finished(hub.api, task))["State"] == "Success"
        assert not (shared / "done-t1").exists()  # the cancelled script was stopped
        assert "t6" not in started(shared)
        # a finished task: cancel changes nothing
        status, answer = await hub.api.request("POST", f"/api/tasks/{running[1]['Id']}/cancel")
        assert (status, answer["State"]) == (200, "Success")
    finally:
        agent.stop()


async def test_a_task_past_its_timeout_is_timed_out_and_its_scripts_cancelled(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await _worker(hub, tmp_path, "web-1")
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        task = await submit(
            hub.api, ScriptBody=counting_script(shared), ScriptArguments=["slow"], Timeout=1
        )
        done = await finished(hub.api, task)
        assert done["State"] == "TimedOut"
        assert "timed out" in done["ErrorMessage"]
        [row] = await _steps(hub, task)
        assert row["state"] == "TimedOut"
        (shared / "release-all").touch()
        assert not (shared / "done-slow").exists()
    finally:
        agent.stop()


async def test_an_empty_pool_without_a_built_in_worker_fails_saying_so(
    tmp_path: Path, database_url: str
) -> None:
    async with running_hub(tmp_path, database_url, builtin_worker=False) as hub:
        status, pool = await hub.api.request("POST", "/api/workerpools", json={"Name": "Empty"})
        assert status == 201, pool
        task = await submit(hub.api, ScriptBody="echo hi", WorkerPoolId=pool["Id"])
        done = await finished(hub.api, task)
    assert (done["State"], done["ErrorMessage"]) == (
        "Failed",
        "the pool Empty has no workers and the built-in worker is disabled",
    )


async def test_a_pool_of_unavailable_workers_fails_naming_them(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await _worker(hub, tmp_path, "web-1")
    agent.stop()
    status, health = await hub.api.request("POST", "/api/tasks", json={"Name": "Health"})
    assert status == 201
    await finished(hub.api, health)
    task = await submit(hub.api, ScriptBody="echo hi")
    done = await finished(hub.api, task)
    assert (done["State"], done["ErrorMessage"]) == (
        "Failed",
        "no healthy worker in Default Worker Pool (web-1 Unavailable)",
    )


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({}, "Arguments.ScriptBody is required"),
        ({"ScriptBody": "  "}, "Arguments.ScriptBody is required"),
        ({"ScriptBody": 3}, "Arguments.ScriptBody is required"),
        ({"ScriptBody": "x", "Syntax": "PowerShell"}, "Arguments.Syntax must be one of"),
        ({"ScriptBody": "x", "ScriptArguments": "a b"}, "Arguments.ScriptArguments must be"),
        ({"ScriptBody": "x", "ScriptArguments": [1]}, "Arguments.ScriptArguments must be"),
        (
            {"ScriptBody": "x", "ScriptArguments": ["ok", "a\x00b"]},
            "Arguments.ScriptArguments[1] must not contain NUL characters",
        ),
        (
            {"ScriptBody": "x", "TargetAllWorkers": True, "MachineIds": ["Workers-1"]},
            "Arguments.TargetAllWorkers and Arguments.MachineIds: give one of them",
        ),
        ({"ScriptBody": "x", "TargetAllWorkers": "yes"}, "Arguments.TargetAllWorkers must be"),
        ({"ScriptBody": "x", "MaxParallelism": 0}, "Arguments.MaxParallelism must be"),
        ({"ScriptBody": "x", "MaxParallelism": 2.5}, "Arguments.MaxParallelism must be"),
        ({"ScriptBody": "x", "MaxParallelism": True}, "Arguments.MaxParallelism must be"),
        ({"ScriptBody": "x", "Timeout": 0}, "Arguments.Timeout must be"),
        ({"ScriptBody": "x", "WorkerPoolId": "WorkerPools-99"}, "WorkerPools-99"),
        ({"ScriptBody": "x", "MachineIds": ["Workers-9"]}, "Workers-9"),
        ({"ScriptBody": "x", "MachineIds": "Workers-9"}, "Arguments.MachineIds must be"),
    ],
)
async def test_bad_arguments_are_422_naming_the_field(
    hub: RunningHub, arguments: dict[str, Any], named: str
) -> None:
    status, answer = await hub.api.request(
        "POST", "/api/tasks", json={"Name": "AdHocScript", "Arguments": arguments}
    )
    assert status == 422, answer
    assert any(named in error for error in answer["Errors"]), answer
    assert await hub.api.get("/api/tasks/all") == []


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_a_non_finite_number_is_400_naming_it_everywhere(
    hub: RunningHub, number: str
) -> None:
    """Python's json reads NaN and Infinity (and 1e400 as infinity) and writes them
    back, which no JSON reader takes: every body is refused, nothing kept."""
    bodies = [
        ("/api/tasks", '{"Name": "AdHocScript", "Arguments": {"ScriptBody": "x", "Timeout": %s}}'),
        ("/api/workerpools", '{"Name": "Pool", "Unknown": [%s]}'),
    ]
    for path, body in bodies:
        status, answer = await hub.api.request(
            "POST", path, data=body % number, headers={"Content-Type": "application/json"}
        )
        assert status == 400, (path, answer)
        assert number in answer["ErrorMessage"], answer
        assert "finite number" in answer["ErrorMessage"], answer
    assert await hub.api.get("/api/tasks/all") == []
    assert [p["Name"] for p in await hub.api.get("/api/workerpools/all")] == ["Default Worker Pool"]


async def test_a_timeout_too_large_for_a_float_is_422(hub: RunningHub) -> None:
    status, answer = await hub.api.request(
        "POST",
        "/api/tasks",
        data='{"Name": "AdHocScript", "Arguments": {"ScriptBody": "x", "Timeout": 1%s}}'
        % ("0" * 400),
        headers={"Content-Type": "application/json"},
    )
    assert status == 422, answer
    assert any("Arguments.Timeout must be" in error for error in answer["Errors"]), answer
    assert await hub.api.get("/api/tasks/all") == []


async def test_a_body_over_the_limit_is_413_naming_it(hub: RunningHub) -> None:
    status, answer = await hub.api.request(
        "POST",
        "/api/tasks",
        json={"Name": "AdHocScript", "Arguments": {"ScriptBody": "#" * (1024 * 1024 + 10)}},
    )
    assert status == 413, answer
    assert "larger than this hub's limit of 1048576 bytes" in answer["ErrorMessage"], answer
    assert "ScriptBody" in answer["ErrorMessage"], answer
    assert await hub.api.get("/api/tasks/all") == []


async def test_a_bad_cursor_is_400(hub: RunningHub) -> None:
    task = await submit(hub.api, ScriptBody="echo hi", WorkerPoolId="WorkerPools-1")
    odd = ["\u00b2", "\u0661\u0662", "9" * 19, "99999999999999999999", "9" * 5000]
    for since in odd:  # '²' and '١٢' pass str.isdigit; too many digits overflow SQL
        status, answer = await hub.api.request(
            "GET", f"/api/tasks/{task['Id']}/details", params={"since": since}
        )
        assert status == 400, (since[:30], status, answer)
        assert "since must be a log cursor" in answer["ErrorMessage"]
        assert "at most 18 ASCII digits" in answer["ErrorMessage"]
    status, answer = await hub.api.request("GET", f"/api/tasks/{task['Id']}/details?since=-1")
    assert status == 400
    assert "since must be a log cursor" in answer["ErrorMessage"]
    biggest = await hub.api.get(f"/api/tasks/{task['Id']}/details", params={"since": "9" * 18})
    assert biggest["HasMoreLogs"] is False


async def test_cancel_with_steps_running_and_waiting_for_their_turn(
    hub: RunningHub, tmp_path: Path
) -> None:
    """MaxParallelism 1 on two workers (one polling): the running step's script is
    cancelled, the waiting one never starts; both end Canceled, and so does the task."""
    agents = [
        await _worker(hub, tmp_path, "web-1"),
        await _worker(hub, tmp_path, "web-2", polling=True),
    ]
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        task = await submit(
            hub.api,
            ScriptBody=counting_script(shared),
            ScriptArguments=["c"],
            TargetAllWorkers=True,
            MaxParallelism=1,
        )
        await eventually(lambda: started(shared) == ["c"], "one step started")
        status, answer = await hub.api.request("POST", f"/api/tasks/{task['Id']}/cancel")
        assert (status, answer["State"]) == (200, "Cancelling")
        done = await finished(hub.api, task)
        assert (done["State"], done["ErrorMessage"]) == ("Canceled", "canceled")
        assert sorted(row["state"] for row in await _steps(hub, task)) == ["Canceled"] * 2
        assert started(shared) == ["c"]  # the second never started
        assert not (shared / "done-c").exists()
    finally:
        for agent in agents:
            agent.stop()


async def test_a_running_task_is_not_rerun_and_a_finished_one_not_cancelled(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    shared = tmp_path / "shared"
    shared.mkdir()
    body = f"""touch {shared}/started
i=0; until [ -e {shared}/go ]; do i=$((i+1)); [ $i -gt 3000 ] && exit 9; sleep 0.05; done
"""
    try:
        task = await submit(hub.api, ScriptBody=body)
        await eventually((shared / "started").exists, "the step started")
        status, answer = await hub.api.request("POST", f"/api/tasks/rerun/{task['Id']}")
        assert status == 409, answer
        assert "only a completed task can be rerun" in answer["ErrorMessage"]
        tasks = await hub.api.get("/api/tasks/all")
        assert [t["Id"] for t in tasks if t["Name"] == "AdHocScript"] == [task["Id"]]
        (shared / "go").touch()
        assert (await finished(hub.api, task))["State"] == "Success"
    finally:
        agent.stop()

    def cancels(events: dict[str, Any]) -> list[str]:
        return [e["Message"] for e in events["Items"] if "cancel requested" in e["Message"]]

    assert cancels(await hub.api.get("/api/events")) == []
    status, answer = await hub.api.request("POST", f"/api/tasks/{task['Id']}/cancel")
    assert status == 200, answer
    assert answer["State"] == "Success"
    assert "had already finished" in answer["Message"]
    assert cancels(await hub.api.get("/api/events")) == []
    status, rerun = await hub.api.request("POST", f"/api/tasks/rerun/{task['Id']}")
    assert status == 201, rerun


async def test_a_worker_deleted_mid_step_ends_the_step_and_cancels_its_script(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    shared = tmp_path / "shared"
    shared.mkdir()
    body = f"""trap 'echo got TERM; touch {shared}/termed; exit 3' TERM
touch {shared}/started
i=0; while [ $i -lt 3000 ]; do i=$((i+1)); sleep 0.05; done
"""
    try:
        task = await submit(hub.api, ScriptBody=body)
        await eventually((shared / "started").exists, "the step started")
        [worker] = [w for w in await hub.api.get("/api/workers/all") if w["Name"] == "web-1"]
        status, answer = await hub.api.request("DELETE", f"/api/workers/{worker['Id']}")
        assert status == 200, answer
        done = await finished(hub.api, task)
        assert done["State"] == "Failed", done
        assert "the worker web-1 was deleted during this step" in done["ErrorMessage"], done
        # a listening worker is still dialled to cancel its script
        assert (shared / "termed").exists()
    finally:
        agent.stop()


async def test_a_cancel_of_a_task_being_cancelled_changes_nothing(hub: RunningHub) -> None:
    """Cancelling already: the cancel is on its way, no second event (before: one per
    request, each 'cancel requested')."""
    store = hub.server.store
    assert store is not None
    async with store.transaction() as conn:  # as a running task's first cancel leaves it,
        # in one transaction: the runner never sees it Queued
        number = await store_tasks.submit(
            conn, 1, "AdHocScript", "a script", {"ScriptBody": "echo hi"}, datetime.now(UTC)
        )
        await conn.execute(
            sa.update(t.server_tasks)
            .where(t.server_tasks.c.id == number)
            .values(state="Cancelling", cancel_requested=True, start_time=datetime.now(UTC))
        )
    status, answer = await hub.api.request("POST", f"/api/tasks/ServerTasks-{number}/cancel")
    assert status == 200, answer
    assert answer["State"] == "Cancelling"
    assert "being cancelled already" in answer["Message"]
    events = await hub.api.get("/api/events")
    assert [e for e in events["Items"] if "cancel requested" in e["Message"]] == []
