"""The machine policies' clock: every so often, queue a Health task for the workers
whose policy says a check is due and that no queued or running check covers.

Every TICK it looks at every worker (a few columns each); after a change to some
workers only at those, so that a registration or an edit costs what it touches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub import ids
from agent.hub.rules.policies import due_workers
from agent.hub.store import Store
from agent.hub.store import tables as t
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import default_space_id, fetch_all

log = logging.getLogger("agent.hub.scheduler")

TICK = 30.0  # seconds between looks at the policies


async def schedule_once(
    store: Store, now: datetime, only: Collection[int] | None = None
) -> int | None:
    """Queue one Health task for every worker due now (of ``only``, if given: a look
    that costs what they do, after a change to them); returns its id, or None.

    What is due is read first, outside the write transaction; the pending checks
    are read only when a worker is due."""
    async with store.connect() as conn:
        due = await _due(conn, now, only)
        if not due:
            return None
        pending = await fetch_all(
            conn,
            sa.select(t.server_tasks.c.arguments).where(
                t.server_tasks.c.name == "Health",
                t.server_tasks.c.state.in_(
                    (store_tasks.QUEUED, store_tasks.EXECUTING, store_tasks.CANCELLING)
                ),
            ),
        )
    covered = _covered(row["arguments"] for row in pending)
    if covered is None:  # a check of every worker is on its way
        return None
    machines = [ids.format_id(ids.WORKER, number) for number in due if number not in covered]
    if not machines:
        return None
    async with store.transaction() as conn:
        return await store_tasks.submit(
            conn,
            await default_space_id(conn),
            "Health",
            f"Scheduled health check of {len(machines)} worker(s)",
            {"MachineIds": machines, "Scheduled": True},
            now,
        )


async def _due(conn: AsyncConnection, now: datetime, only: Collection[int] | None) -> list[int]:
    """The workers (of ``only``, if given) whose policy says a check is due now."""
    workers = t.workers.c
    query = sa.select(
        workers.id, workers.is_disabled, workers.machine_policy_id, workers.last_checked
    )
    if only is not None:
        if not only:
            return []
        query = query.where(workers.id.in_(sorted(only)))
    rows = await fetch_all(conn, query.order_by(workers.id))
    if not rows:
        return []
    policies = {
        row["id"]: row["settings"] for row in await fetch_all(conn, sa.select(t.machine_policies))
    }
    return due_workers(rows, policies, now)


def _covered(pending: Iterable[dict[str, Any]]) -> set[int] | None:
    """Workers that queued or running Health tasks will check (None: every worker)."""
    covered: set[int] = set()
    for arguments in pending:
        machines = arguments.get("MachineIds") or []
        if not machines and not (arguments.get("WorkerpoolId") or arguments.get("WorkerPoolId")):
            return None
        covered.update(ids.parse_id(ids.WORKER, machine) for machine in machines)
    return covered


class Scheduler:
    """Looks at every worker each TICK, and when woken (after a policy changed: all of
    them again; after workers changed: those only)."""

    def __init__(
        self, store: Store, now: Callable[[], datetime], queued: Callable[[], None]
    ) -> None:
        self.store = store
        self.now = now
        self.queued = queued
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._everything = True  # the first look is at every worker
        self._changed: set[int] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hub-scheduler")

    def wake(self, worker_ids: Iterable[int] | None = None) -> None:
        """Look now: at ``worker_ids`` only, or at every worker (None)."""
        if worker_ids is None:
            self._everything = True
        else:
            self._changed.update(worker_ids)
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            everything, self._everything = self._everything, False
            changed, self._changed = self._changed, set()
            try:
                only = None if everything else changed
                if (everything or changed) and await schedule_once(
                    self.store, self.now(), only
                ) is not None:
                    self.queued()
            except Exception:  # the database may be away for a moment: try again later
                log.exception("could not schedule health checks")
                self._everything = True
            try:
                await asyncio.wait_for(self._wake.wait(), TICK)
            except TimeoutError:
                self._everything = True
