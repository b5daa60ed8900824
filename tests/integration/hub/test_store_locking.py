"""SQLite under concurrent writers: a write transaction takes the write lock up front
(BEGIN IMMEDIATE), so that one which reads then writes never fails on the upgrade
nor loses another's update; reads take no write lock; the busy timeout is explicit;
statements run on the event loop's thread, outside SQLAlchemy's greenlet, a wait for
another's lock off it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.util.concurrency import in_greenlet

from agent.hub.store import Store, open_store, sqlite_driver
from agent.hub.store import tables as t
from agent.hub.store.engine import BUSY_TIMEOUT
from tests.helpers.eventually import eventually

WRITERS = 20


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[tuple[Store, Path]]:
    path = tmp_path / "hub.db"
    store = await open_store(f"sqlite:///{path}")
    await store.migrate()
    try:
        yield store, path
    finally:
        await store.close()


def write_lock_free(path: Path) -> bool:
    """Whether another connection could take SQLite's write lock now (without waiting)."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as error:
        if "locked" not in str(error):
            raise
        return False
    finally:
        other.close()


async def test_a_write_transaction_holds_the_write_lock_from_its_start(
    sqlite_store: tuple[Store, Path],
) -> None:
    store, path = sqlite_store
    async with store.transaction() as conn:
        await conn.execute(sa.select(t.hub_facts))  # a read first, as a registration does
        assert not write_lock_free(path)
    assert write_lock_free(path)


async def test_a_read_takes_no_write_lock(sqlite_store: tuple[Store, Path]) -> None:
    store, path = sqlite_store
    async with store.connect() as conn:
        await conn.execute(sa.select(t.hub_facts))
        assert write_lock_free(path)


async def test_concurrent_read_then_write_transactions_lose_nothing(
    sqlite_store: tuple[Store, Path],
) -> None:
    store, _ = sqlite_store
    facts = t.hub_facts
    async with store.transaction() as conn:
        await conn.execute(sa.insert(facts).values(name="counter", value="0"))

    async def increment() -> None:
        async with store.transaction() as conn:
            row = (
                await conn.execute(sa.select(facts.c.value).where(facts.c.name == "counter"))
            ).one()
            await asyncio.sleep(0)  # let the others start theirs meanwhile
            await conn.execute(
                sa.update(facts)
                .where(facts.c.name == "counter")
                .values(value=str(int(row.value) + 1))
            )

    await asyncio.gather(*(increment() for _ in range(WRITERS)))
    async with store.connect() as conn:
        value = (
            await conn.execute(sa.select(facts.c.value).where(facts.c.name == "counter"))
        ).scalar_one()
    assert int(value) == WRITERS


async def test_the_busy_timeout_is_the_stores(sqlite_store: tuple[Store, Path]) -> None:
    """The wait for another's lock (on the connection's thread) is BUSY_TIMEOUT long;
    the statements made on the loop's thread never wait (SQLITE_BUSY at once)."""
    store, _ = sqlite_store
    async with store.connect() as conn:
        milliseconds = (await conn.execute(sa.text("PRAGMA busy_timeout"))).scalar_one()
        waits = (await conn.get_raw_connection()).dbapi_connection.busy_ms
    assert milliseconds == 0
    assert waits == int(BUSY_TIMEOUT * 1000)


async def test_statements_run_on_the_event_loops_thread(sqlite_store: tuple[Store, Path]) -> None:
    """No trip to the driver's thread per statement (sqlite_driver): a function of
    SQL's runs on the thread that awaits the statement."""
    store, _ = sqlite_store
    async with store.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.create_function("thread_ident", 0, threading.get_ident)
        ident = (await conn.execute(sa.text("SELECT thread_ident()"))).scalar_one()
    assert ident == threading.get_ident()


async def test_a_writer_waits_for_another_connections_lock_off_the_loop(
    sqlite_store: tuple[Store, Path],
) -> None:
    """Another connection (a ``tentacle hub`` command's) holds the write lock: a write
    transaction waits for it on the connection's thread, the loop going on meanwhile,
    and gets it once it is let go."""
    store, path = sqlite_store
    await write_fact(store, "before")  # the pool's connection made beforehand
    await behind_anothers_lock(path, lambda: write_fact(store, "after"))
    assert {"before", "after"} <= await fact_names(store)


