"""What a task costs the store: the write transactions that touch a one-step task's
rows (its queueing, claim, step, activity, log and end), counted on the real hub's
engine as they commit."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.hub import runner
from agent.hub.api import tasks as api_tasks
from agent.hub.store import tasks as store_tasks
from tests.helpers.eventually import eventually
from tests.helpers.hub import RunningHub, statements_run
from tests.integration.hub.tasks_helpers import add_worker, finished, submit

TABLES = r"\"?(server_tasks|task_steps|task_activities|task_log)\b"
WRITES = re.compile(rf"^\s*(INSERT INTO|UPDATE)\s+{TABLES}", re.IGNORECASE)
READS = re.compile(rf"\bFROM\s+{TABLES}", re.IGNORECASE)


@contextmanager
def task_commits(engine: sa.Engine) -> Iterator[list[bool]]:
    """The commits, while the block runs, of write transactions that touched the task
    tables: True for each that wrote a task's rows, False for one that only read them
    (a write lock taken for nothing)."""
    commits: list[bool] = []
    touched: dict[int, bool] = {}

    def executed(conn: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if WRITES.match(statement):
            touched[id(conn)] = True
        elif READS.search(statement):
            touched.setdefault(id(conn), False)

    def committed(conn: sa.Connection) -> None:
        if id(conn) in touched:
            commits.append(touched.pop(id(conn)))

    def rolled_back(conn: sa.Connection) -> None:
        touched.pop(id(conn), None)  # a read's connection: no write transaction

    sa.event.listen(engine, "before_cursor_execute", executed)
    sa.event.listen(engine, "commit", committed)
    sa.event.listen(engine, "rollback", rolled_back)
    try:
        yield commits
    finally:
        sa.event.remove(engine, "before_cursor_execute", executed)
        sa.event.remove(engine, "commit", committed)
        sa.event.remove(engine, "rollback", rolled_back)


async def test_a_one_step_task_commits_five_times(hub: RunningHub, tmp_path: Path) -> None:
    """Queued (the API), claimed, its step leased Running with its activity, its lines,
    and its end with its step's: no commit of its own for the activity's Running, the
    step's Running or the step's end (8 before), and no write transaction for the
    runner's looks at an empty queue (2 before)."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    assert hub.server.store is not None
    try:
        with task_commits(hub.server.store.engine.sync_engine) as commits:
            task = await submit(hub.api, ScriptBody="echo hi", Syntax="bash")
            done = await finished(hub.api, task)
        assert done["State"] == "Success"
        assert commits == [True] * 5
        details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
        [step] = details["ActivityLogs"][0]["Children"]
        assert (step["Status"], [e["MessageText"] for e in step["LogElements"]]) == (
            "Success",
            ["hi"],
        )
    finally:
        agent.stop()


async def test_a_look_at_the_unfinished_tasks_reads_only_them(hub: RunningHub) -> None:
    """GET /api/tasks?states=... filters in the query: a caller waiting for the queue to
    drain reads the few unfinished tasks, not every task the hub ever ran (before: all
    of them, filtered in Python, on each look)."""
    with statements_run(hub) as seen:
        page = await hub.api.get(
            "/api/tasks", params={"states": "Queued,Executing", "name": "AdHocScript"}
        )
    assert page["TotalResults"] == 0
    # the envelope's TotalCounts and TotalResults: counted by the database, not rows read
    [by_state] = [s for s in seen if READS.search(s) and "GROUP BY" in s]
    assert re.search(r"GROUP BY server_tasks\.state", by_state), by_state
    [total] = [s for s in seen if READS.search(s) and "count(" in s.lower() and s != by_state]
    [query] = [s for s in seen if READS.search(s) and "count(" not in s.lower()]
    for statement in (total, query):
        assert re.search(r"server_tasks\.state IN", statement), statement
        assert re.search(r"server_tasks\.name IN", statement), statement


ORPHANS = re.compile(r"server_tasks\.server_token IS NULL OR", re.IGNORECASE)
WORKER_EXISTS = re.compile(
    r"^SELECT workers\.id\s+FROM workers\s+WHERE workers\.id = \?\s*$", re.IGNORECASE
)


