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

Nor does a statement go through SQLAlchemy's greenlet when it need not wait:
``LoopConnection`` (what ``agent.hub.store.engine`` hands out for SQLite) runs a
connection's checkout, its statements, its transaction's BEGIN and COMMIT and its
close as plain calls of SQLAlchemy's sync ``Connection``, on the loop's thread.
The async engine's way spawns a greenlet for each (about fifty a one-step
task), and that, not SQLite, was most of the hub's cost of a statement
(docs/decisions.md). Only what would wait (a lock SQLite reports busy, a new
connection opened on aiosqlite's thread) is made again the async engine's way,
where the driver awaits it: the fast path raises ``MustWait`` before it has
done anything.

Registered as ``sqlite+tentacle``; ``agent.hub.store.engine`` uses it for SQLite.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Executable
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.engine.interfaces import CoreExecuteOptionsParameter, _CoreAnyExecuteParams
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction
from sqlalchemy.util import immutabledict
from sqlalchemy.util.concurrency import await_, greenlet_spawn, in_greenlet
from sqlalchemy.util.typing import TupleAny, Unpack

NAME = "tentacle"  # the driver's name in URLs: sqlite+tentacle:///path
DEFAULT_TIMEOUT = 5.0  # sqlite3's busy timeout when the URL's connection sets none
_Answer = tuple[Any, list[Any], int, int | None]  # description, rows, rowcount, lastrowid
T = TypeVar("T")
log = logging.getLogger(__name__)


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


class MustWait(Exception):
    """What was asked would wait (SQLite busy, or a connection to open on aiosqlite's
    thread) and the caller is not in SQLAlchemy's greenlet, where the wait could be
    awaited. Nothing was done: ``LoopConnection`` makes it again the async engine's
    way. Not a DBAPI error, so SQLAlchemy passes it on as it is."""


class InlineConnection(AsyncAdapt_aiosqlite_connection):
    """aiosqlite's connection whose statements, commits and rollbacks are sqlite3 calls
    on the caller's thread, made again on the connection's thread only if SQLite
    would have waited for a lock (``call``)."""

    __slots__ = ("busy_ms",)

    def __init__(self, dbapi: Any, connection: Any, timeout: float) -> None:
        super().__init__(dbapi, connection)
        self.busy_ms = int(timeout * 1000)

    def call(self, function: Callable[[sqlite3.Connection], T], *, may_defer: bool) -> T:
        """``function(sqlite3 connection)`` now (the connection's busy wait is off);
        on SQLITE_BUSY, again on the connection's thread with the busy wait on.

        In SQLAlchemy's greenlet (the async engine's way) it is awaited there: the
        async engine wants every statement awaited. Outside one (``LoopConnection``)
        it is a plain call; on SQLITE_BUSY, ``MustWait`` if ``may_defer`` (the caller
        makes it again in a greenlet), else the wait here, holding the loop (a COMMIT
        or a ROLLBACK, which never waits in WAL mode)."""
        if in_greenlet():
            return await_(self._now_or_waiting(function))
        sqlite = self._connection._conn  # raises if closed, as aiosqlite does
        try:
            return function(sqlite)
        except sqlite3.OperationalError as error:
            if not _busy(error):
                raise
        if may_defer:
            raise MustWait("SQLite is busy: the statement waits on the connection's thread")
        return self._waiting(function)(sqlite)

    async def _now_or_waiting(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """``function`` now, so that awaiting this returns without a trip through the
        loop; on SQLITE_BUSY, again on the connection's thread."""
        driver = self._connection
        sqlite = driver._conn
        try:
            return function(sqlite)
        except sqlite3.OperationalError as error:
            if not _busy(error):
                raise
        return await driver._execute(self._waiting(function), sqlite)  # type: ignore[no-any-return]

    def _waiting(
        self, function: Callable[[sqlite3.Connection], T]
    ) -> Callable[[sqlite3.Connection], T]:
        """``function`` with SQLite's busy wait on meanwhile."""
        busy_ms = self.busy_ms

        def waiting(sqlite: sqlite3.Connection) -> T:
            sqlite.execute(f"PRAGMA busy_timeout={busy_ms}")
            try:
                return function(sqlite)
            finally:
                sqlite.execute("PRAGMA busy_timeout=0")

        return waiting

    def rollback(self) -> None:
        if self._connection._connection:
            try:
                self.call(lambda sqlite: sqlite.rollback(), may_defer=False)
            except Exception as error:
                self._handle_exception(error)

    def commit(self) -> None:
        if self._connection._connection:
            try:
                self.call(lambda sqlite: sqlite.commit(), may_defer=False)
            except Exception as error:
                self._handle_exception(error)

    def close(self) -> None:
        if in_greenlet():
            super().close()
            return
        # outside the greenlet (the pool closing an overflow connection given back):
        # aiosqlite's close waits for its thread, so in a task of its own, which the
        # dialect's DBAPI holds until it is done (``closed``)
        self.dbapi.hold(asyncio.get_running_loop().create_task(self._connection.close()))


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
            answer = adapted.call(_statement(operation, parameters, many), may_defer=True)
        except MustWait:
            raise
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
    def __init__(self, aiosqlite: Any, sqlite: Any) -> None:
        super().__init__(aiosqlite, sqlite)
        # the closes of connections let go outside the greenlet, until each is done
        self.closing: set[asyncio.Task[None]] = set()

    def hold(self, close: asyncio.Task[None]) -> None:
        """Keep ``close`` (a connection's, in a task) until it is done; a failure is
        logged, not raised: the connection is gone either way."""
        self.closing.add(close)
        close.add_done_callback(self._let_go)

    def _let_go(self, close: asyncio.Task[None]) -> None:
        self.closing.discard(close)
        if not close.cancelled() and close.exception() is not None:
            log.warning("a SQLite connection did not close cleanly: %s", close.exception())

    def connect(self, *arg: Any, **kw: Any) -> InlineConnection:
        if not in_greenlet():  # aiosqlite opens it on its thread: awaited in a greenlet
            raise MustWait("a new connection is opened on aiosqlite's thread")
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


class LoopConnection(AsyncConnection):
    """An AsyncConnection of this driver's engine whose checkout, statements,
    transactions and close are SQLAlchemy's sync calls made here, on the loop's
    thread, without a greenlet; what raises ``MustWait`` (it would wait) is made
    again through AsyncConnection's own way, in a greenlet, where it is awaited.
    Everything else (``run_sync``, ``exec_driver_sql``, ...) is AsyncConnection's."""

    __slots__ = ()

    async def start(self, is_ctxmanager: bool = False) -> AsyncConnection:
        try:
            sync = self.sync_engine.connect()
        except (MustWait, MissingGreenlet):
            # a connection to open, or none free: the pool waits for one (its
            # timeout) only in a greenlet; it raised before taking anything
            return await super().start(is_ctxmanager)
        self.sync_connection = self._assign_proxied(sync)
        return self

    async def execute(
        self,
        statement: Executable,
        parameters: _CoreAnyExecuteParams | None = None,
        *,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> CursorResult[Unpack[TupleAny]]:
        """As AsyncConnection's: a buffered result (this driver's cursors hold their
        rows: there are no server-side ones to read on)."""
        sync = self._proxied
        try:
            return sync.execute(statement, parameters, execution_options=execution_options)
        except MustWait:
            if not sync.in_transaction():
                # its autobegin's BEGIN was refused, and SQLAlchemy still thinks itself
                # inside that begin (the begin event runs outside its try): an execute
                # made again would not begin at all; the begin made again resets it
                await greenlet_spawn(sync.begin)
            return await super().execute(statement, parameters, execution_options=execution_options)

    def begin(self) -> AsyncTransaction:
        assert self._proxied
        return LoopTransaction(self)

    async def close(self) -> None:
        # back to the pool: a rollback on this thread (InlineConnection.rollback)
        self._proxied.close()


class LoopTransaction(AsyncTransaction):
    """A LoopConnection's transaction: its BEGIN, COMMIT and ROLLBACK sync calls here
    (a BEGIN that would wait for the write lock made again in a greenlet)."""

    __slots__ = ()

    async def start(self, is_ctxmanager: bool = False) -> AsyncTransaction:
        try:
            sync = self.connection._proxied.begin()
        except MustWait:  # nothing begun: SQLite refused the BEGIN
            return await super().start(is_ctxmanager)
        self.sync_transaction = self._assign_proxied(sync)
        if is_ctxmanager:
            sync.__enter__()
        return self

    async def commit(self) -> None:
        self._proxied.commit()

    async def rollback(self) -> None:
        self._proxied.rollback()

    async def close(self) -> None:
        self._proxied.close()

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        self._proxied.__exit__(type_, value, traceback)


async def connect(engine: AsyncEngine) -> AsyncConnection:
    """``engine.connect()`` for this driver's engine, as a LoopConnection."""
    return await LoopConnection(engine).start()


async def closed(engine: AsyncEngine) -> None:
    """Until the connections of this driver's engine let go outside the greenlet
    (``InlineConnection.close``) are closed: before the engine is disposed of."""
    dbapi = engine.dialect.loaded_dbapi
    assert isinstance(dbapi, InlineDBAPI)
    closing = dbapi.closing
    while closing:  # a failed close is logged (InlineDBAPI.hold): not raised here
        await asyncio.gather(*closing, return_exceptions=True)


registry.register(f"sqlite.{NAME}", __name__, "InlineDialect")