async def behind_anothers_lock(path: Path, write: Callable[[], Awaitable[None]]) -> None:
    """``write()`` while another connection holds the write lock: it neither fails at
    once nor holds the loop until it would (the loop turns meanwhile), and ends once
    the lock is let go."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        writer = asyncio.create_task(write())
        for _ in range(50):  # turns of the loop: the writer asks for the lock meanwhile
            await asyncio.sleep(0)
        assert not writer.done()
        other.execute("ROLLBACK")
        await writer
    finally:
        other.close()


async def fact_names(store: Store) -> set[str]:
    async with store.connect() as conn:
        return set((await conn.execute(sa.select(t.hub_facts.c.name))).scalars())


async def test_writers_take_their_turns_in_order(sqlite_store: tuple[Store, Path]) -> None:
    """In a crowd of writers each gets the lock in its turn (SQLite's own wait polls,
    and in a crowd one could wait past its busy timeout while others came and went)."""
    store, _ = sqlite_store
    order: list[int] = []

    async def write(number: int) -> None:
        async with store.transaction() as conn:
            order.append(number)
            await conn.execute(sa.insert(t.hub_facts).values(name=f"n{number}", value="x"))

    await asyncio.gather(*(write(number) for number in range(WRITERS)))
    assert order == list(range(WRITERS))


async def test_statements_go_through_no_greenlet_unless_they_wait(
    sqlite_store: tuple[Store, Path],
) -> None:
    """A connection's BEGIN, statements and COMMIT are plain calls on the loop's thread
    (sqlite_driver.LoopConnection); only one that waits for another's lock goes the
    async engine's way, through SQLAlchemy's greenlet, awaited there."""
    store, path = sqlite_store
    in_one: list[tuple[str, bool]] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        in_one.append((statement.split(maxsplit=1)[0], in_greenlet()))

    async with store.transaction() as conn:  # the pool's connection opened beforehand
        await conn.execute(sa.select(t.hub_facts))
    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with store.transaction() as conn:
            await conn.execute(sa.insert(t.hub_facts).values(name="a", value="x"))
        async with store.connect() as conn:
            await conn.execute(sa.select(t.hub_facts))
        assert in_one == [("BEGIN", False), ("INSERT", False), ("BEGIN", False),
                          ("SELECT", False)]  # fmt: skip
        in_one.clear()
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            writer = asyncio.create_task(write_fact(store, "b"))
            await eventually(lambda: in_one, "the writer to ask for the lock")
            other.execute("ROLLBACK")
            await writer
        finally:
            other.close()
        # refused at once outside the greenlet, then waited for inside it
        assert in_one[:2] == [("BEGIN", False), ("BEGIN", True)]
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", record)


async def write_fact(store: Store, name: str) -> None:
    async with store.transaction() as conn:
        await conn.execute(sa.insert(t.hub_facts).values(name=name, value="x"))


async def test_a_write_outside_a_write_transaction_waits_off_the_loop(
    sqlite_store: tuple[Store, Path],
) -> None:
    """A write on a plain connection (BEGIN deferred) finds another's lock at its
    statement, not at its BEGIN: the statement, refused at once on the loop's
    thread, is made again on the connection's and waits there, the loop going on."""
    store, path = sqlite_store
    await write_fact(store, "before")

    async def write() -> None:
        async with store.connect() as conn:
            await conn.execute(sa.insert(t.hub_facts).values(name="after", value="x"))
            await conn.commit()

    await behind_anothers_lock(path, write)
    assert {"before", "after"} <= await fact_names(store)


def driver_threads() -> int:
    """aiosqlite's threads alive (one per open connection)."""
    return sum(thread.name.endswith("(_connection_worker_thread)")
               or "aiosqlite" in repr(getattr(thread, "_target", ""))
               for thread in threading.enumerate())  # fmt: skip


async def test_connections_beyond_the_pools_are_closed_when_let_go(
    sqlite_store: tuple[Store, Path],
) -> None:
    """More connections at once than the pool keeps (5): the others, let go outside
    SQLAlchemy's greenlet, are closed (their threads end) and the store closes clean."""
    store, _ = sqlite_store
    held = asyncio.Event()
    inside = 0

    async def read() -> None:
        nonlocal inside
        async with store.connect() as conn:
            await conn.execute(sa.select(t.hub_facts))
            inside += 1
            if inside == 12:
                held.set()
            await held.wait()

    before = driver_threads()
    await asyncio.gather(*(read() for _ in range(12)))
    await eventually(lambda: driver_threads() == before + 4 or None,
                     "the connections beyond the pool's 5 to close")  # fmt: skip
    await store.close()  # the fixture's first connection closed too
    await eventually(lambda: driver_threads() == before - 1 or None,
                     "every connection's thread to end")  # fmt: skip


async def test_more_connections_at_once_than_the_pool_holds_wait_for_one(
    sqlite_store: tuple[Store, Path],
) -> None:
    """Twenty readers at once, each holding its connection across loop turns: the
    pool holds fifteen (5 and 10 more), the others wait for one to be given back,
    as the async engine's pool does (before: MissingGreenlet, its wait being made
    outside SQLAlchemy's greenlet)."""
    store, _ = sqlite_store

    async def read() -> int:
        async with store.connect() as conn:
            for _ in range(5):
                await asyncio.sleep(0)
            return len((await conn.execute(sa.select(t.hub_facts))).all())

    assert len(await asyncio.gather(*(read() for _ in range(20)))) == 20


async def test_a_write_connection_whose_first_begin_was_refused_still_begins(
    sqlite_store: tuple[Store, Path],
) -> None:
    """A write connection's first statement begins it (BEGIN IMMEDIATE): refused busy
    on the loop's thread, it is begun again where it can wait, so that the statement
    is still inside a transaction (before: SQLAlchemy, left inside its refused
    begin, made the statement again without one, committed at once)."""
    store, path = sqlite_store
    writing = store.engine.execution_options(tentacle_write=True)

    async def write_then_roll_back() -> None:
        conn = await sqlite_driver.connect(writing)
        try:
            await conn.execute(sa.insert(t.hub_facts).values(name="undone", value="x"))
            assert conn.in_transaction()
            await conn.rollback()
        finally:
            await conn.close()

    await behind_anothers_lock(path, write_then_roll_back)
    assert "undone" not in await fact_names(store)
