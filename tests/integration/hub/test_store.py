"""The store on SQLite and on a real PostgreSQL: migrations, defaults, keys."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.hub.keys import Permission
from agent.hub.store import open_store
from agent.hub.store import tables as t
from agent.hub.store.apikeys import DuplicateKeyName, caller_for, create_api_key
from agent.hub.store.engine import DatabaseError, head_revision
from agent.hub.store.records import fact, fetch_all, initialise

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_migrations_build_the_schema_from_an_empty_database(empty_database_url: str) -> None:
    store = await open_store(empty_database_url)
    try:
        assert await store.revision() is None
        await store.migrate()
        assert await store.revision() == head_revision()
        await store.migrate()  # nothing left to do: no error, no change
        async with store.connect() as conn:
            names = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
        assert set(t.metadata.tables) <= names
    finally:
        await store.close()


async def test_the_defaults_are_made_once_however_often_the_hub_starts(
    empty_database_url: str,
) -> None:
    store = await open_store(empty_database_url)
    try:
        await store.migrate()
        for _ in range(3):
            async with store.transaction() as conn:
                await initialise(conn, NOW)
        async with store.connect() as conn:
            spaces = await fetch_all(conn, sa.select(t.spaces))
            pools = await fetch_all(conn, sa.select(t.worker_pools))
            policies = await fetch_all(conn, sa.select(t.machine_policies))
            installation = await fact(conn, "InstallationId")
    finally:
        await store.close()
    assert [(s["name"], s["is_default"]) for s in spaces] == [("Default", True)]
    assert [(p["name"], p["is_default"]) for p in pools] == [("Default Worker Pool", True)]
    assert [(p["name"], p["is_default"]) for p in policies] == [("Default Machine Policy", True)]
    assert policies[0]["settings"]["MachineHealthCheckPolicy"]["HealthCheckInterval"] == "01:00:00"
    assert installation is not None
    assert len(installation) == 36


async def test_an_api_key_is_stored_as_a_hash_and_found_by_it(empty_database_url: str) -> None:
    store = await open_store(empty_database_url)
    try:
        await store.migrate()
        async with store.transaction() as conn:
            key = await create_api_key(conn, "deployer", Permission.READ_ONLY, NOW)
        async with store.connect() as conn:
            stored = await fetch_all(conn, sa.select(t.api_keys))
            caller = await caller_for(conn, key)
            stranger = await caller_for(conn, "API-" + "X" * 32)
        with pytest.raises(DuplicateKeyName, match="deployer"):
            async with store.transaction() as conn:
                await create_api_key(conn, "deployer", Permission.READ_ONLY, NOW)
    finally:
        await store.close()
    assert key.startswith("API-")
    assert len(key) == 36
    assert [row["name"] for row in stored] == ["deployer"]
    assert key not in repr(stored)  # only the hash is kept
    assert caller is not None
    assert caller.permission is Permission.READ_ONLY
    assert stranger is None


async def test_an_unreachable_database_is_named_without_its_password() -> None:
    with pytest.raises(DatabaseError) as raised:
        await open_store("postgresql://hub:s3cret@127.0.0.1:1/hub")
    assert "s3cret" not in str(raised.value)
    assert "127.0.0.1:1" in str(raised.value)


async def test_an_unknown_kind_of_database_is_refused() -> None:
    with pytest.raises(DatabaseError, match="expected sqlite:///PATH or postgresql://"):
        await open_store("mysql://root@localhost/hub")


async def test_sqlite_commits_without_syncing_each_one(tmp_path: Path) -> None:
    """WAL with synchronous=NORMAL (1) on every connection of the store, reads and
    writes: a commit is durable once in the WAL, without an fsync of its own."""
    store = await open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        await store.migrate()
        async with store.connect() as conn:
            mode = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar()
            synchronous = (await conn.execute(sa.text("PRAGMA synchronous"))).scalar()
        assert (mode, synchronous) == ("wal", 1)
        async with store.transaction() as conn:
            synchronous = (await conn.execute(sa.text("PRAGMA synchronous"))).scalar()
        assert synchronous == 1
    finally:
        await store.close()
