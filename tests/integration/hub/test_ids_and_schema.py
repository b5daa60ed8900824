"""The schema the migrations build is the tables' metadata; document ids are never
given twice (SQLite too); a database at r0001 upgrades keeping every row and id.
On SQLite and on a real PostgreSQL."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from agent import __version__
from agent.hub.keys import Permission
from agent.hub.server import HubServer
from agent.hub.store import Store, open_store
from agent.hub.store import tables as t
from agent.hub.store.apikeys import create_api_key
from agent.hub.store.records import Row, fetch_all, initialise
from tests.helpers.hub import HubApi, new_key, pinned, running_hub

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DOCUMENT_TABLES = {
    "spaces", "worker_pools", "machine_policies", "workers", "api_keys", "events",
    "server_tasks", "task_activities", "task_log", "task_steps", "packages", "artifacts",
    "accounts",
}  # fmt: skip
LOWER_NAME_INDEXES = {
    "ix_workers_lower_name", "ix_worker_pools_lower_name", "ix_machine_policies_lower_name",
    "ix_api_keys_lower_name", "ix_hub_nodes_lower_name", "ix_accounts_lower_name",
}  # fmt: skip


def _differences(sync: sa.Connection) -> list[Any]:
    with warnings.catch_warnings():  # SQLite cannot reflect lower(name): checked below
        warnings.simplefilter("ignore")
        return list(compare_metadata(MigrationContext.configure(sync), t.metadata))


def _index_names(sync: sa.Connection) -> set[str]:
    if sync.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
    return {row[0] for row in sync.exec_driver_sql(query)}


def _autoincrement_tables(sync: sa.Connection) -> set[str]:
    rows = sync.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
    return {name for name, sql in rows if "AUTOINCREMENT" in (sql or "")}


async def test_the_migrations_build_exactly_the_tables_metadata(empty_database_url: str) -> None:
    store = await open_store(empty_database_url)
    try:
        await store.migrate()
        async with store.connect() as conn:
            differences = await conn.run_sync(_differences)
            indexes = await conn.run_sync(_index_names)
            autoincrement = (
                await conn.run_sync(_autoincrement_tables) if store.dialect == "sqlite" else None
            )
            if store.dialect == "sqlite":  # off while migrating only, on that connection
                keys = await conn.exec_driver_sql("PRAGMA foreign_keys")
                assert keys.scalar_one() == 1
    finally:
        await store.close()
    assert differences == []
    assert indexes >= LOWER_NAME_INDEXES
    declared = {name for name, table in t.metadata.tables.items() if table.kwargs}
    assert declared == DOCUMENT_TABLES
    if autoincrement is not None:
        assert autoincrement == DOCUMENT_TABLES


async def _created(api: HubApi, path: str, body: dict[str, Any]) -> str:
    status, made = await api.request("POST", path, json=body)
    assert status == 201, made
    return str(made["Id"])


def _number(document_id: str) -> int:
    return int(document_id.rsplit("-", 1)[1])


THUMBPRINTS = iter(f"{n:040X}" for n in range(1, 1000))


def _worker(name: str) -> dict[str, Any]:
    return {
        "Name": name,
        "Thumbprint": next(THUMBPRINTS),
        "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "https://127.0.0.1:1/"},
        "WorkerPoolIds": ["WorkerPools-1"],
    }


async def test_a_deleted_documents_id_is_never_given_again_even_after_a_restart(
    tmp_path: Path, database_url: str
) -> None:
    made: dict[str, list[str]] = {"workerpools": [], "machinepolicies": [], "workers": []}
    bodies = {
        "workerpools": lambda n: {"Name": f"pool {n}"},
        "machinepolicies": lambda n: {"Name": f"policy {n}"},
        "workers": lambda n: _worker(f"worker {n}"),
    }
    async with running_hub(tmp_path, database_url) as hub:
        for path, body in bodies.items():
            first = await _created(hub.api, f"/api/{path}", body(1))
            status, _ = await hub.api.request("DELETE", f"/api/{path}/{first}")
            assert status == 200
            second = await _created(hub.api, f"/api/{path}", body(2))
            assert _number(second) > _number(first), (path, first, second)
            status, _ = await hub.api.request("DELETE", f"/api/{path}/{second}")
            made[path] += [first, second]
    server = HubServer(hub.home, __version__)  # the same database, started again
    url = await server.start("127.0.0.1:0", polling_port=0)
    try:
        key = await new_key(hub.home, "after the restart", Permission.CONFIGURE_SERVER)
        connector = aiohttp.TCPConnector(ssl=pinned(hub.home))
        async with aiohttp.ClientSession(connector=connector) as session:
            api = HubApi(url, session, key)
            for path, body in bodies.items():
                third = await _created(api, f"/api/{path}", body(3))
                assert _number(third) > max(_number(i) for i in made[path]), (path, third, made)
    finally:
        await server.stop()


async def _insert_like_the_api(conn: Any, table: sa.Table, name: str) -> int:
    values: dict[str, Any] = {"space_id": 1, "name": name, "description": ""}
    values.update(is_default=False, modified_on=NOW, modified_by="test")
    if table is t.worker_pools:
        values.update(sort_order=9, pool_type="StaticWorkerPool")
    else:
        values.update(settings={})
    result = await conn.execute(sa.insert(table).values(**values).returning(table.c.id))
    return int(result.scalar_one())


async def test_an_api_keys_id_is_not_given_again(empty_database_url: str) -> None:
    store = await open_store(empty_database_url)
    try:
        await store.migrate()
        async with store.transaction() as conn:
            await create_api_key(conn, "first", Permission.READ_ONLY, NOW)
            await conn.execute(sa.delete(t.api_keys))
            await create_api_key(conn, "second", Permission.READ_ONLY, NOW)
            [row] = await fetch_all(conn, sa.select(t.api_keys.c.id))
    finally:
        await store.close()
    assert row["id"] == 2


# -- a database made at r0001, with rows, upgraded -------------------------------------------


NON_ASCII_TWINS = ("Élan", "éLAN", "ωMEGA", "ΩMEGA")  # Workers-4 to Workers-7


async def _fill_at_r0001(store: Store) -> None:
    """Rows in every table as r0001's hub wrote them: a worker in two pools, a task
    with an activity and log, events, keys; a worker deleted (its id, Workers-3,
    named only by the events log); two pools and two keys whose names differ only
    in case (allowed then), and workers differing only in a case SQLite's lower()
    does not fold ("Élan" and "éLAN", "ωMEGA" and "ΩMEGA": one name for the API)."""
    async with store.transaction() as conn:
        await initialise(conn, NOW)
        stamp = {"modified_on": NOW, "modified_by": "admin"}
        for name in ("Pool A", "pool a"):
            await conn.execute(
                sa.insert(t.worker_pools).values(
                    space_id=1, name=name, description="", is_default=False, sort_order=2,
                    pool_type="StaticWorkerPool", **stamp,
                )
            )  # fmt: skip
        for number, name in enumerate(("web-1", "web-2", "gone", *NON_ASCII_TWINS), 1):
            await conn.execute(
                sa.insert(t.workers).values(
                    space_id=1, name=name, thumbprint=f"{number:040X}",
                    certificate=None, communication_style="TentaclePassive",
                    uri=f"https://127.0.0.1:{number}/", is_disabled=False, machine_policy_id=1,
                    health_status="Healthy", status_summary="", facts={"OperatingSystem": "L"},
                    last_checked=NOW, unavailable_since=None, connection_log=[], **stamp,
                )
            )  # fmt: skip
        for worker, pool in ((1, 1), (1, 2), (2, 3)):
            await conn.execute(
                sa.insert(t.worker_pool_members).values(worker_id=worker, pool_id=pool)
            )
        await conn.execute(sa.delete(t.workers).where(t.workers.c.id == 3))
        await conn.execute(
            sa.insert(t.events).values(
                occurred=NOW, username="admin", category="Deleted", message="Worker gone deleted",
                related_document_ids=["Workers-3"],
            )
        )  # fmt: skip
        for name in ("ci", "CI"):  # as r0001's create_api_key allowed
            await conn.execute(
                sa.insert(t.api_keys).values(
                    name=name, permission="ReadOnly", key_hash=name * 32, created=NOW
                )
            )
        await conn.execute(
            sa.insert(t.server_tasks).values(
                space_id=1, name="Health", description="Check", state="Success",
                arguments={"MachineIds": ["Workers-1"]}, queue_time=NOW, start_time=NOW,
                completed_time=NOW + timedelta(seconds=1), error_message=None,
                has_warnings_or_errors=False, server_node="hub", cancel_requested=False,
            )
        )  # fmt: skip
        await conn.execute(
            sa.insert(t.task_activities).values(
                task_id=1, name="web-1", status="Success", started=NOW, ended=NOW
            )
        )
        await conn.execute(
            sa.insert(t.task_log).values(
                task_id=1, activity_id=1, category="Info", occurred=NOW, message="Healthy"
            )
        )


# r0002's, r0004's, r0005's
ADDED_AFTER_R0001_TO_ITS_TABLES = {
    "server_token", "queued_by", "ssh_host", "ssh_port", "ssh_fingerprint", "account_id"
}  # fmt: skip
ADDED_AFTER_R0001 = {"hub_nodes", "task_steps", "packages", "artifacts", "accounts"}


async def _every_row(store: Store) -> dict[str, list[Row]]:
    """Every table r0001 had, every column it had."""
    async with store.connect() as conn:
        return {
            name: await fetch_all(
                conn,
                sa.select(
                    *(c for c in table.columns if c.name not in ADDED_AFTER_R0001_TO_ITS_TABLES)
                ).order_by(*table.primary_key.columns),
            )
            for name, table in t.metadata.tables.items()
            if name not in ADDED_AFTER_R0001
        }


async def test_a_database_at_r0001_upgrades_keeping_every_row_and_id(
    tmp_path: Path, empty_database_url: str
) -> None:
    store = await open_store(empty_database_url)
    try:
        await store.migrate("0001")
        await _fill_at_r0001(store)
        before = await _every_row(store)
        await store.migrate()
        after = await _every_row(store)
        template = {k: v for k, v in after["workers"][0].items() if k != "id"}
        async with store.transaction() as conn:
            members = t.worker_pool_members
            await conn.execute(sa.delete(members).where(members.c.pool_id == 3))
            await conn.execute(sa.delete(t.worker_pools).where(t.worker_pools.c.id == 3))
            new_pool = await _insert_like_the_api(conn, t.worker_pools, "pool c")
            new_worker = (
                await conn.execute(
                    sa.insert(t.workers)
                    .values({**template, "name": "web-3", "thumbprint": "F" * 40})
                    .returning(t.workers.c.id)
                )
            ).scalar_one()  # fmt: skip
    finally:
        await store.close()
    renamed = after["worker_pools"][2]
    assert renamed["name"] == "pool a (WorkerPools-3)"
    after_keys = [row["name"] for row in after["api_keys"]]
    assert after_keys == ["ci", "CI (APIKeys-2)"]
    after_workers = [row["name"] for row in after["workers"]]
    assert after_workers == ["web-1", "web-2", "Élan", "éLAN (Workers-5)", "ωMEGA",
                             "ΩMEGA (Workers-7)"]  # fmt: skip
    before["worker_pools"][2]["name"] = renamed["name"]
    before["api_keys"][1]["name"] = after_keys[1]
    for row, name in zip(before["workers"], after_workers, strict=True):
        row["name"] = name
    new_events = after["events"][len(before["events"]) :]
    assert [e["message"] for e in new_events] == [
        "Worker pool pool a renamed pool a (WorkerPools-3): names are unique whatever their case",
        "Worker éLAN renamed éLAN (Workers-5): names are unique whatever their case",
        "Worker ΩMEGA renamed ΩMEGA (Workers-7): names are unique whatever their case",
        "API key CI renamed CI (APIKeys-2): names are unique whatever their case",
    ]
    after["events"] = after["events"][: len(before["events"])]
    assert after == before  # every row, every id, the pool memberships too
    assert new_pool == 4  # not 3, the pool deleted after the upgrade
    assert new_worker == 8  # not 3, the worker deleted before it (the events log names it)
    async with running_hub(tmp_path, empty_database_url) as hub:
        for number in range(4, 8):  # each twin updatable: its name is its own
            worker = await hub.api.get(f"/api/workers/Workers-{number}")
            changed = {**worker, "IsDisabled": True, "WorkerPoolIds": ["WorkerPools-1"]}
            status, body = await hub.api.request(
                "PUT", f"/api/workers/Workers-{number}", json=changed
            )
            assert status == 200, (number, status, body)


async def test_a_renamed_case_twin_gets_a_name_that_is_free_and_fits(
    empty_database_url: str,
) -> None:
    """ "X" would become "X (WorkerPools-3)", which "x (WorkerPools-3)" has already
    (whatever the case): the upgrade picks a free name instead of failing on the
    unique index (the hub could not start then); a 200-character twin stays 200."""
    long = "p" * 200
    store = await open_store(empty_database_url)
    try:
        await store.migrate("0001")
        async with store.transaction() as conn:
            await initialise(conn, NOW)
            for name in ("x", "X", "x (WorkerPools-3)", "X (WORKERPOOLS-3 2)", long, long.upper()):
                await _insert_like_the_api(conn, t.worker_pools, name)
        await store.migrate()
        async with store.connect() as conn:
            pools = await fetch_all(conn, sa.select(t.worker_pools).order_by(t.worker_pools.c.id))
            events = await fetch_all(conn, sa.select(t.events).order_by(t.events.c.id))
    finally:
        await store.close()
    names = [row["name"] for row in pools[1:]]
    assert names == [
        "x", "X (WorkerPools-3 3)", "x (WorkerPools-3)", "X (WORKERPOOLS-3 2)", long,
        long.upper()[: 200 - len(" (WorkerPools-7)")] + " (WorkerPools-7)",
    ]  # fmt: skip
    assert len({name.lower() for name in names}) == len(names)
    assert [e["message"] for e in events if e["username"] == "hub upgrade"] == [
        "Worker pool X renamed X (WorkerPools-3 3): names are unique whatever their case",
        f"Worker pool {long.upper()} renamed {names[-1]}: names are unique whatever their case",
    ]