async def test_a_one_step_task_makes_no_needless_reads(hub: RunningHub, tmp_path: Path) -> None:
    """The runner looks for tasks to take over at its start and after adopting a dead
    node's, not on each wake (before: on each, twice or more per task); a step looks
    whether its worker was deleted every DELETED_LOOK s from its start, not at it
    (connect has just read the worker: before, once per step however short)."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    try:
        with statements_run(hub) as seen:
            task = await submit(hub.api, ScriptBody="echo hi", Syntax="bash")
            done = await finished(hub.api, task)
    finally:
        agent.stop()
    assert done["State"] == "Success"
    assert [s for s in seen if ORPHANS.search(s)] == []
    assert [s for s in seen if WORKER_EXISTS.match(s)] == []


async def test_a_page_of_tasks_makes_only_its_tasks_resources(
    hub: RunningHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /api/tasks?take=1 over three tasks: one resource made, all three counted
    (before: a resource for each, the page cut from them after; a caller waiting for
    200 queued tasks to drain paid 200 on each look)."""
    tasks = [await submit(hub.api, ScriptBody="echo hi", Syntax="bash") for _ in range(3)]
    for task in tasks:
        await finished(hub.api, task)
    made: list[str] = []
    real = api_tasks.task_resource

    def counted(row: Any, now: Any) -> dict[str, Any]:
        made.append(row["id"])
        return real(row, now)

    monkeypatch.setattr(api_tasks, "task_resource", counted)
    page = await hub.api.get("/api/tasks", params={"take": "1", "name": "AdHocScript"})
    assert (page["TotalResults"], [t["Id"] for t in page["Items"]]) == (3, [tasks[-1]["Id"]])
    assert len(made) == 1
    made.clear()
    page = await hub.api.get("/api/tasks", params={"skip": "1", "ids": tasks[0]["Id"]})
    assert (page["TotalResults"], page["Items"], made) == (1, [], [])


async def test_a_page_of_tasks_is_chosen_by_the_database(hub: RunningHub) -> None:
    """GET /api/tasks reads only its page's rows (LIMIT/OFFSET) and counts the rest in
    the database (before: every matching row read, then filtered and cut in Python);
    ids and partialName match as before, in SQL."""
    tasks = [await submit(hub.api, ScriptBody="echo hi", Syntax="bash") for _ in range(3)]
    for task in tasks:
        await finished(hub.api, task)
    with statements_run(hub) as seen:
        page = await hub.api.get("/api/tasks", params={"take": "1", "skip": "1"})
    assert (page["TotalResults"], [t["Id"] for t in page["Items"]]) == (3, [tasks[1]["Id"]])
    [query] = [s for s in seen if READS.search(s) and "count(" not in s.lower()]
    assert re.search(r"\bLIMIT\b.*\bOFFSET\b", query, re.DOTALL), query

    async def found(**params: str) -> tuple[int, list[str]]:
        page = await hub.api.get("/api/tasks", params=params)
        return page["TotalResults"], [t["Id"] for t in page["Items"]]

    newest, oldest = tasks[-1]["Id"], tasks[0]["Id"]
    assert await found(partialName="HOCscr", take="1") == (3, [newest])
    assert await found(partialName="%") == (0, [])  # a wildcard is a character here
    assert await found(ids=f"{oldest},{newest}") == (2, [newest, oldest])
    assert await found(ids=oldest.lower()) == (0, [])  # not an id the hub writes
    assert await found(ids="ServerTasks-99999999999") == (0, [])  # beyond any INTEGER key
    assert await found(partialName="Ad\x00Hoc") == (0, [])  # PostgreSQL refuses NUL
    assert await found(name="AdHocScript,Health", take="2") == (3, [newest, tasks[1]["Id"]])


def _outside_requests() -> bool:
    """Whether the running asyncio task is not one of aiohttp's request handlers."""
    task = asyncio.current_task()
    coroutine = task.get_coro() if task is not None else None
    return getattr(coroutine, "__qualname__", "") not in REQUEST_TASKS


UNFINISHED = "Queued,Executing,Cancelling"
REQUEST_TASKS = {"RequestHandler.start", "RequestHandler._handle_request"}


