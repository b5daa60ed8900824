"""A real hub for tests: in this process on a loopback port (HubServer over real
TLS and a real database), with a client that pins its certificate and sends a key."""

from __future__ import annotations

import asyncio
import atexit
import functools
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from agent import __version__
from agent.hub.home import DATABASE_FILE, HubHome, create_home
from agent.hub.keys import Permission
from agent.hub.server import HubServer
from agent.hub.store import open_store
from agent.hub.store.apikeys import create_api_key
from agent.hub.store.records import initialise


async def new_key(home: HubHome, name: str, permission: Permission) -> str:
    store = await open_store(home.settings.database)
    try:
        await store.migrate()
        async with store.transaction() as conn:
            await initialise(conn, datetime.now(UTC))
            return await create_api_key(conn, name, permission, datetime.now(UTC))
    finally:
        await store.close()


@functools.cache
def _migrated_sqlite_template() -> Path:
    """A SQLite database at the newest schema, made once per test process: migrating
    from empty costs seconds of CPU (alembic rebuilding tables), and most tests need
    a hub, not a migration (those of migrations start from an empty database)."""
    folder = Path(tempfile.mkdtemp(prefix="tentacle-sqlite-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    template = folder / "migrated.db"

    async def migrate() -> None:
        store = await open_store(f"sqlite:///{template}")
        try:
            await store.migrate()
        finally:
            await store.close()

    # asked for inside a test's running loop: migrate on a loop of its own
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, migrate()).result()
    return template


def copy_migrated_sqlite(database: Path) -> str:
    """Fill ``database`` (made if missing, its mode kept if not) with a migrated, not
    yet initialised schema, as the hub would leave it after its first migration; the
    hub still migrates (nothing to do) and initialises it on start. Its URL."""
    with (
        closing(sqlite3.connect(_migrated_sqlite_template())) as source,
        closing(sqlite3.connect(database)) as target,
    ):
        source.backup(target)
    return f"sqlite:///{database}"


class HubApi:
    """Requests to a hub's API over HTTPS, its certificate pinned, with an API key."""

    def __init__(self, url: str, session: aiohttp.ClientSession, key: str | None) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.key = key

    async def request(
        self, method: str, path: str, *, key: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """(status, JSON body); ``key=""`` sends no key at all."""
        chosen = self.key if key is None else key
        headers = dict(kwargs.pop("headers", {}))
        if chosen:
            headers["X-Octopus-ApiKey"] = chosen
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as r:
            body = await r.json(content_type=None) if r.content_length != 0 else None
            return r.status, body

    async def get(self, path: str, **kwargs: Any) -> Any:
        status, body = await self.request("GET", path, **kwargs)
        assert status == 200, (path, status, body)
        return body


class RunningHub:
    def __init__(self, home: HubHome, server: HubServer, api: HubApi) -> None:
        self.home = home
        self.server = server
        self.api = api

    async def key(self, name: str, permission: Permission = Permission.CONFIGURE_SERVER) -> str:
        return await new_key(self.home, name, permission)


@contextmanager
def statements_run(hub: RunningHub) -> Iterator[list[str]]:
    """The SQL statements the hub's engine runs while the block runs, in order."""
    assert hub.server.store is not None
    engine = hub.server.store.engine.sync_engine
    seen: list[str] = []

    def executed(_conn: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", executed)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", executed)


def hub_args(hub: RunningHub, key: str | None = None) -> list[str]:
    """The command line's ``--server``, ``--apikey`` (the hub's, or ``key``) and
    ``--server-thumbprint`` for ``hub``."""
    return [
        "--server",
        hub.api.url,
        "--apikey",
        key or str(hub.api.key),
        "--server-thumbprint",
        hub.home.identity().thumbprint,
    ]


def pinned(home: HubHome) -> aiohttp.Fingerprint:
    """The hub's certificate, pinned by its SHA-256 as a client pins it."""
    return aiohttp.Fingerprint(bytes.fromhex(home.identity().sha256))


@asynccontextmanager
async def running_hub(
    folder: Path,
    database: str | None = None,
    *,
    builtin_worker: bool = True,
    metrics_at: tuple[str, int] | None = None,
    **settings: Any,
) -> AsyncIterator[RunningHub]:
    """A hub created in ``folder`` and serving on a free loopback port, with an admin key
    (and its built-in worker unless ``builtin_worker`` is false; its metrics where
    ``metrics_at`` says); ``settings``: more of hub.yaml's (``ssh_worker_root="steps"``)."""
    settings.setdefault("builtin_worker_script_users", False)  # as TentacleCli's hubs
    home = create_home(folder / "hub", database).with_settings(
        builtin_worker=builtin_worker, **settings
    )
    if database is None:  # the home's own SQLite file, made by create_home
        copy_migrated_sqlite(home.path / DATABASE_FILE)
    server = HubServer(home, __version__, metrics_at=metrics_at)
    url = await server.start("127.0.0.1:0", polling_port=0)
    try:
        admin = await new_key(home, "admin", Permission.CONFIGURE_SERVER)
        connector = aiohttp.TCPConnector(ssl=pinned(home))
        async with aiohttp.ClientSession(connector=connector) as session:
            yield RunningHub(home, server, HubApi(url, session, admin))
    finally:
        await server.stop()
