"""Opening the hub's database and bringing its schema up to date.

SQLite (the default, a file in the hub's home, in WAL mode with
``synchronous=NORMAL``) or PostgreSQL
(``postgresql://user@host/db``), both through SQLAlchemy's async engine.
Alembic owns the schema: ``migrate()`` runs every migration not yet applied,
so an upgrade never loses data; the hub migrates on start.

On SQLite a write transaction (``transaction()``) takes the database's write
lock when it begins (``BEGIN IMMEDIATE``): one that reads, then writes, can then
neither fail when its read would have to become a write (SQLite answers
"database is locked" at once there, whatever the busy timeout) nor lose the
update of another that committed in between. The writers of this process take
their turns first, in order (an asyncio lock), holding no pooled connection
while they wait: SQLite's own wait for the lock polls, unfairly, so that in a
crowd of writers one could wait past its busy timeout while others came and
went. BUSY_TIMEOUT bounds the wait for another process's writer (a ``tentacle
hub`` command). Reads (``connect()``) take no write lock and never wait (WAL).
So keep write transactions short (no call over the network inside one) and
never open one inside another (it would wait for itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from agent.errors import TentacleError
from agent.hub.store import sqlite_driver

MIGRATIONS = Path(__file__).parent / "migrations"
# seconds a SQLite connection waits for the write lock before "database is locked"
BUSY_TIMEOUT = 10.0
# SQLite's synchronous pragma on every connection (docs/decisions.md: durable against
# a crash of the process, not of the machine)
SQLITE_SYNCHRONOUS = "NORMAL"
_WRITE = "tentacle_write"  # the execution option that marks a write transaction
# lower() as Python's str.lower, on SQLite (whose own folds ASCII letters only)
LOWER = "tentacle_lower"


class DatabaseError(TentacleError):
    """The database cannot be opened or is not what this hub expects."""


def async_url(url: str) -> str:
    """``sqlite:///path`` or ``postgresql://...`` with the async driver named."""
    if url.startswith("sqlite:///"):
        # aiosqlite, its statements run on the event loop's thread (sqlite_driver)
        return f"sqlite+{sqlite_driver.NAME}:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    if url.startswith(
        ("sqlite+aiosqlite:///", f"sqlite+{sqlite_driver.NAME}:///", "postgresql+asyncpg://")
    ):
        return url
    raise DatabaseError(
        f"unsupported database URL {redact(url)!r}: expected sqlite:///PATH or postgresql://..."
    )


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable URL>"


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: sa.Connection, revision: str = "head") -> None:
    # Alembic says at INFO level which implementation it picked, on every start
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    command.upgrade(_alembic_config(connection), revision)


def _revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


