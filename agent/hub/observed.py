"""The hub's metrics (agent.observability.metrics.HubMetrics) served on ``--metrics``:
the figures read from the store just before each scrape, and /readyz's check.

Reading the store per scrape keeps the figures true for every node of a shared
database and costs two grouped counts (``server_tasks.state`` is indexed); a
scrape every 15 s is nothing next to the API's own queries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import sqlalchemy as sa

from agent.hub.store import Store
from agent.hub.store import tables as t
from agent.hub.store import tasks as store_tasks
from agent.observability.endpoint import BeforeScrape, Readiness
from agent.observability.metrics import HubMetrics

STORE_CHECK_TIMEOUT = 5.0  # seconds /readyz waits for the store before "not ready"


def hub_metrics(task_cap: int) -> HubMetrics:
    return HubMetrics(store_tasks.STATES, task_cap)


def refresher(
    metrics: HubMetrics, store: Callable[[], Store | None], ready: Readiness
) -> BeforeScrape:
    """Set the store-read gauges of ``metrics`` (workers by health status, tasks by
    state, the queue) and its ``ready`` gauge; ``store()`` is the hub's store, None
    while it is stopped. Without a store the figures keep their last values."""

    async def refresh() -> None:
        not_ready = await ready()
        metrics.ready.set(0 if not_ready else 1)
        current = store()
        if current is None or not_ready:
            return
        workers = t.workers
        by_status = (
            sa.select(workers.c.health_status, sa.func.count())
            .where(workers.c.is_disabled.is_(False))
            .group_by(workers.c.health_status)
        )
        tasks = t.server_tasks
        by_state = sa.select(tasks.c.state, sa.func.count()).group_by(tasks.c.state)
        async with current.connect() as conn:
            statuses = {str(s): int(n) for s, n in (await conn.execute(by_status)).all()}
            states = {str(s): int(n) for s, n in (await conn.execute(by_state)).all()}
        metrics.set_workers(statuses)
        metrics.set_tasks(states, store_tasks.QUEUED)

    return refresh


def readiness(serving: Callable[[], bool], store: Callable[[], Store | None]) -> Readiness:
    """/readyz: the hub serves its API and its store answers a query in time."""

    async def check() -> str | None:
        current = store()
        if not serving() or current is None:
            return "the hub is not serving (starting or stopping)"
        try:
            async with asyncio.timeout(STORE_CHECK_TIMEOUT):
                async with current.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
        except TimeoutError:
            return f"the store did not answer within {STORE_CHECK_TIMEOUT:g} s"
        except Exception as error:  # any driver's failure: the store is not reachable
            return f"the store is not reachable: {type(error).__name__}: {error}"
        return None

    return check
