"""What a registration, a delete, a disable and a page of workers read: the workers they
touch, not every worker the hub holds (they used to re-read every polling certificate
and every pool membership on each change); and the polling port's trust learning
within RESYNC what another hub node changed on the same database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.certs import generate_identity
from agent.config.polling import new_subscription_id
from agent.hub import trust
from agent.hub.scheduler import schedule_once
from agent.hub.store import Store, open_store
from agent.hub.store import tables as t
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import default_space_id
from tests.helpers.eventually import eventually
from tests.helpers.hub import RunningHub, running_hub

PRESENT = 30  # polling workers registered before the one whose cost is looked at
# a read of workers restricted to some rows: by id, or the duplicate check's name/thumbprint
_KEYED = re.compile(r"workers\.(id IN|id =|name =|thumbprint =)")


def polling_body(name: str) -> dict[str, Any]:
    identity = generate_identity()
    return {
        "Name": name,
        "Thumbprint": identity.thumbprint,
        "Certificate": identity.certificate_pem.decode("ascii"),
        "Endpoint": {"CommunicationStyle": "TentacleActive", "Uri": new_subscription_id()},
        "WorkerPoolIds": ["WorkerPools-1"],
    }


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL the store runs meanwhile, one string each."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(" ".join(str(args[2]).split()))

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", record)


def reads_of(table: str, seen: list[str]) -> list[str]:
    """The reads of ``table``'s rows (not those that only count them or look it up in
    a subquery)."""
    return [s for s in seen if s.startswith(f"SELECT {table}.")]


@pytest.fixture
async def quiet(hub: RunningHub) -> RunningHub:
    """The hub's own readers stopped (checks, schedule, trust backstop): what the
    store runs is then what the requests make it run."""
    for part in (hub.server.tasks, hub.server.scheduler, hub.server.trust):
        if part is not None:
            await part.stop()
    for number in range(PRESENT):
        status, answer = await hub.api.request(
            "POST", "/api/workers", json=polling_body(f"present-{number:02d}")
        )
        assert status == 201, answer
    return hub


async def test_a_registration_a_disable_and_a_delete_read_no_other_worker(
    quiet: RunningHub,
) -> None:
    store, listener = quiet.server.store, quiet.server.listener
    assert store is not None
    assert listener is not None
    body = polling_body("newcomer")
    with statements(store) as seen:
        status, worker = await quiet.api.request("POST", "/api/workers", json=body)
        assert status == 201, worker
        assert body["Thumbprint"] in listener.trusted()
        status, _ = await quiet.api.request(
            "PUT", f"/api/workers/{worker['Id']}", json={**worker, "IsDisabled": True}
        )
        assert status == 200
        assert body["Thumbprint"] not in listener.trusted()
        status, _ = await quiet.api.request(
            "PUT", f"/api/workers/{worker['Id']}", json={**worker, "IsDisabled": False}
        )
        assert body["Thumbprint"] in listener.trusted()
        status, _ = await quiet.api.request("DELETE", f"/api/workers/{worker['Id']}")
        assert status == 200
        assert body["Thumbprint"] not in listener.trusted()
    unkeyed = [s for s in reads_of("workers", seen) if not _KEYED.search(s)]
    assert not unkeyed, f"reads of every worker: {unkeyed}"
    every_membership = [s for s in reads_of("worker_pool_members", seen) if "IN" not in s]
    assert not every_membership, f"reads of every pool membership: {every_membership}"
    assert len(listener.trusted()) == PRESENT


@pytest.mark.parametrize(
    "path",
    [
        "/api/workers?take=5&skip=3",
        "/api/workers?take=5&commStyles=TentacleActive&partialName=present",
        "/api/workerpools/WorkerPools-1/workers?take=5",
        "/api/machinepolicies/MachinePolicies-1/workers?take=5",
        "/api/workers/Workers-4",
    ],
)
async def test_a_page_of_workers_reads_the_page(quiet: RunningHub, path: str) -> None:
    store = quiet.server.store
    assert store is not None
    with statements(store) as seen:
        answer = await quiet.api.get(path)
    assert answer.get("Items", [answer])
    whole = [s for s in reads_of("workers", seen) if "workers.certificate" in s]
    unpaged = [s for s in whole if "LIMIT" not in s and "workers.id =" not in s]
    assert not unpaged, f"whole rows of every worker read: {unpaged}"
    members = [s for s in reads_of("worker_pool_members", seen) if "worker_id IN" not in s]
    assert not members, f"every pool membership read: {members}"
    if "Items" in answer:
        assert answer["TotalResults"] == PRESENT


async def test_a_change_made_by_another_node_is_learned_within_the_resync(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trust, "RESYNC", 0.05)
    async with running_hub(tmp_path, database_url) as hub:
        listener = hub.server.listener
        assert listener is not None
        other_node = await open_store(database_url)
        identity = generate_identity()
        try:
            async with other_node.transaction() as conn:
                policy = (await conn.execute(sa.select(t.machine_policies.c.id))).scalar_one()
                stamp = {"modified_on": datetime.now(UTC), "modified_by": "node-2"}
                number = (
                    await conn.execute(
                        sa.insert(t.workers)
                        .values(
                            space_id=await default_space_id(conn),
                            name="elsewhere",
                            thumbprint=identity.thumbprint,
                            certificate=identity.certificate_pem.decode("ascii"),
                            communication_style="TentacleActive",
                            uri=f"{new_subscription_id()}",
                            is_disabled=False,
                            machine_policy_id=policy,
                            health_status="Unknown",
                            status_summary="",
                            facts={},
                            connection_log=[],
                            **stamp,
                        )
                        .returning(t.workers.c.id)
                    )
                ).scalar_one()
            await eventually(
                lambda: identity.thumbprint in listener.trusted(),
                "the polling port trusts a worker another node registered",
            )
            async with other_node.transaction() as conn:
                await conn.execute(
                    sa.update(t.workers).where(t.workers.c.id == number).values(is_disabled=True)
                )
            await eventually(
                lambda: identity.thumbprint not in listener.trusted(),
                "the polling port refuses a worker another node disabled",
            )
        finally:
            await other_node.close()


async def test_the_scheduler_looks_at_the_changed_workers_only(quiet: RunningHub) -> None:
    store = quiet.server.store
    assert store is not None
    async with store.transaction() as conn:  # the new workers' own checks out of the way
        await conn.execute(sa.update(t.server_tasks).values(state=store_tasks.CANCELED))
    with statements(store) as seen:
        number = await schedule_once(store, datetime.now(UTC), only=[5])
        assert await schedule_once(store, datetime.now(UTC), only=[]) is None
    assert number is not None
    async with store.connect() as conn:
        task = await store_tasks.task(conn, number)
    assert task is not None
    assert task["arguments"]["MachineIds"] == ["Workers-5"]  # every one is due, 5 was asked
    unkeyed = [s for s in reads_of("workers", seen) if not _KEYED.search(s)]
    assert not unkeyed, f"reads of every worker: {unkeyed}"
