"""SQLAlchemy's aiosqlite dialect, its statements run on the event loop's thread.

aiosqlite runs each sqlite3 call on a thread of the connection's own, each call a
trip there and back (a queue, a thread woken, the answer handed back to the event
loop), and SQLAlchemy's adapter makes four per statement (a cursor, the execution,
the rows, the cursor's close). On a loaded machine each trip cost the hub's event
loop more than the statement itself (a one-step task made about 740 of them, most
of its time there: docs/decisions.md). Here a statement, a commit and a rollback
are sqlite3 calls made where they are asked, on the event loop's thread, with
SQLite's busy wait off: what would wait for another process's write lock (a
``tentacle hub`` command's) fails at once with SQLITE_BUSY instead, and only then
is it made again on the connection's thread, waiting there for the lock (the busy
timeout the connection was opened with) without holding the loop up. A statement
that got SQLITE_BUSY did nothing, so making it again is what SQLite's own busy
handler does. Connecting, closing and the pragmas stay on the connection's thread
(aiosqlite's); the types, the pool and the SQL are SQLAlchemy's aiosqlite dialect's.

What this costs: a statement holds the loop while SQLite runs it. The hub's are
small and indexed, on a local file in WAL mode, where readers never wait; a commit
is not synced (``synchronous=NORMAL``) except at a checkpoint, every 1000 pages.

Registered as ``sqlite+tentacle``; ``agent.hub.store.engine`` uses it for SQLite.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util import immutabledict
from sqlalchemy.util.concurrency import await_

NAME = "tentacle"  # the driver's name in URLs: sqlite+tentacle:///path
DEFAULT_TIMEOUT = 5.0  # sqlite3's busy timeout when the URL's connection sets none
_Answer = tuple[Any, list[Any], int, int | None]  # description, rows, rowcount, lastrowid
T = TypeVar("T")


def _statement(
    operation: str, parameters: Any, many: bool
) -> Callable[[sqlite3.Connection], _Answer]:
    def run(connection: sqlite3.Connection) -> _Answer:
        """The statement executed, its rows read, its cursor closed."""
        cursor = connection.cursor()
        try:
            if many:
                cursor.executemany(operation, parameters)
            else:
                cursor.execute(operation, () if parameters is None else parameters)
            description = cursor.description
            rows = cursor.fetchall() if description else []
            return description, rows, cursor.rowcount, cursor.lastrowid
        finally:
            cursor.close()

    return run


def _busy(error: sqlite3.OperationalError) -> bool:
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


class InlineConnection(AsyncAdapt_aiosqlite_connection):
    """aiosqlite's connection whose statements, commits and rollbacks are sqlite3 calls
    on the caller's thread, made again on the connection's thread only if SQLite
    would have waited for a lock (``call``)."""

    __slots__ = ("busy_ms",)

    def __init__(self, dbapi: Any, connection: Any, timeout: float) -> None:
        super().__init__(dbapi, connection)
        self.busy_ms = int(timeout * 1000)

    async def call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """``function(sqlite3 connection)`` now (the connection's busy wait is off), so
        that awaiting this returns without a trip through the loop; on SQLITE_BUSY,
        again on the connection's thread with the busy wait on."""
        driver = self._connection
        sqlite = driver._conn  # raises if closed, as aiosqlite does
        try:
            return function(sqlite)
        except sqlite3.OperationalError as error:
            if not _busy(error):
                raise
        busy_ms = self.busy_ms

        def waiting(sqlite: sqlite3.Connection) -> T:
            sqlite.execute(f"PRAGMA busy_timeout={busy_ms}")
            try:
                return function(sqlite)
            finally:
                sqlite.execute("PRAGMA busy_timeout=0")

        return await driver._execute(waiting, sqlite)  # type: ignore[no-any-return]

    def rollback(self) -> None:
        if self._connection._connection:
            try:
                await_(self.call(lambda sqlite: sqlite.rollback()))
            except Exception as error:
                self._handle_exception(error)

    def commit(self) -> None:
        if self._connection._connection:
            try:
                await_(self.call(lambda sqlite: sqlite.commit()))
            except Exception as error:
                self._handle_exception(error)


class InlineCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor whose statement is one ``InlineConnection.call``; its rows
    are then here (no server-side cursors: SQLAlchemy makes one only when asked,
    which the hub never does)."""

    __slots__ = ("_answer",)

    def __init__(self, adapt_connection: InlineConnection) -> None:
        # no driver cursor of its own: each statement's call makes and closes one
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = immutabledict()
        self._rows = collections.deque()
        self._answer: _Answer = (None, [], -1, None)

    @property
    def description(self) -> Any:
        return self._answer[0]

    @property
    def rowcount(self) -> int:
        return self._answer[2]

    @property
    def lastrowid(self) -> Any:
        return self._answer[3]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        return None  # nothing open on the driver's side

    def close(self) -> None:
        self._rows.clear()

    def _call(self, operation: str, parameters: Any, many: bool) -> None:
        adapted = self._adapt_connection
        assert isinstance(adapted, InlineConnection)
        try:
            # await_: SQLAlchemy's greenlet (its async engine wants every statement
            # awaited; this one returns at once unless SQLite was busy)
            answer = await_(adapted.call(_statement(operation, parameters, many)))
        except Exception as error:
            adapted._handle_exception(error)
        self._answer = answer
        self._rows = collections.deque(answer[1])

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._call(operation, parameters, False)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        self._call(operation, seq_of_parameters, True)


InlineConnection._cursor_cls = InlineCursor  # type: ignore[assignment]


class InlineDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> InlineConnection:
        # SQLite waits for a lock only when a statement is made again on the
        # connection's thread (InlineConnection.call), for the timeout asked here
        timeout = float(kw.pop("timeout", DEFAULT_TIMEOUT))
        kw["timeout"] = 0.0
        # the statements run on the loop's thread, the rest on aiosqlite's: one at a
        # time either way (each awaited before the next is asked)
        kw["check_same_thread"] = False
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True  # as SQLAlchemy's: never holds the exit up
        return InlineConnection(self, await_(connection), timeout)


class InlineDialect(SQLiteDialect_aiosqlite):
    driver = NAME
    supports_statement_cache = True
    supports_server_side_cursors = False

    @classmethod
    def import_dbapi(cls) -> InlineDBAPI:
        return InlineDBAPI(__import__("aiosqlite"), __import__("sqlite3"))


registry.register(f"sqlite.{NAME}", __name__, "InlineDialect")