@contextmanager
def runner_work(engine: sa.Engine) -> Iterator[tuple[list[str], list[str]]]:
    """The connections taken (the statement each began with) and the statements run,
    while the block runs, outside the API's request handlers: the runner's and the
    step engine's."""
    connections: list[str] = []
    statements: list[str] = []
    opened: set[int] = set()

    def executed(conn: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if not _outside_requests() or statement.startswith("BEGIN"):
            return
        statements.append(statement)
        if id(conn) not in opened:
            opened.add(id(conn))
            connections.append(statement)

    def released(conn: sa.Connection) -> None:
        opened.discard(id(conn))

    sa.event.listen(engine, "before_cursor_execute", executed)
    sa.event.listen(engine, "commit", released)
    sa.event.listen(engine, "rollback", released)
    try:
        yield connections, statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", executed)
        sa.event.remove(engine, "commit", released)
        sa.event.remove(engine, "rollback", released)


async def test_a_one_step_task_takes_few_connections(hub: RunningHub, tmp_path: Path) -> None:
    """The runner and the step engine, for a one-step task: one look at the queue for
    every kind (before: one for health tasks, one for the others, at each wake), none
    after a claim that saw no other task queued; a claimed task's steps not read back
    before its lease, nor after it (the INSERT returns them); the worker chosen on the
    lease's connection and not read again to connect; no look before the claim of a
    task queued through this node (one is there). Before: 12 connections, then 6 and
    16 statements; now 5 and 15 (the look after the task's end included)."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    assert hub.server.store is not None

    async def idle() -> bool:  # the worker's first health check ended
        page = await hub.api.get("/api/tasks", params={"states": UNFINISHED, "take": "1"})
        return page["TotalResults"] == 0

    await eventually(idle, "no task queued or running")
    try:
        with runner_work(hub.server.store.engine.sync_engine) as (connections, statements):
            task = await submit(hub.api, ScriptBody="echo hi", Syntax="bash")
            done = await finished(hub.api, task)
        assert done["State"] == "Success"
        # a margin of one look for a stray wake (the health check's end, say)
        assert len(connections) <= 6, connections
        assert len(statements) <= 17, statements
    finally:
        agent.stop()


async def test_a_task_queued_here_is_claimed_without_a_look_first(
    hub: RunningHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks queued through this node's API wake its runner, which claims each in a
    write transaction without reading the queue first: a look that finds a task is
    a read for nothing when the runner was told one is there (before: one per task).
    Nor does a task's end look, when its claim saw nothing behind it and nothing was
    queued since (before: one look per end, finding nothing)."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")

    async def idle() -> bool:  # the worker's first health check ended
        page = await hub.api.get("/api/tasks", params={"states": UNFINISHED, "take": "1"})
        return page["TotalResults"] == 0

    await eventually(idle, "no task queued or running")
    real, looks = store_tasks.next_queued, []

    async def counted(*args: Any, **kwargs: Any) -> bool:
        found = await real(*args, **kwargs)
        looks.append(found)
        return found

    monkeypatch.setattr(store_tasks, "next_queued", counted)
    # no look on the clock while the tasks run, but for the one the runner's wait
    # begun before this may still make (another node's tasks are looked for so)
    monkeypatch.setattr(runner, "IDLE_POLL", 3600.0)
    try:
        for _ in range(3):
            task = await submit(hub.api, ScriptBody="echo hi", Syntax="bash")
            assert (await finished(hub.api, task))["State"] == "Success"
    finally:
        agent.stop()
    assert looks.count(True) == 0, looks
    assert len(looks) <= 1, looks


QUEUE_LOOK = re.compile(
    r"FROM server_tasks\s+WHERE server_tasks\.state = \S+( AND .*)? ORDER BY", re.I
)
CANCELS_READ = re.compile(r"server_tasks\.cancel_requested IS (1|true)", re.I)


async def test_tasks_queued_behind_a_full_cap_cost_no_looks(
    hub: RunningHub, tmp_path: Path
) -> None:
    """Twenty tasks queued behind the cap of 5 (the first five wait for a file): a task
    queued while the cap is full wakes no look (its slot comes with a running task's
    end, which looks); a claim that saw a capped task behind it, the cap then full,
    looks for no health task (they come first: none is queued); the running tasks'
    cancels are read on a wake that may ask one, or every CANCEL_LOOK s, not on each
    end nor each task queued; a slot freed while the last claim saw a task behind its
    own is filled without a look first. Before: about 3.5 looks at the queue per task
    (its claim's included) and a read of the cancels per task; then about 2 and
    none; now about 1."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    assert hub.server.store is not None

    async def running(count: int) -> bool:
        page = await hub.api.get("/api/tasks", params={"states": "Executing", "take": "1"})
        return bool(page["TotalResults"] == count)

    await eventually(lambda: running(0), "the worker's first health check ended")
    count = 20
    gates = [tmp_path / f"go-{number}" for number in range(count)]
    try:
        clock = asyncio.get_running_loop().time
        with runner_work(hub.server.store.engine.sync_engine) as (_, statements):
            began = clock()
            tasks = [
                await submit(hub.api, ScriptBody=f'while [ ! -e "{gate}" ]; do sleep 0.05; '
                             'done; echo hi', Syntax="bash")
                for gate in gates
            ]  # fmt: skip
            done = []
            # the tasks end one at a time, each end a wake of its own with tasks queued
            for number, (gate, task) in enumerate(zip(gates, tasks, strict=True)):
                await eventually(lambda n=number: running(min(5, count - n)), "the cap full")
                gate.touch()
                done.append(await finished(hub.api, task))
            took = clock() - began
        assert {task["State"] for task in done} == {"Success"}
        looks = [s for s in statements if QUEUE_LOOK.search(s)]
        cancels = [s for s in statements if CANCELS_READ.search(s)]
        # a claim's read per task, and a margin for a stray wake: no look before the
        # claim at each end, the claim before having seen a task behind its own
        assert len(looks) <= count + 6, len(looks)
        # a read each second at most while tasks run (runner.CANCEL_LOOK; before: one
        # at each end and each task queued, about 30 here however fast)
        assert len(cancels) <= took / 1.0 + 2, (len(cancels), took)
    finally:
        agent.stop()