class Store:
    """The hub's database: an async engine plus the schema's migrations."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.url = url
        # SQLite has one writer at a time: this process's take turns here, in order
        self._writer: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None
        # the same pool, its connections marked for write transactions from the start
        # (no execution_options call on each: a trip through SQLAlchemy's greenlet)
        self._writing = engine.execution_options(**{_WRITE: True})
        # sqlite_driver's connections never suspend the loop to close (a rollback on
        # the loop's thread): closed in place, not in a task of their own (below)
        self._inline = engine.dialect.driver == sqlite_driver.NAME

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def migrate(self, revision: str = "head") -> None:
        """Apply every migration not yet applied (none on an up-to-date database), up
        to ``revision`` (the newest unless a test asks for an older schema), in one
        write transaction.

        On SQLite the foreign keys are off meanwhile, on that connection only: a
        migration that rebuilds a table (SQLite cannot alter one) drops the old
        one, which would otherwise delete the rows referring to it (ON DELETE
        CASCADE) or be refused. SQLite ignores the pragma inside a transaction, so
        it is set on the driver's connection before the migrations' transaction
        begins and set back after it ends; a migration that rebuilds checks the
        keys itself (PRAGMA foreign_key_check)."""
        sqlite = self.dialect == "sqlite"
        async with self._turn(), self.engine.connect() as connection:
            if sqlite:
                await _outside_transaction(connection, "PRAGMA foreign_keys=OFF")
            try:
                await connection.execution_options(**{_WRITE: True})
                async with connection.begin():
                    await connection.run_sync(_upgrade, revision)
            finally:
                if sqlite:
                    await _outside_transaction(connection, "PRAGMA foreign_keys=ON")

    async def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        async with self.engine.connect() as connection:
            return await connection.run_sync(_revision)

    def connect(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A connection without a transaction of its own (``async with``)."""
        return self._connected(self.engine)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed on leaving (``async with``),
        rolled back if the block raises. On SQLite it holds the write lock throughout."""
        async with (
            self._turn(),
            self._connected(self._writing) as connection,
            connection.begin(),
        ):
            yield connection

    def _connected(
        self, engine: AsyncEngine
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """``engine.connect()``; on sqlite_driver's connections, closed in place.

        SQLAlchemy closes a connection leaving ``async with`` in a task of its own,
        shielded, so that a cancellation cannot abandon the close halfway (asyncpg's
        rollback waits for the server): a task and a loop turn for each of the dozen
        connections a task's run takes. sqlite_driver's close is a rollback on the
        loop's thread that never suspends, so no cancellation can fall inside it.
        Its connections are sqlite_driver's LoopConnections: statements without
        SQLAlchemy's greenlet unless they would wait."""
        if not self._inline:
            return engine.connect()
        return _closed_in_place(engine)

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        if self._writer is None:  # PostgreSQL: writers lock rows, not the database
            yield
            return
        async with self._writer:
            yield

    async def close(self) -> None:
        if self._inline:
            await sqlite_driver.closed(self.engine)
        await self.engine.dispose()


@contextlib.asynccontextmanager
async def _closed_in_place(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    connection = await sqlite_driver.connect(engine)
    try:
        yield connection
    finally:
        await connection.close()


async def _outside_transaction(connection: AsyncConnection, sql: str) -> None:
    """Run ``sql`` on SQLite's connection itself, outside any transaction (SQLAlchemy's
    begin would wrap it in one, where SQLite ignores some pragmas)."""
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await (await driver.execute(sql)).close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transactions off (it would BEGIN only before the first
    # write, leaving a transaction's reads outside it): _sqlite_begin says BEGIN.
    dbapi_connection.isolation_level = None
    dbapi_connection.create_function(LOWER, 1, _lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL's commits without an fsync each (the WAL is synced at checkpoints): a commit
    # survives the hub process's death (kill -9), not the machine's power loss, where
    # the last commits may roll back (never a corrupt file). docs/decisions.md says why.
    cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _lower(text: str | None) -> str | None:
    return None if text is None else str(text).lower()


def _sqlite_begin(connection: sa.Connection) -> None:
    """Begin as the transaction needs: a write one with the write lock taken now."""
    write = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


async def open_store(url: str) -> Store:
    """Open the database at ``url`` (not migrated: call ``migrate()``).

    Raises DatabaseError naming the URL (without its password) if it cannot be reached.
    """
    full = async_url(url)
    sqlite = full.startswith("sqlite")
    engine = create_async_engine(
        full,
        # a server can go away between two uses of a connection; a file cannot
        pool_pre_ping=not sqlite,
        # the driver's timeout is SQLite's busy timeout
        connect_args={"timeout": BUSY_TIMEOUT} if sqlite else {},
    )
    if sqlite:
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine.sync_engine, "begin", _sqlite_begin)
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except (OSError, sa.exc.SQLAlchemyError) as error:
        await engine.dispose()
        raise DatabaseError(f"cannot open the database {redact(url)}: {error}") from None
    return Store(engine, url)


__all__ = ["BUSY_TIMEOUT", "LOWER", "AsyncConnection", "DatabaseError", "Store", "open_store"]
