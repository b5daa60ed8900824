"""Opening the hub's database and bringing its schema up to date.

SQLite (the default, a file in the hub's home, in WAL mode) or PostgreSQL
(``postgresql://user@host/db``), both through SQLAlchemy's async engine.
Alembic owns the schema: ``migrate()`` runs every migration not yet applied,
so an upgrade never loses data; the hub migrates on start.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from agent.errors import TentacleError

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseError(TentacleError):
    """The database cannot be opened or is not what this hub expects."""


def async_url(url: str) -> str:
    """``sqlite:///path`` or ``postgresql://...`` with the async driver named."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    if url.startswith(("sqlite+aiosqlite:///", "postgresql+asyncpg://")):
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

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def migrate(self, revision: str = "head") -> None:
        """Apply every migration not yet applied (none on an up-to-date database), up
        to ``revision`` (the newest unless a test asks for an older schema).

        On SQLite the foreign keys are off meanwhile, on that connection only: a
        migration that rebuilds a table (SQLite cannot alter one) drops the old
        one, which would otherwise delete the rows referring to it (ON DELETE
        CASCADE) or be refused. SQLite ignores the pragma inside a transaction, so
        it is set before the migrations' transaction and set back after it; a
        migration that rebuilds checks the keys itself (PRAGMA foreign_key_check)."""
        async with self.engine.connect() as connection:
            sqlite = self.dialect == "sqlite"
            if sqlite:
                await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                await connection.commit()
            try:
                await connection.run_sync(_upgrade, revision)
                await connection.commit()
            finally:
                if sqlite:
                    await connection.rollback()
                    await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                    await connection.commit()

    async def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        async with self.engine.connect() as connection:
            return await connection.run_sync(_revision)

    def connect(self) -> Any:
        """A connection without a transaction of its own (``async with``)."""
        return self.engine.connect()

    def transaction(self) -> Any:
        """A connection in a transaction, committed on leaving (``async with``)."""
        return self.engine.begin()

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


async def open_store(url: str) -> Store:
    """Open the database at ``url`` (not migrated: call ``migrate()``).

    Raises DatabaseError naming the URL (without its password) if it cannot be reached.
    """
    engine = create_async_engine(async_url(url), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except (OSError, sa.exc.SQLAlchemyError) as error:
        await engine.dispose()
        raise DatabaseError(f"cannot open the database {redact(url)}: {error}") from None
    return Store(engine, url)


__all__ = ["AsyncConnection", "DatabaseError", "Store", "open_store"]
