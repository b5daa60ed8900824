from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.hub.store import open_store
from agent.hub.store.records import initialise
from tests.helpers.hub import RunningHub, copy_migrated_sqlite, running_hub
from tests.helpers.postgres import PostgresServer, fresh_database
from tests.helpers.sshd import SshServer

MIGRATED = "hub_migrated"  # a template database at the newest schema, made once


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    # first asked for inside a test's running loop: migrate on a loop of its own
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, _migrated_template(server)).result()
    yield server
    server.stop()


async def _migrated_template(server: PostgresServer) -> None:
    store = await open_store(await fresh_database(server, MIGRATED))
    try:
        await store.migrate()
        async with store.transaction() as conn:
            await initialise(conn, datetime.now(UTC))
    finally:
        await store.close()


def _database_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:60]


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a new database on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return await fresh_database(server, _database_name(request))


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database for a hub: a copy of one migrated once, as a new SQLite file or a
    new database on PostgreSQL (the hub migrates on start either way; the tests of
    migrating from empty use ``empty_database_url``)."""
    if request.param == "sqlite":
        return copy_migrated_sqlite(tmp_path / "hub.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return await fresh_database(server, _database_name(request), template=MIGRATED)


@pytest.fixture
async def hub(tmp_path: Path, database_url: str) -> AsyncIterator[RunningHub]:
    """A hub serving its API over real TLS on loopback, on a SQLite file and on PostgreSQL."""
    async with running_hub(tmp_path, database_url) as running:
        yield running


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """One OpenSSH server on loopback (and its user) for the session's SSH worker tests."""
    server = SshServer().start()
    yield server
    server.close()
