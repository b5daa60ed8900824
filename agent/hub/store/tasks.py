"""Server tasks in the store: queued, claimed by one hub node, logged, finished.

Claiming is a conditional update (``... WHERE state = 'Queued'``), so that two
nodes on one PostgreSQL never run the same task; every state a task passes
through is written before it is acted on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all, fetch_one, insert

QUEUED, EXECUTING, CANCELLING = "Queued", "Executing", "Cancelling"
SUCCESS, FAILED, CANCELED, TIMED_OUT = "Success", "Failed", "Canceled", "TimedOut"
FINISHED = (SUCCESS, FAILED, CANCELED, TIMED_OUT)
STATES = (QUEUED, EXECUTING, CANCELLING, *FINISHED)


async def submit(
    conn: AsyncConnection,
    space_id: int,
    name: str,
    description: str,
    arguments: dict[str, Any],
    now: datetime,
) -> int:
    return await insert(
        conn,
        t.server_tasks,
        {
            "space_id": space_id,
            "name": name,
            "description": description,
            "arguments": arguments,
            "state": QUEUED,
            "queue_time": now,
            "has_warnings_or_errors": False,
            "cancel_requested": False,
        },
    )


async def task(conn: AsyncConnection, task_id: int) -> Row | None:
    return await fetch_one(conn, sa.select(t.server_tasks).where(t.server_tasks.c.id == task_id))


async def claim(conn: AsyncConnection, node: str, now: datetime) -> Row | None:
    """Take the oldest queued task for ``node``; None if there is none (or another
    node took it first)."""
    tasks = t.server_tasks
    oldest = await fetch_one(
        conn,
        sa.select(tasks.c.id)
        .where(tasks.c.state == QUEUED)
        .order_by(tasks.c.queue_time, tasks.c.id)
        .limit(1),
    )
    if oldest is None:
        return None
    taken = await conn.execute(
        sa.update(tasks)
        .where(tasks.c.id == oldest["id"], tasks.c.state == QUEUED)
        .values(state=EXECUTING, start_time=now, server_node=node)
    )
    return await task(conn, oldest["id"]) if taken.rowcount == 1 else None


async def finish(
    conn: AsyncConnection,
    task_id: int,
    state: str,
    now: datetime,
    error: str | None = None,
    warnings: bool = False,
) -> None:
    await conn.execute(
        sa.update(t.server_tasks)
        .where(t.server_tasks.c.id == task_id)
        .values(
            state=state,
            completed_time=now,
            error_message=error,
            has_warnings_or_errors=warnings or state != SUCCESS,
        )
    )


async def request_cancel(conn: AsyncConnection, task_id: int, now: datetime) -> str | None:
    """Cancel a task: a queued one at once, a running one through Cancelling.
    Returns its state afterwards (None if it does not exist)."""
    row = await task(conn, task_id)
    if row is None:
        return None
    if row["state"] == QUEUED:
        await finish(conn, task_id, CANCELED, now, "canceled before it started")
        return CANCELED
    if row["state"] == EXECUTING:
        await conn.execute(
            sa.update(t.server_tasks)
            .where(t.server_tasks.c.id == task_id)
            .values(state=CANCELLING, cancel_requested=True)
        )
        return CANCELLING
    return str(row["state"])


STOPPED = "the hub stopped while this task ran"


async def abandon_unfinished(
    conn: AsyncConnection, node: str, now: datetime, reason: str = STOPPED
) -> list[int]:
    """Tasks this node was running when it stopped: failed with ``reason``. Returns their
    ids. Only the process holding the node's lease may call it (agent.hub.lease):
    another one with the same name may be running them."""
    tasks = t.server_tasks
    rows = await fetch_all(
        conn,
        sa.select(tasks.c.id).where(
            tasks.c.server_node == node, tasks.c.state.in_((EXECUTING, CANCELLING))
        ),
    )
    for row in rows:
        await finish(conn, row["id"], FAILED, now, reason)
    return [row["id"] for row in rows]


async def start_activity(conn: AsyncConnection, task_id: int, name: str, now: datetime) -> int:
    return await insert(
        conn,
        t.task_activities,
        {"task_id": task_id, "name": name, "status": "Running", "started": now},
    )


async def end_activity(conn: AsyncConnection, activity_id: int, status: str, now: datetime) -> None:
    await conn.execute(
        sa.update(t.task_activities)
        .where(t.task_activities.c.id == activity_id)
        .values(status=status, ended=now)
    )


async def log(
    conn: AsyncConnection,
    task_id: int,
    activity_id: int | None,
    category: str,
    message: str,
    now: datetime,
) -> None:
    await conn.execute(
        sa.insert(t.task_log).values(
            task_id=task_id,
            activity_id=activity_id,
            category=category,
            message=message,
            occurred=now,
        )
    )


async def activities(conn: AsyncConnection, task_id: int) -> list[Row]:
    return await fetch_all(
        conn,
        sa.select(t.task_activities)
        .where(t.task_activities.c.task_id == task_id)
        .order_by(t.task_activities.c.id),
    )


async def log_of(conn: AsyncConnection, task_id: int) -> list[Row]:
    return await fetch_all(
        conn, sa.select(t.task_log).where(t.task_log.c.task_id == task_id).order_by(t.task_log.c.id)
    )
