"""AdHocScript tasks: a script run on one worker of a pool, some named ones, or all.

The workers are chosen by ``rules.dispatch`` (healthy, enabled members of the
pool, the least busy one unless ``MachineIds`` or ``TargetAllWorkers`` say
otherwise; the built-in worker for a pool with no members); each runs the script
as one step of ``agent.hub.steps``, at most ``MaxParallelism`` at once. Scripts
run without the agents' isolation mutex: a worker runs steps of many tasks at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.client import Backoff, LogChunk, ScriptOutcome, ScriptRequest, Worker
from agent.hub import ids
from agent.hub.reach import WorkerReach
from agent.hub.rules.adhoc import isolation_group, script_syntax
from agent.hub.rules.dispatch import DEFAULT_MAX_PARALLELISM, Member, reroute, select
from agent.hub.runner import Outcome, TaskLog
from agent.hub.steps import (
    CANCELED,
    FAILED,
    TIMED_OUT,
    ChosenWorker,
    Refused,
    StepLog,
    StepResult,
    run_steps,
)
from agent.hub.store import Store
from agent.hub.store import steps as store_steps
from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all, fetch_one

BUILTIN_NAME = "built-in worker"
_SINCE = re.compile(r"draining since (\S+): ")
# a step's calls ride out a dropped connection or a restarting agent for this long
STEP_RETRY = Backoff(first=0.5, cap=5.0, deadline=120.0)
POLLING_WAIT = 60.0  # seconds a polling worker may take to connect for a step


class AdHocWork:
    """One worker's part of an AdHocScript task: its script, nothing around it."""

    INSTANT = True  # prepare sends nothing: a step is leased Running (agent.hub.steps)

    def __init__(self, task: Row) -> None:
        self.task = task

    def _request(self, ticket: str) -> ScriptRequest:
        arguments = self.task["arguments"]
        return ScriptRequest(
            body=str(arguments["ScriptBody"]),
            syntax=script_syntax(arguments.get("Syntax")) or "bash",
            arguments=[str(a) for a in arguments.get("ScriptArguments") or []],
            isolation="none",
            task_id=ids.format_id(ids.SERVER_TASK, self.task["id"]),
            isolation_group=task_isolation_group(self.task),
            ticket=ticket,
        )

    async def prepare(self, worker: Worker, ticket: str, log: StepLog) -> ScriptRequest:
        return self._request(ticket)

    async def resume(self, worker: Worker, ticket: str, log: StepLog) -> ScriptRequest:
        return self._request(ticket)

    async def collect(
        self, worker: Worker, ticket: str, result: StepResult, log: StepLog
    ) -> StepResult:
        return result

    def masked(self) -> Sequence[str]:
        return ()


