"""The machine policies' clock: every so often, queue a Health task for the workers
whose policy says a check is due and that no queued or running check covers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from agent.hub import ids
from agent.hub.rules.policies import due_workers
from agent.hub.store import Store
from agent.hub.store import tables as t
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import default_space_id, fetch_all

log = logging.getLogger("agent.hub.scheduler")

TICK = 30.0  # seconds between looks at the policies


async def schedule_once(store: Store, now: datetime) -> int | None:
    """Queue one Health task for every worker due now; returns its id, or None."""
    async with store.transaction() as conn:
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
        workers = await fetch_all(conn, sa.select(t.workers))
        policies = {
            row["id"]: row["settings"]
            for row in await fetch_all(conn, sa.select(t.machine_policies))
        }
        due = [n for n in due_workers(workers, policies, now) if n not in covered]
        if not due:
            return None
        machines = [ids.format_id(ids.WORKER, number) for number in due]
        return await store_tasks.submit(
            conn,
            await default_space_id(conn),
            "Health",
            f"Scheduled health check of {len(machines)} worker(s)",
            {"MachineIds": machines, "Scheduled": True},
            now,
        )


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
    def __init__(
        self, store: Store, now: Callable[[], datetime], queued: Callable[[], None]
    ) -> None:
        self.store = store
        self.now = now
        self.queued = queued
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hub-scheduler")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                if await schedule_once(self.store, self.now()) is not None:
                    self.queued()
            except Exception:  # the database may be away for a moment: try again later
                log.exception("could not schedule health checks")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK)
