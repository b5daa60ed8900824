"""What a task costs the store: the write transactions that touch a one-step task's
rows (its queueing, claim, step, activity, log and end), counted on the real hub's
engine as they commit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.helpers.hub import RunningHub
from tests.integration.hub.tasks_helpers import add_worker, finished, submit

TASK_TABLES = re.compile(
    r"^\s*(INSERT INTO|UPDATE)\s+\"?(server_tasks|task_steps|task_activities|task_log)\b",
    re.IGNORECASE,
)


@contextmanager
def task_commits(engine: sa.Engine) -> Iterator[list[int]]:
    """A list that counts (its length) the commits of transactions that wrote a task's
    rows while the block runs."""
    commits: list[int] = []
    writing: set[int] = set()

    def executed(conn: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if TASK_TABLES.match(statement):
            writing.add(id(conn))

    def committed(conn: sa.Connection) -> None:
        if id(conn) in writing:
            writing.discard(id(conn))
            commits.append(1)

    sa.event.listen(engine, "before_cursor_execute", executed)
    sa.event.listen(engine, "commit", committed)
    try:
        yield commits
    finally:
        sa.event.remove(engine, "before_cursor_execute", executed)
        sa.event.remove(engine, "commit", committed)


async def test_a_one_step_task_commits_five_times(hub: RunningHub, tmp_path: Path) -> None:
    """Queued (the API), claimed, its step leased Running with its activity, its lines,
    and its end with its step's: no commit of its own for the activity's Running, the
    step's Running or the step's end (8 before)."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    assert hub.server.store is not None
    try:
        with task_commits(hub.server.store.engine.sync_engine) as commits:
            task = await submit(hub.api, ScriptBody="echo hi", Syntax="bash")
            done = await finished(hub.api, task)
        assert done["State"] == "Success"
        assert len(commits) == 5
        details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
        [step] = details["ActivityLogs"][0]["Children"]
        assert (step["Status"], [e["MessageText"] for e in step["LogElements"]]) == (
            "Success",
            ["hi"],
        )
    finally:
        agent.stop()
