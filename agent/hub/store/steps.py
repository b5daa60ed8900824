"""A task's steps in the store: one ``task_steps`` row per invocation on one worker.

A step is leased (its row inserted, Pending, with the worker and the script
ticket) before its script starts, so that a restarted node re-attaches by
ticket instead of starting it again. Its log lines are stored with its
``next_log_sequence`` in one transaction: after a restart the lines below that
sequence are known to be stored, the ones from it are not.

States: Pending (leased, its script not sent yet) -> Running (its start is being
or was sent: the worker may be running it) -> Success | Failed | Canceled | TimedOut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub.store import tables as t
from agent.hub.store.records import Row, among, fetch_all, fetch_one
from agent.hub.store.worker_queries import chunks

PENDING, RUNNING = "Pending", "Running"
ACTIVE = (PENDING, RUNNING)
ENDED = ("Success", "Failed", "Canceled", "TimedOut")


# Built once, their values given as they run (agent.hub.store.tasks says why)
_steps = t.task_steps
_LEASE = sa.insert(_steps).returning(*_steps.c)
_STEPS_OF = sa.select(_steps).where(_steps.c.task_id == sa.bindparam("task")).order_by(_steps.c.id)
_STEP = sa.update(_steps).where(_steps.c.id == sa.bindparam("step"))
_ACTIVITY = sa.update(t.task_activities).where(t.task_activities.c.id == sa.bindparam("activity"))
_LINES = sa.insert(t.task_log)
_BUSY = (
    sa.select(_steps.c.worker_id, sa.func.count())
    .where(_steps.c.worker_id.in_(sa.bindparam("workers", expanding=True)))
    .where(among(_steps.c.state, ACTIVE))
    .group_by(_steps.c.worker_id)
)


@dataclass(frozen=True)
class Lease:
    """Who runs one step: the worker (None for the built-in one), shown as ``name``."""

    worker_id: int | None
    name: str
    builtin: bool
    ticket: str
    started: datetime | None = None  # leased Running, its start about to be sent, if set


async def lease(
    conn: AsyncConnection,
    task_id: int,
    leases: Sequence[Lease],
    activities: Sequence[int],
    node: str,
) -> list[Row]:
    """Insert the steps of a task, each with its activity (same order): Pending, or
    Running from ``started`` for a lease that has it. Returns their rows as
    ``steps_of`` would read them, in the same order."""
    rows = []
    for step, activity in zip(leases, activities, strict=True):
        values: dict[str, Any] = {
            "task_id": task_id, "activity_id": activity, "worker_id": step.worker_id,
            "worker_name": step.name, "builtin": step.builtin, "ticket": step.ticket,
            "state": PENDING if step.started is None else RUNNING, "started": step.started,
            "next_log_sequence": 0, "output_variables": [], "server_node": node,
        }  # fmt: skip
        row = await fetch_one(conn, _LEASE, values)
        assert row is not None  # RETURNING of an INSERT: its row
        rows.append(row)
    return rows


async def steps_of(conn: AsyncConnection, task_id: int) -> list[Row]:
    """The task's steps, in the order they were leased."""
    return await fetch_all(conn, _STEPS_OF, {"task": task_id})


async def activity_status(
    conn: AsyncConnection, activity_id: int, status: str, started: datetime | None = None
) -> None:
    """A step's activity shown ``status`` (Pending, Running) while it has not ended."""
    values: dict[str, Any] = {"status": status, "ended": None}
    if started is not None:
        values["started"] = started
    await conn.execute(_ACTIVITY, {"activity": activity_id, **values})


async def mark_running(conn: AsyncConnection, step_id: int, now: datetime) -> None:
    await conn.execute(_STEP, {"step": step_id, "state": RUNNING, "started": now})


async def move(
    conn: AsyncConnection, step: Row, worker_id: int | None, name: str, builtin: bool
) -> Row:
    """Give a step whose worker refused it before anything ran (its agent drains) to
    another worker: Pending again (the next one prepares it afresh), its activity
    named after the new worker, its ticket kept (no agent holds it). Returns the row
    as it now is."""
    values = {"worker_id": worker_id, "worker_name": name, "builtin": builtin,
              "state": PENDING, "started": None}  # fmt: skip
    await conn.execute(
        sa.update(t.task_steps).where(t.task_steps.c.id == step["id"]).values(**values)
    )
    await conn.execute(
        sa.update(t.task_activities)
        .where(t.task_activities.c.id == step["activity_id"])
        .values(name=name, status="Pending")
    )
    return {**step, **values}


async def store_lines(
    conn: AsyncConnection,
    task_id: int,
    step: Row,
    lines: Sequence[tuple[str, str]],
    next_sequence: int,
    now: datetime,
) -> None:
    """Append ``(category, message)`` lines to the step's activity and move its cursor
    to ``next_sequence``: called in one transaction, so a restart sees both or neither."""
    if lines:
        await conn.execute(
            _LINES,
            [
                {
                    "task_id": task_id,
                    "activity_id": step["activity_id"],
                    "category": category,
                    "message": message,
                    "occurred": now,
                }
                for category, message in lines
            ],
        )
    await conn.execute(_STEP, {"step": step["id"], "next_log_sequence": next_sequence})


async def end(
    conn: AsyncConnection,
    step_id: int,
    state: str,
    exit_code: int | None,
    error: str | None,
    output_variables: list[dict[str, Any]],
    now: datetime,
) -> None:
    values = {"state": state, "exit_code": exit_code, "error": error,
              "output_variables": output_variables, "ended": now}  # fmt: skip
    await conn.execute(_STEP, {"step": step_id, **values})


async def busy(conn: AsyncConnection, worker_ids: Sequence[int]) -> dict[int, int]:
    """How many active (Pending or Running) steps each of ``worker_ids`` has, in any task."""
    if not worker_ids:
        return {}
    rows = (await conn.execute(_BUSY, {"workers": list(worker_ids)})).all()
    counts = {row[0]: int(row[1]) for row in rows}
    return {worker: counts.get(worker, 0) for worker in worker_ids}


async def running_on(conn: AsyncConnection, worker_ids: Sequence[int]) -> dict[int, int]:
    """How many steps are pending or running on each of ``worker_ids`` (those with
    none are left out)."""
    steps = t.task_steps
    running: dict[int, int] = {}
    for part in chunks(worker_ids):
        query = (
            sa.select(steps.c.worker_id, sa.func.count())
            .where(steps.c.worker_id.in_(part), steps.c.state.in_(ACTIVE))
            .group_by(steps.c.worker_id)
        )
        for worker_id, number in (await conn.execute(query)).all():
            running[int(worker_id)] = int(number)
    return running
