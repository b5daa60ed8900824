"""A running task's writes are its owner's only (the node's name and its process's
lease token): once another node failed it, what the old owner writes is dropped;
and of two live nodes finding one dead node, one fails its tasks. On SQLite and on
a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from agent.hub.lease import NodeLease
from agent.hub.runner import TaskLog
from agent.hub.store import Store, open_store
from agent.hub.store import tables as t
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import initialise

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def _store_with_a_claimed_task(url: str, owner: store_tasks.Owner) -> tuple[Store, int]:
    store = await open_store(url)
    await store.migrate()
    async with store.transaction() as conn:
        await initialise(conn, NOW)
        await store_tasks.submit(conn, 1, "Health", "Check", {}, NOW)
        row = await store_tasks.claim(conn, owner, NOW)
    assert row is not None
    assert row["server_token"] == owner.token
    return store, int(row["id"])


async def test_a_task_failed_by_the_node_taking_over_keeps_that_end(database_url: str) -> None:
    first = store_tasks.Owner("hub", "first process")
    store, task_id = await _store_with_a_claimed_task(database_url, first)
    try:
        async with store.transaction() as conn:  # the next process of that name took over
            assert await store_tasks.abandon_unfinished(conn, "HUB", NOW, "it died") == [task_id]
        task_log = TaskLog(store, task_id, lambda: NOW, first)
        with pytest.raises(store_tasks.TakenOver):
            await task_log.write(None, [("Info", "late")])
        with pytest.raises(store_tasks.TakenOver):
            await task_log.activity("late")
        async with store.transaction() as conn:
            late = NOW + timedelta(minutes=1)
            assert not await store_tasks.finish(conn, task_id, "Success", late, owner=first)
            row = await store_tasks.task(conn, task_id)
            assert await store_tasks.log_of(conn, task_id) == []
        assert row is not None
        assert (row["state"], row["error_message"], row["completed_time"]) == (
            "Failed", "it died", NOW
        )  # fmt: skip
    finally:
        await store.close()


async def test_another_process_with_the_same_node_name_is_not_the_tasks_owner(
    database_url: str,
) -> None:
    store, task_id = await _store_with_a_claimed_task(database_url, store_tasks.Owner("hub", "a"))
    try:
        other = store_tasks.Owner("hub", "b")
        with pytest.raises(store_tasks.TakenOver):
            await TaskLog(store, task_id, lambda: NOW, other).write(None, [("Info", "x")])
        async with store.transaction() as conn:
            assert not await store_tasks.finish(conn, task_id, "Success", NOW, owner=other)
            assert await store_tasks.finish(
                conn, task_id, "Success", NOW, owner=store_tasks.Owner("hub", "a")
            )
    finally:
        await store.close()


async def test_two_live_nodes_finding_one_dead_node_fail_its_tasks_once(
    database_url: str,
) -> None:
    dead = store_tasks.Owner("dead", "dead process")
    store, task_id = await _store_with_a_claimed_task(database_url, dead)
    now = datetime.now(UTC)
    try:
        async with store.transaction() as conn:
            await conn.execute(
                sa.insert(t.hub_nodes).values(
                    name="dead", token=dead.token, host="elsewhere", pid=1, process_started=None,
                    lease_seconds=2, started=now - timedelta(minutes=5),
                    last_seen=now - timedelta(minutes=1),
                )
            )  # fmt: skip
        leases = [NodeLease(store, name, 2, lambda: datetime.now(UTC)) for name in ("b", "c")]
        for lease in leases:
            assert await lease.take() is None
        try:
            failed = await asyncio.gather(*(lease.fail_the_dead() for lease in leases))
        finally:
            for lease in leases:
                await lease.give_back()
        assert sorted(failed) == [[], [task_id]]
        async with store.connect() as conn:
            row = await store_tasks.task(conn, task_id)
        assert row is not None
        assert row["state"] == "Failed"
    finally:
        await store.close()
