"""The step engine as another executor (Deploy) uses it, on a real hub and agent: the
work's sensitive values masked in every line before it is stored (plain and encoded,
also what prepare and collect write), a sensitive output variable kept masked,
artifacts from createArtifact handed to collect, collect's result kept."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.calamari.service_messages import format_message
from agent.client import ScriptRequest, Worker
from agent.hub.adhoc import AdHocWork, Shared, StepWorkers, outcome_of
from agent.hub.runner import Outcome, TaskLog
from agent.hub.steps import ChosenWorker, StepLog, StepResult, run_steps
from agent.hub.store import tables as t
from agent.hub.store.records import Row
from tests.helpers.eventually import eventually
from tests.helpers.hub import RunningHub
from tests.integration.hub.tasks_helpers import add_worker, finished, submit

SECRET = "hunter2-Pa55"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def said(message: str, **attributes: str) -> str:
    return f'echo "{format_message(message, attributes)}"\n'


class SecretWork:
    def __init__(self, task: Row) -> None:
        self.task = task
        self.collected: list[tuple[str, str]] = []

    async def prepare(self, worker: Worker, ticket: str, log: StepLog) -> ScriptRequest:
        await log.info(f"preparing with {SECRET}")
        body = (
            f'echo "plain {SECRET}"\n'
            f'echo "encoded {b64(SECRET)}"\n'
            + said("setVariable", name="Password", value=SECRET, sensitive="True")
            + said("setVariable", name="Said", value=f"it is {SECRET}")
            + said("createArtifact", path="/tmp/out.txt", name="out.txt")
        )
        return ScriptRequest(body=body, isolation="none", ticket=ticket)

    async def resume(self, worker: Worker, ticket: str, log: StepLog) -> ScriptRequest:
        raise AssertionError("no restart in this test")

    async def collect(
        self, worker: Worker, ticket: str, result: StepResult, log: StepLog
    ) -> StepResult:
        self.collected.extend(result.artifacts)
        await log.warning(f"collected, {SECRET} still secret")
        return dataclasses.replace(result, output_variables=[*result.output_variables, {
            "Name": "Collected", "Value": "yes", "IsSensitive": False}])  # fmt: skip

    def masked(self) -> Sequence[str]:
        return [SECRET]


async def test_sensitive_values_are_masked_before_they_are_stored(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    assert hub.server.store is not None
    assert hub.server.reach is not None
    assert hub.server.tasks is not None
    works: list[SecretWork] = []
    workers = StepWorkers(hub.server.store, hub.server.reach, None)

    async def executor(task: Row, task_log: TaskLog) -> Outcome:
        async def choose(conn: AsyncConnection) -> list[ChosenWorker]:
            return await workers.choose(task, conn)

        def work(chosen: ChosenWorker) -> SecretWork:
            works.append(SecretWork(task))
            return works[-1]

        results = await run_steps(
            task_log, choose, workers.connect, work, 10, None, task_log.cancel
        )
        return outcome_of(results)

    hub.server.tasks.executors["AdHocScript"] = executor  # as the Deploy executor would
    try:
        task = await submit(hub.api, ScriptBody="replaced by the work")
        assert (await finished(hub.api, task))["State"] == "Success"
        details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
        [step] = details["ActivityLogs"][0]["Children"]
        texts = [e["MessageText"] for e in step["LogElements"]]
        assert texts == [
            "preparing with ********",
            "plain ********",
            "encoded ********",
            "collected, ******** still secret",
        ]
        assert step["OutputVariables"] == [
            {"Name": "Password", "Value": "********", "IsSensitive": True},
            {"Name": "Said", "Value": "it is ********", "IsSensitive": False},
            {"Name": "Collected", "Value": "yes", "IsSensitive": False},
        ]
        assert works[0].collected == [("/tmp/out.txt", "out.txt")]
        async with hub.server.store.connect() as conn:  # nowhere in the database
            stored = (await conn.execute(sa.select(t.task_log.c.message))).scalars().all()
            steps = (await conn.execute(sa.select(t.task_steps))).mappings().all()
        assert not [m for m in stored if SECRET in m or b64(SECRET) in m]
        assert SECRET not in str([dict(row) for row in steps])
    finally:
        agent.stop()


async def test_a_task_ends_without_waiting_for_its_workers_close(
    hub: RunningHub, tmp_path: Path
) -> None:
    """A step's worker is closed after the task's end is written, not before it: a
    listening worker's close waits for the answer to the script's complete (a round
    trip to the agent) that the task's caller need not wait for. The runner still
    waits for the close afterwards. Before: the task stayed Executing until the close
    was done."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    assert hub.server.store is not None
    assert hub.server.reach is not None
    assert hub.server.tasks is not None
    workers = StepWorkers(hub.server.store, hub.server.reach, None)
    release = asyncio.Event()
    closed: list[bool] = []

    class HeldClose(Shared):
        async def close(self) -> None:
            await release.wait()
            await self.worker.close()
            closed.append(True)

    async def connect(chosen: ChosenWorker) -> Worker:
        return HeldClose(await workers.connect(chosen))

    async def executor(task: Row, task_log: TaskLog) -> Outcome:
        async def choose(conn: AsyncConnection) -> list[ChosenWorker]:
            return await workers.choose(task, conn)

        results = await run_steps(
            task_log, choose, connect, lambda _: AdHocWork(task), 10, None, task_log.cancel
        )
        return outcome_of(results)

    hub.server.tasks.executors["AdHocScript"] = executor
    try:
        task = await submit(hub.api, ScriptBody="echo hi", Syntax="bash")

        async def ended() -> dict[str, Any] | None:
            now = await hub.api.get(f"/api/tasks/{task['Id']}")
            return now if now["IsCompleted"] else None

        done = await eventually(ended, "the task's end written while its worker closes", 30)
        assert (done["State"], closed) == ("Success", [])
        release.set()
        await eventually(lambda: closed == [True], "the worker closed after the end")
    finally:
        release.set()
        agent.stop()
