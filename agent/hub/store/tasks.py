"""Server tasks in the store: queued, claimed by one hub node, logged, finished.

Claiming is a conditional update (``... WHERE state = 'Queued'``), so that two
nodes on one PostgreSQL never run the same task; every state a task passes
through is written before it is acted on. A claim records the node and the
claiming process's lease token (``Owner``), and every write a running task
makes is conditional on the task being still that owner's and still running: a
process that lost its lease (it was frozen, another took the node over and
failed the task) cannot write its end over the one written since.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub.store import tables as t
from agent.hub.store.records import Row, among, fetch_all, fetch_one

QUEUED, EXECUTING, CANCELLING = "Queued", "Executing", "Cancelling"
SUCCESS, FAILED, CANCELED, TIMED_OUT = "Success", "Failed", "Canceled", "TimedOut"
FINISHED = (SUCCESS, FAILED, CANCELED, TIMED_OUT)
STATES = (QUEUED, EXECUTING, CANCELLING, *FINISHED)
RUNNING = (EXECUTING, CANCELLING)


@dataclass(frozen=True)
class Owner:
    """Who runs a task: the node's name and the lease token of its process."""

    node: str
    token: str


class TakenOver(Exception):
    """The task is no longer this process's (another node failed it after this one's
    lease expired): nothing more of it may be written here."""


async def submit(
    conn: AsyncConnection,
    space_id: int,
    name: str,
    description: str,
    arguments: dict[str, Any],
    now: datetime,
    queued_by: str = "hub",
) -> int:
    """Queue a task; ``queued_by`` is the API key's name that asked for it ("hub" when
    the hub queues it itself: the scheduler's health checks)."""
    row = await queue(conn, space_id, name, description, arguments, now, queued_by)
    return int(row["id"])


async def queue(
    conn: AsyncConnection,
    space_id: int,
    name: str,
    description: str,
    arguments: dict[str, Any],
    now: datetime,
    queued_by: str = "hub",
) -> Row:
    """``submit``, returning the queued task's row as ``task`` would read it (from the
    insert itself: no read after it)."""
    values = {
        "space_id": space_id,
        "name": name,
        "description": description,
        "arguments": arguments,
        "state": QUEUED,
        "queue_time": now,
        "has_warnings_or_errors": False,
        "cancel_requested": False,
        "queued_by": queued_by,
    }
    row = (await conn.execute(_QUEUE, values)).mappings().one()
    return dict(row)


async def counts_by_state(conn: AsyncConnection, space_id: int) -> dict[str, int]:
    """How many of the space's tasks are in each state (Octopus's ``TotalCounts``):
    every state, 0 for those no task is in."""
    tasks = t.server_tasks
    query = (
        sa.select(tasks.c.state, sa.func.count())
        .where(tasks.c.space_id == space_id)
        .group_by(tasks.c.state)
    )
    found = {state: number for state, number in (await conn.execute(query)).all()}
    return {state: int(found.get(state, 0)) for state in STATES}


# The statements of a task's every step are built once, here, their values given as
# they run (bindparams): building a statement and computing its cache key cost the
# hub's event loop several times SQLite's run of it (docs/decisions.md, "The hub's
# hot statements are built once").
_tasks = t.server_tasks
_TASK = sa.select(_tasks).where(_tasks.c.id == sa.bindparam("task"))
_OWNED = (
    among(_tasks.c.state, RUNNING),
    _tasks.c.server_node == sa.bindparam("owner_node"),
    _tasks.c.server_token == sa.bindparam("owner_token"),
)
_ENSURE_OWNED = (
    sa.select(_tasks.c.id).where(_tasks.c.id == sa.bindparam("task"), *_OWNED).with_for_update()
)
_FINISH_OWNED = sa.update(_tasks).where(_tasks.c.id == sa.bindparam("task"), *_OWNED)
_CLAIM = (
    sa.update(_tasks)
    .where(_tasks.c.id == sa.bindparam("task"), _tasks.c.state == QUEUED)
    .returning(*_tasks.c)
)
_CANCELS = sa.select(_tasks.c.id).where(
    _tasks.c.id.in_(sa.bindparam("tasks", expanding=True)), _tasks.c.cancel_requested.is_(True)
)
_QUEUE = sa.insert(_tasks).returning(*_tasks.c)
_START_ACTIVITY = sa.insert(t.task_activities).returning(t.task_activities.c.id)
_END_ACTIVITY = sa.update(t.task_activities).where(
    t.task_activities.c.id == sa.bindparam("activity")
)
_LOG = sa.insert(t.task_log)