class Shared:
    """A Worker the engine may close after each step without closing it (the built-in one)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.capabilities = worker.capabilities
        self.upload = worker.upload
        self.download = worker.download
        self.execute = worker.execute
        self.cancel = worker.cancel

    async def close(self) -> None:
        return None


# Built once, their values given as they run (agent.hub.store.tasks says why)
_POOL = sa.select(t.worker_pools).where(
    t.worker_pools.c.space_id == sa.bindparam("space"),
    t.worker_pools.c.id == sa.bindparam("pool"),
)
_DEFAULT_POOL = sa.select(t.worker_pools).where(
    t.worker_pools.c.space_id == sa.bindparam("space"), t.worker_pools.c.is_default.is_(True)
)
_W = t.workers.c
# What choosing a pool's worker reads (selection's facts of each member), and what
# reaching it needs (agent.hub.reach): not its certificate, facts or last check's log,
# whose JSON, decoded for every member of the pool at every lease, cost more than the rest
_CHOSEN = (
    *(_W.id, _W.name, _W.is_disabled, _W.health_status, _W.uri, _W.thumbprint),
    *(_W.communication_style, _W.ssh_host, _W.ssh_port, _W.ssh_fingerprint, _W.account_id),
    _W.facts["Draining"].as_boolean().label("draining"),  # rules.health's facts
)
_MEMBERS = (
    sa.select(*_CHOSEN)
    .join(t.worker_pool_members, t.worker_pool_members.c.worker_id == t.workers.c.id)
    .where(t.worker_pool_members.c.pool_id == sa.bindparam("pool"))
)
_WORKER = sa.select(*_CHOSEN).where(t.workers.c.id == sa.bindparam("worker"))
_EXISTS = sa.select(t.workers.c.id).where(t.workers.c.id == sa.bindparam("worker"))

DELETED_LOOK = 2.0  # seconds between looks whether a step's worker was deleted
DELETED_PATIENCE = 10.0  # seconds the cancel of a deleted worker's script is given


class Watched(Shared):
    """A registered worker whose ``execute`` ends when the worker is deleted: its
    script is cancelled (a listening worker is still dialled with the certificate the
    client holds; a polling one is cut off), its end waited for DELETED_PATIENCE s at
    most, then Refused saying the worker was deleted (not a connect timeout later)."""

    def __init__(self, worker: Worker, name: str, exists: Callable[[], Awaitable[bool]]):
        super().__init__(worker)
        self.name = name
        self.exists = exists
        self.execute = self._execute

    async def close(self) -> None:
        await self.worker.close()

    async def _deleted(self) -> None:
        # the first look after DELETED_LOOK s: ``connect`` has just read the worker (a
        # step of a few ms then makes no read for this)
        while True:
            await asyncio.sleep(DELETED_LOOK)  # a schedule: a deletion announces nothing here
            if not await self.exists():
                return

    async def _execute(
        self,
        request: ScriptRequest,
        on_output: Callable[[LogChunk], None],
        cancel: asyncio.Event | None = None,
    ) -> ScriptOutcome:
        inner = asyncio.Event()
        running = asyncio.ensure_future(self.worker.execute(request, on_output, inner))
        deleted = asyncio.ensure_future(self._deleted())
        relay = asyncio.ensure_future((cancel or asyncio.Event()).wait())
        try:
            while not running.done():
                await asyncio.wait({running, deleted, relay}, return_when=asyncio.FIRST_COMPLETED)
                if relay.done():
                    inner.set()
                if deleted.done() and not running.done():
                    inner.set()
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(DELETED_PATIENCE):
                            await asyncio.shield(running)
                    raise Refused(f"the worker {self.name} was deleted during this step")
            return running.result()
        finally:
            for future in (running, deleted, relay):
                future.cancel()
            await asyncio.gather(running, deleted, relay, return_exceptions=True)


class StepWorkers:
    """How the executors choose and reach the workers of a task's steps."""

    def __init__(self, store: Store, reach: WorkerReach, builtin: Worker | None) -> None:
        self.store = store
        self.reach = reach
        self.builtin = builtin

    async def choose(self, task: Row, conn: AsyncConnection | None = None) -> list[ChosenWorker]:
        """The workers of the task's pool that run it (read on ``conn``, if given: the
        lease's); Refused saying why if none."""
        arguments = task["arguments"]
        if conn is None:
            async with self.store.connect() as own:
                pool, members, rows = await self._members(own, task)
        else:
            pool, members, rows = await self._members(conn, task)
        machines = [ids.parse_id(ids.WORKER, m) for m in arguments.get("MachineIds") or []]
        selection = select(
            pool["name"],
            members,
            machines or None,
            bool(arguments.get("TargetAllWorkers")),
            self.builtin is not None,
            {number: ids.format_id(ids.WORKER, number) for number in machines},
        )
        if selection.error is not None:
            raise Refused(selection.error)
        if selection.builtin:
            return [ChosenWorker(BUILTIN_NAME, None, builtin=True)]
        return [ChosenWorker(m.name, m.id, row=rows[m.id]) for m in selection.workers]

    async def reroute(self, task: Row, refused: ChosenWorker, message: str) -> ChosenWorker:
        """Who runs the step ``refused`` would not start because its agent drains (it
        said ``message``): the worker is recorded as draining (until its next health
        check says otherwise), then rules.dispatch.reroute chooses; Refused saying why
        if nobody can."""
        if refused.worker_id is not None:
            await self._mark_draining(refused.worker_id, message)
        arguments = task["arguments"]
        async with self.store.connect() as conn:
            pool, members, _ = await self._members(conn, task)
        machines = [ids.parse_id(ids.WORKER, m) for m in arguments.get("MachineIds") or []]
        who = Member(refused.worker_id or 0, refused.name, False, "Healthy", draining=True)
        selection = reroute(
            pool["name"], members, who, machines or None, bool(arguments.get("TargetAllWorkers"))
        )
        if selection.error is not None:
            raise Refused(selection.error)
        return ChosenWorker(selection.workers[0].name, selection.workers[0].id)

    @staticmethod
    async def _members(
        conn: AsyncConnection, task: Row
    ) -> tuple[Row, list[Member], dict[int, Row]]:
        """The task's pool, its members as selection sees them, and their rows by id."""
        pool = await StepWorkers._pool(conn, task["space_id"], task["arguments"])
        members = await fetch_all(conn, _MEMBERS, {"pool": pool["id"]})
        busy = await store_steps.busy(conn, [m["id"] for m in members])
        rows = {m["id"]: m for m in members}
        return pool, [_member(m, busy[m["id"]]) for m in members], rows

    async def _mark_draining(self, worker_id: int, message: str) -> None:
        """Record what the worker's refusal said until its next health check: it drains."""
        since = draining_since(message)
        async with self.store.transaction() as conn:
            row = await fetch_one(conn, sa.select(t.workers).where(t.workers.c.id == worker_id))
            if row is None:
                return
            facts = {**(row["facts"] or {}), "Draining": True, "DrainingSince": since}
            await conn.execute(
                sa.update(t.workers).where(t.workers.c.id == worker_id).values(facts=facts)
            )

    @staticmethod
    async def _pool(conn: Any, space: int, arguments: dict[str, Any]) -> Row:
        wanted = arguments.get("WorkerPoolId") or arguments.get("WorkerpoolId")
        if wanted:
            params = {"space": space, "pool": ids.parse_id(ids.WORKER_POOL, wanted)}
            pool = await fetch_one(conn, _POOL, params)
        else:
            pool = await fetch_one(conn, _DEFAULT_POOL, {"space": space})
        if pool is None:
            raise Refused(f"there is no worker pool {wanted or '(the default)'} any more")
        return pool

    async def connect(self, chosen: ChosenWorker) -> Worker:
        if chosen.builtin:
            if self.builtin is None:
                raise Refused("the built-in worker is disabled on this hub node")
            return Shared(self.builtin)
        row = chosen.row  # read by the choice just before, for a step starting at once
        if row is None:
            async with self.store.connect() as conn:
                row = await fetch_one(conn, _WORKER, {"worker": chosen.worker_id})
        if row is None:
            raise Refused(f"the worker {chosen.name} was deleted")
        client = self.reach.client(row, wait=POLLING_WAIT, retry=STEP_RETRY)

        async def exists() -> bool:
            async with self.store.connect() as conn:
                return await fetch_one(conn, _EXISTS, {"worker": chosen.worker_id}) is not None

        return Watched(client, chosen.name, exists)


