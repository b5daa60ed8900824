from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.helpers.hub import RunningHub, running_hub
from tests.helpers.postgres import PostgresServer, fresh_database


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database: a SQLite file, or a fresh database on a real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:60]
    yield await fresh_database(server, name)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    """A hub on a SQLite file, serving its API over real TLS on loopback."""
    async with running_hub(tmp_path) as running:
        yield running