def _owner(owner: Owner) -> dict[str, str]:
    return {"owner_node": owner.node, "owner_token": owner.token}


async def task(conn: AsyncConnection, task_id: int) -> Row | None:
    return await fetch_one(conn, _TASK, {"task": task_id})


def _oldest_queued(
    names: Collection[str] | None, excluding: Collection[str] | None
) -> sa.Select[Any]:
    return _oldest_of(_frozen(names), _frozen(excluding), frozenset(), 1)


def _frozen(names: Collection[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(names)


@functools.cache
def _oldest_of(
    names: frozenset[str] | None,
    excluding: frozenset[str] | None,
    first: frozenset[str],
    count: int,
) -> sa.Select[Any]:
    """The ``count`` oldest queued tasks (of ``names``, not of ``excluding``), those
    named in ``first`` before the others; built once per filter."""
    query = sa.select(_tasks.c.id, _tasks.c.name).where(_tasks.c.state == QUEUED)
    if names is not None:
        query = query.where(among(_tasks.c.name, sorted(names)))
    if excluding is not None:
        query = query.where(sa.not_(among(_tasks.c.name, sorted(excluding))))
    order: list[Any] = [_tasks.c.queue_time, _tasks.c.id]
    if first:
        order.insert(0, sa.case((among(_tasks.c.name, sorted(first)), 0), else_=1))
    return query.order_by(*order).limit(count)


async def any_queued(
    conn: AsyncConnection,
    names: Collection[str] | None = None,
    excluding: Collection[str] | None = None,
) -> bool:
    """Whether ``claim`` with the same filters would find a task now (a read: the
    runner's looks at an empty queue then take no write lock)."""
    return await fetch_one(conn, _oldest_queued(names, excluding)) is not None


async def next_queued(
    conn: AsyncConnection, names: frozenset[str] | None = None, first: frozenset[str] = frozenset()
) -> bool:
    """Whether ``claim_next`` with the same filters would find a task now (a read: the
    runner's looks at an empty queue then take no write lock). One look for every
    kind: ``names`` None is any task."""
    return await fetch_one(conn, _oldest_of(names, None, first, 1)) is not None


async def cancels_requested(conn: AsyncConnection, task_ids: Collection[int]) -> set[int]:
    """Which of ``task_ids`` have a cancel requested (one read for all of them)."""
    if not task_ids:
        return set()
    rows = await fetch_all(conn, _CANCELS, {"tasks": list(task_ids)})
    return {row["id"] for row in rows}


async def claim(
    conn: AsyncConnection,
    owner: Owner,
    now: datetime,
    names: Collection[str] | None = None,
    excluding: Collection[str] | None = None,
) -> Row | None:
    """Take the oldest queued task for ``owner`` (of ``names`` only, or not of
    ``excluding``, when given); None if there is none (or another node took it first)."""
    oldest = await fetch_one(conn, _oldest_queued(names, excluding))
    if oldest is None:
        return None
    return await _take(conn, oldest["id"], owner, now)


async def claim_next(
    conn: AsyncConnection,
    owner: Owner,
    now: datetime,
    names: frozenset[str] | None = None,
    first: frozenset[str] = frozenset(),
) -> tuple[Row | None, str | None]:
    """Take the oldest queued task (of ``names`` only, when given; those named in
    ``first`` before any other) for ``owner``: its row (None if there is none, or
    another node took it first) and whether another such task was queued behind it
    then: its name, None if none (the caller's next look may be spared)."""
    oldest = await fetch_all(conn, _oldest_of(names, None, first, 2))
    if not oldest:
        return None, None
    behind = oldest[1]["name"] if len(oldest) > 1 else None
    return await _take(conn, oldest[0]["id"], owner, now), behind


async def _take(conn: AsyncConnection, task_id: int, owner: Owner, now: datetime) -> Row | None:
    """The queued task made ``owner``'s, its row as it now is; None if it was not queued."""
    values = {"state": EXECUTING, "start_time": now, "server_node": owner.node,
              "server_token": owner.token}  # fmt: skip
    return await fetch_one(conn, _CLAIM, {"task": task_id, **values})


async def finish(
    conn: AsyncConnection,
    task_id: int,
    state: str,
    now: datetime,
    error: str | None = None,
    warnings: bool = False,
    owner: Owner | None = None,
    states: tuple[str, ...] = RUNNING,
) -> bool:
    """Write the task's end if it is still in one of ``states`` (and still ``owner``'s,
    when given). False if it matched nothing: another wrote its end first."""
    values = {"state": state, "completed_time": now, "error_message": error,
              "has_warnings_or_errors": warnings or state != SUCCESS}  # fmt: skip
    if owner is not None:
        ended = await conn.execute(_FINISH_OWNED, {"task": task_id, **_owner(owner), **values})
    else:
        ended = await conn.execute(_finishing(states), {"task": task_id, **values})
    return ended.rowcount == 1


@functools.cache
def _finishing(states: tuple[str, ...]) -> sa.Update:
    where = (_tasks.c.id == sa.bindparam("task"), among(_tasks.c.state, states))
    return sa.update(_tasks).where(*where)


async def ensure_owned(conn: AsyncConnection, task_id: int, owner: Owner) -> None:
    """TakenOver unless the task is still running as ``owner``'s. Called first in a
    transaction that writes for a running task (its activities, log lines and the
    workers' health): on PostgreSQL the row is locked until the commit, so no
    take-over falls between this check and those writes; SQLite runs one writing
    transaction at a time."""
    row = await fetch_one(conn, _ENSURE_OWNED, {"task": task_id, **_owner(owner)})
    if row is None:
        raise TakenOver(f"ServerTasks-{task_id} was taken over by another node")


async def request_cancel(conn: AsyncConnection, task_id: int, now: datetime) -> str | None:
    """Cancel a task: a queued one at once, a running one through Cancelling.
    Returns its state afterwards (None if it does not exist)."""
    row = await task(conn, task_id)
    if row is None:
        return None
    tasks = t.server_tasks
    if row["state"] == QUEUED and await finish(
        conn, task_id, CANCELED, now, "canceled before it started", states=(QUEUED,)
    ):
        return CANCELED
    if row["state"] in (QUEUED, EXECUTING):  # a queued one may just have been claimed
        cancelling = await conn.execute(
            sa.update(tasks)
            .where(tasks.c.id == task_id, tasks.c.state == EXECUTING)
            .values(state=CANCELLING, cancel_requested=True)
        )
        if cancelling.rowcount == 1:
            return CANCELLING
    row = await task(conn, task_id)
    return None if row is None else str(row["state"])


STOPPED = "the hub stopped while this task ran"


async def abandon_unfinished(
    conn: AsyncConnection,
    node: str,
    now: datetime,
    reason: str = STOPPED,
    keep: Collection[str] = (),
) -> list[int]:
    """Tasks this node was running when it stopped: failed with ``reason``. Returns their
    ids. Only a process that holds the node's lease, or that has just removed the
    expired lease of a node that died (agent.hub.lease), may call it: no other live
    process runs them then. Node names are compared whatever their case. Tasks named
    in ``keep`` (the resumable ones) are left for ``take_over``."""
    tasks = t.server_tasks
    rows = await fetch_all(
        conn,
        sa.select(tasks.c.id).where(
            sa.func.lower(tasks.c.server_node) == sa.func.lower(sa.literal(node)),
            tasks.c.state.in_(RUNNING),
            tasks.c.name.not_in(list(keep)),
        ),
    )
    failed = [row["id"] for row in rows if await finish(conn, row["id"], FAILED, now, reason)]
    return failed


def _orphans_of(node: str, owner: Owner, names: Collection[str]) -> list[sa.ColumnElement[bool]]:
    tasks = t.server_tasks
    return [
        sa.func.lower(tasks.c.server_node) == sa.func.lower(sa.literal(node)),
        tasks.c.state.in_(RUNNING),
        tasks.c.name.in_(list(names)),
        sa.or_(tasks.c.server_token.is_(None), tasks.c.server_token != owner.token),
    ]


async def orphans(
    conn: AsyncConnection, node: str, owner: Owner, names: Collection[str]
) -> list[int]:
    """The ids of the tasks ``take_over`` would take (a read: no lock taken)."""
    query = sa.select(t.server_tasks.c.id).where(*_orphans_of(node, owner, names))
    return [row["id"] for row in await fetch_all(conn, query.order_by(t.server_tasks.c.id))]


async def take_over(
    conn: AsyncConnection, node: str, owner: Owner, names: Collection[str]
) -> list[Row]:
    """The running tasks named ``names`` of this node that are not ``owner``'s (a
    previous process of this node left them, or ``adopt`` moved a dead node's here),
    made ``owner``'s. Only the holder of the node's lease may call it: the process
    that ran them is gone (same rule as ``abandon_unfinished``). Returns them, oldest
    first."""
    tasks = t.server_tasks
    where = _orphans_of(node, owner, names)
    numbers = await orphans(conn, node, owner, names)
    if not numbers:
        return []
    await conn.execute(
        sa.update(tasks)
        .where(tasks.c.id.in_(numbers), *where)
        .values(server_node=owner.node, server_token=owner.token)
    )
    query = sa.select(tasks).where(tasks.c.id.in_(numbers)).order_by(tasks.c.id)
    return await fetch_all(conn, query)


async def adopt(conn: AsyncConnection, dead: str, node: str, names: Collection[str]) -> list[int]:
    """Move the running tasks named ``names`` of the node ``dead`` (whose expired lease
    the caller has just removed) to ``node``, for its runner to take over. Returns
    their ids."""
    if not names:
        return []
    tasks = t.server_tasks
    where = [
        sa.func.lower(tasks.c.server_node) == sa.func.lower(sa.literal(dead)),
        tasks.c.state.in_(RUNNING),
        tasks.c.name.in_(list(names)),
    ]
    rows = await fetch_all(conn, sa.select(tasks.c.id).where(*where).order_by(tasks.c.id))
    if rows:
        await conn.execute(sa.update(tasks).where(*where).values(server_node=node))
    return [row["id"] for row in rows]


async def start_activity(conn: AsyncConnection, task_id: int, name: str, now: datetime) -> int:
    values = {"task_id": task_id, "name": name, "status": "Running", "started": now}
    return int((await conn.execute(_START_ACTIVITY, values)).scalar_one())


async def end_activity(conn: AsyncConnection, activity_id: int, status: str, now: datetime) -> None:
    await conn.execute(_END_ACTIVITY, {"activity": activity_id, "status": status, "ended": now})


async def log(
    conn: AsyncConnection,
    task_id: int,
    activity_id: int | None,
    category: str,
    message: str,
    now: datetime,
) -> None:
    values = {"task_id": task_id, "activity_id": activity_id, "category": category,
              "message": message, "occurred": now}  # fmt: skip
    await conn.execute(_LOG, values)


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