def _member(row: Row, busy: int) -> Member:
    draining = row["draining"] is True
    return Member(row["id"], row["name"], row["is_disabled"], row["health_status"], busy, draining)


def draining_since(message: str) -> str | None:
    """The time in a draining agent's refusal (docs/protocol.md §8), None if it has none."""
    found = _SINCE.search(message)
    return found.group(1) if found else None


def task_isolation_group(task: Row) -> str:
    """The isolation group a task's scripts run in on a worker (its uid there): the task's
    ``ProjectId``, else its space's id."""
    return isolation_group(task["arguments"], ids.format_id(ids.SPACE, task["space_id"]))


def remaining(task: Row, now: datetime) -> float | None:
    """Seconds left of the task's ``Timeout`` (counted from its start), None if none."""
    timeout = task["arguments"].get("Timeout")
    if timeout is None:
        return None
    started = task["start_time"] or now
    return max(0.0, float(timeout) - (now - started).total_seconds())


def outcome_of(results: Sequence[StepResult], timeout: Any = None) -> Outcome:
    """The task's outcome from its steps': any timed out -> TimedOut, any canceled ->
    Canceled, any failed -> Failed with their messages, else Success."""
    states = {result.state for result in results}
    if TIMED_OUT in states:
        return Outcome(False, error=f"the task timed out after {timeout} s", state=TIMED_OUT)
    if CANCELED in states:
        return Outcome(False, error="canceled", state=CANCELED)
    errors = [r.error or "failed" for r in results if r.state == FAILED]
    if errors:
        return Outcome(False, error="; ".join(errors))
    return Outcome(True)


class AdHocScripts:
    """The executor of ``AdHocScript`` tasks."""

    def __init__(self, store: Store, reach: WorkerReach, builtin: Worker | None, now: Any) -> None:
        self.workers = StepWorkers(store, reach, builtin)
        self.now = now

    async def __call__(self, task: Row, task_log: TaskLog) -> Outcome:
        arguments = task["arguments"]
        parallelism = int(arguments.get("MaxParallelism") or DEFAULT_MAX_PARALLELISM)

        async def choose(conn: AsyncConnection) -> list[ChosenWorker]:
            return await self.workers.choose(task, conn)

        async def moved(refused: ChosenWorker, message: str) -> ChosenWorker:
            return await self.workers.reroute(task, refused, message)

        try:
            results = await run_steps(
                task_log,
                choose,
                self.workers.connect,
                lambda chosen: AdHocWork(task),
                parallelism,
                remaining(task, self.now()),
                task_log.cancel,
                moved,
            )
        except Refused as refused:
            await task_log.write(None, [("Error", str(refused))])
            return Outcome(False, error=str(refused))
        return outcome_of(results, arguments.get("Timeout"))
