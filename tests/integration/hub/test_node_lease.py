"""One process per hub home, and per NodeName on one database: a second `serve` on the
same home is refused at once (the home's lock), a second process with the same
NodeName on the same PostgreSQL is refused while the first renews its lease, a
node killed with -9 is taken over once its lease expired (and only then are its
tasks failed, saying why), a clean stop lets the next start take over at once."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from agent import __version__
from agent.hub.home import HubHome, create_home, load_home
from agent.hub.lease import LeaseLost, NodeNameTaken
from agent.hub.server import HubServer
from agent.hub.store import open_store
from agent.hub.store import tables as t
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import fetch_all
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually
from tests.helpers.hub import HubApi, RunningHub, pinned, running_hub
from tests.helpers.postgres import PostgresServer, fresh_database
from tests.integration.hub.test_health_checks import listening_worker, policy
from tests.integration.hub.test_hub_command import READY


def _serve_command(home: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "agent", "hub", "serve", "--home", str(home),
            "--listen", "127.0.0.1:0", "--polling-port", "0", *extra]  # fmt: skip


async def _state(hub: RunningHub, task_id: str) -> str:
    return str((await hub.api.get(f"/api/tasks/{task_id}"))["State"])


async def test_a_second_serve_on_the_same_home_is_refused_while_the_first_task_runs_on(
    tmp_path: Path, tentacle: TentacleCli
) -> None:
    async with running_hub(tmp_path) as hub:
        started, release = tmp_path / "started", tmp_path / "release"
        body = f"touch {started}; while [ ! -e {release} ]; do sleep 0.1; done\n"
        gated = await policy(
            hub, "Gated", MachineHealthCheckPolicy={
                "BashHealthCheckPolicy": {"RunType": "Inline", "ScriptBody": body}},
        )  # fmt: skip
        agent = await listening_worker(hub, tentacle, "--policy", gated)
        try:
            await eventually(started.exists, "the first hub's health check is running")
            [task] = [x for x in await hub.api.get("/api/tasks/all") if not x["IsCompleted"]]
            serve = ("hub", "serve", "--home", str(hub.home.path), "--listen", "127.0.0.1:0")
            refused = await asyncio.to_thread(tentacle.fails, *serve)
            assert refused.err.strip() == (
                f"error: another hub is serving from {hub.home.path} (process {os.getpid()}):"
                " stop it, or serve this one from another --home"
            )
            assert await _state(hub, task["Id"]) == "Executing"
            release.touch()

            async def finished() -> str | None:
                state = await _state(hub, task["Id"])
                return state if state not in ("Queued", "Executing") else None

            assert await eventually(finished, "the first hub's check finished") == "Success"
        finally:
            agent.stop()


def _second_home(folder: Path, first: HubHome) -> HubHome:
    """Another home on the first one's database (as a second machine would be)."""
    return create_home(folder / "second", first.settings.database).with_settings(
        builtin_worker_script_users=False
    )


async def test_a_second_process_with_the_same_node_name_on_one_postgresql_is_refused(
    tmp_path: Path, tentacle: TentacleCli, postgres: PostgresServer
) -> None:
    url = await fresh_database(postgres, "one_node_name_twice")
    async with running_hub(tmp_path, url) as hub:
        second = _second_home(tmp_path, hub.home)
        refused = await asyncio.to_thread(
            tentacle.fails, "hub", "serve", "--home", str(second.path), "--listen", "127.0.0.1:0"
        )
        [line] = refused.err.strip().splitlines()
        assert line.startswith(
            f"error: the hub node 'hub' is running already: process {os.getpid()} on"
            f" {socket.gethostname()}, last seen "
        ), line
        assert line.endswith("; stop it, or give this hub another --node-name"), line
        # another name is another node: it serves beside the first
        process = subprocess.Popen(
            _serve_command(second.path, "--node-name", "second"), env=tentacle.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            line = await asyncio.to_thread(process.stdout.readline)
            assert READY.search(line), (line, process.stderr)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 60) == 0
        finally:
            if process.poll() is None:
                process.kill()
        async with hub.server.store.connect() as conn:  # type: ignore[union-attr]
            names = [row["name"] for row in await fetch_all(conn, sa.select(t.hub_nodes))]
        assert names == ["hub"]  # the second gave its lease back when it stopped


async def test_the_same_node_name_on_one_sqlite_file_is_refused_too(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        second = HubServer(_second_home(tmp_path, hub.home), __version__)
        with pytest.raises(NodeNameTaken, match="the hub node 'hub' is running already"):
            await second.start("127.0.0.1:0", polling_port=0)
        assert await _state_rows(hub) == ["hub"]  # the refused one took nothing


async def _state_rows(hub: RunningHub) -> list[str]:
    async with hub.server.store.connect() as conn:  # type: ignore[union-attr]
        return [row["name"] for row in await fetch_all(conn, sa.select(t.hub_nodes))]


async def test_a_clean_stop_lets_the_next_start_take_over_at_once(
    tmp_path: Path, database_url: str
) -> None:
    async with running_hub(tmp_path, database_url) as hub:
        assert await _state_rows(hub) == ["hub"]
        home = hub.home
    again = HubServer(home, __version__)  # the default lease: a minute, never waited for
    await again.start("127.0.0.1:0", polling_port=0)
    try:
        async with again.store.connect() as conn:  # type: ignore[union-attr]
            [row] = await fetch_all(conn, sa.select(t.hub_nodes))
        assert (row["name"], row["pid"]) == ("hub", os.getpid())
    finally:
        await again.stop()


async def test_a_node_keeps_renewing_and_stops_when_another_takes_it_over(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        home = hub.home.with_settings(node_lease_seconds=2)
    server = HubServer(home, __version__)
    await server.start("127.0.0.1:0", polling_port=0)
    try:
        lease = server.lease
        assert lease is not None
        await eventually(lambda: lease.renewals >= 2, "the lease renewed twice")
        async with server.store.transaction() as conn:  # type: ignore[union-attr]
            # what a process taking the lease over after it expired writes
            await conn.execute(sa.update(t.hub_nodes).values(token="another process"))
        with pytest.raises(LeaseLost, match="another process took over the hub node 'hub'"):
            await asyncio.wait_for(server.until_lease_lost(), 60)
    finally:
        await server.stop()


@asynccontextmanager
async def _black_hole() -> AsyncIterator[int]:
    """A port that accepts connections and never answers: a check of a worker there
    runs until its timeout (a minute), long enough to kill the hub meanwhile."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()


@asynccontextmanager
async def _serving(
    home_path: Path, env: dict[str, str], *extra: str
) -> AsyncIterator[tuple[subprocess.Popen[str], HubApi]]:
    """``tentacle hub serve`` on ``home_path`` in a process of its own, and its API (with a
    new key); the process is killed on leaving if it still runs."""
    tentacle_env = {**env}
    key = subprocess.run(
        [sys.executable, "-m", "agent", "hub", "create-api-key", "--home", str(home_path),
         "--name", f"t{secrets.token_hex(4)}"],
        env=tentacle_env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    process = subprocess.Popen(
        _serve_command(home_path, *extra), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        ready = READY.search(line)
        assert ready, (line, process.stderr.read() if process.stderr else "")
        home = load_home(home_path, env)
        connector = aiohttp.TCPConnector(ssl=pinned(home))
        async with aiohttp.ClientSession(connector=connector) as session:
            yield process, HubApi(ready.group(1), session, key)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(60)


async def _a_silent_workers_check(api: HubApi, port: int) -> Any:
    """A worker at ``port`` (which never answers) registered: its first check, executing."""
    status, worker = await api.request("POST", "/api/workers", json={
        "Name": "silent", "Thumbprint": "AB" * 20, "WorkerPoolIds": ["WorkerPools-1"],
        "Endpoint": {"CommunicationStyle": "TentaclePassive",
                     "Uri": f"https://127.0.0.1:{port}/"}})  # fmt: skip
    assert status == 201, worker

    async def executing() -> list[Any]:
        tasks = await api.get("/api/tasks/all")
        return [task for task in tasks if task["State"] == "Executing"]

    [task] = await eventually(executing, "the new worker's check is executing")
    return task


async def _killed(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(process.wait, 60) == -signal.SIGKILL
    return process.pid


async def _task_row(server: HubServer, task: Any) -> Any:
    async with server.store.connect() as conn:  # type: ignore[union-attr]
        return await store_tasks.task(conn, int(task["Id"].removeprefix("ServerTasks-")))


async def test_after_kill_9_a_restart_on_the_same_host_takes_over_at_once(
    tmp_path: Path, tentacle: TentacleCli
) -> None:
    """The dead process's pid is not running on this host: its lease (a minute, the
    default) is not waited for, and its task is failed saying why."""
    home_path = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home_path))
    async with _black_hole() as port, _serving(home_path, tentacle.env) as (process, api):
        task = await _a_silent_workers_check(api, port)
        dead = await _killed(process)
    server = HubServer(load_home(home_path, tentacle.env), __version__)
    await server.start("127.0.0.1:0", polling_port=0)  # at once: not refused
    try:
        row = await _task_row(server, task)
        assert (row["state"], row["error_message"]) == ("Failed", (
            f"the hub node 'hub' (process {dead} on {socket.gethostname()}) stopped while this"
            " task ran: that process is no longer running"
        ))  # fmt: skip
    finally:
        await server.stop()


async def test_a_dead_node_on_another_host_is_taken_over_once_its_lease_expired(
    tmp_path: Path, tentacle: TentacleCli
) -> None:
    """Its pid says nothing here: the lease is waited for."""
    home_path = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home_path))
    env = {**tentacle.env, "TENTACLE_HUB_NODE_LEASE_SECONDS": "2"}
    home = load_home(home_path, env)
    async with _black_hole() as port, _serving(home_path, env) as (process, api):
        task = await _a_silent_workers_check(api, port)
        dead = await _killed(process)
    store = await open_store(home.settings.database)
    try:
        async with store.transaction() as conn:  # as if it had run on another machine
            await conn.execute(sa.update(t.hub_nodes).values(host="elsewhere"))
    finally:
        await store.close()
    refusals: list[str] = []

    async def taken_over() -> HubServer | None:
        server = HubServer(home, __version__)
        try:
            await server.start("127.0.0.1:0", polling_port=0)
        except NodeNameTaken as refused:  # the dead one's lease, not expired yet
            refusals.append(str(refused))
            return None
        return server

    server = await eventually(taken_over, "a new start took over the dead node", interval=0.2)
    try:
        assert all(f"process {dead} on elsewhere" in refusal for refusal in refusals), refusals
        row = await _task_row(server, task)
        assert row["state"] == "Failed"
        assert row["error_message"].startswith(
            f"the hub node 'hub' (process {dead} on elsewhere) stopped while this"
            " task ran: it was last seen "
        ), row["error_message"]
        assert row["error_message"].endswith("and its lease expired")
    finally:
        await server.stop()


def _freeze_outside_a_write(process: subprocess.Popen[str], database: str) -> None:
    """SIGSTOP ``process`` at a moment it holds no write lock on the SQLite file
    ``database``: frozen inside a write, it would keep every other node out (as a
    frozen SQLite writer does) and no lease could change hands."""
    path = sa.engine.make_url(database).database
    assert path is not None
    for _ in range(100):  # a write lasts milliseconds: almost always the first try
        process.send_signal(signal.SIGSTOP)
        probe = sqlite3.connect(path, timeout=0.5, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # locked: it was inside a write
            process.send_signal(signal.SIGCONT)
        finally:
            probe.close()
    raise AssertionError("the hub held its database's write lock at every try")


async def test_a_node_frozen_past_its_lease_does_not_write_over_the_end_the_next_one_wrote(
    tmp_path: Path, tentacle: TentacleCli
) -> None:
    """h1 (frozen by SIGSTOP) loses its lease to h2 (same NodeName, same SQLite file),
    which fails h1's task; thawed, h1 learns its lease was taken and stops, and the
    end it would write (the hub stopped) is dropped: the task keeps h2's."""
    h1_path = tmp_path / "h1"
    tentacle.ok("hub", "create", "--home", str(h1_path))
    env = {**tentacle.env, "TENTACLE_HUB_NODE_LEASE_SECONDS": "2"}
    h1_home = load_home(h1_path, env)
    h2_home = create_home(tmp_path / "h2", h1_home.settings.database).with_settings(
        node_lease_seconds=2, builtin_worker_script_users=False
    )
    async with _black_hole() as port, _serving(h1_path, env) as (h1, api):
        task = await _a_silent_workers_check(api, port)
        await asyncio.to_thread(_freeze_outside_a_write, h1, h1_home.settings.database)
        try:

            async def taken_over() -> HubServer | None:
                server = HubServer(h2_home, __version__)
                try:
                    await server.start("127.0.0.1:0", polling_port=0)
                except NodeNameTaken:  # h1's lease, not expired yet
                    return None
                return server

            h2 = await eventually(taken_over, "h2 took the node over", interval=0.2)
        finally:
            h1.send_signal(signal.SIGCONT)
        try:
            taken = await _task_row(h2, task)
            assert taken["state"] == "Failed"
            assert "its lease expired" in taken["error_message"], taken["error_message"]
            assert await asyncio.to_thread(h1.wait, 60) != 0  # it stopped: its lease was lost
            kept = await _task_row(h2, task)
            assert {k: kept[k] for k in ("state", "error_message", "completed_time")} == {
                k: taken[k] for k in ("state", "error_message", "completed_time")
            }
            assert h1.stderr is not None
            err = h1.stderr.read()
            assert (
                f"task {task['Id']} was taken over by another node; its end here is dropped" in err
            ), err
        finally:
            await h2.stop()


async def test_a_live_node_fails_the_tasks_of_a_dead_node_of_another_name(
    tmp_path: Path, tentacle: TentacleCli
) -> None:
    """Node a is killed with a task executing; node b (another NodeName, same database)
    fails it once a's lease expired, without anyone starting as a; a cancel asked
    meanwhile completes."""
    a_path = tmp_path / "a"
    tentacle.ok("hub", "create", "--home", str(a_path))
    env = {**tentacle.env, "TENTACLE_HUB_NODE_LEASE_SECONDS": "2"}
    a_home = load_home(a_path, env)
    b_home = create_home(tmp_path / "b", a_home.settings.database).with_settings(
        node_name="b", node_lease_seconds=2, builtin_worker_script_users=False
    )
    async with _black_hole() as port, _serving(a_path, env, "--node-name", "a") as (process, api):
        task = await _a_silent_workers_check(api, port)
        dead = await _killed(process)
    b = HubServer(b_home, __version__)
    await b.start("127.0.0.1:0", polling_port=0)
    try:
        async with b.store.transaction() as conn:  # type: ignore[union-attr]
            number = int(task["Id"].removeprefix("ServerTasks-"))
            await store_tasks.request_cancel(conn, number, datetime.now(UTC))

        async def failed() -> Any:
            row = await _task_row(b, task)
            return row if row["state"] not in ("Executing", "Cancelling") else None

        row = await eventually(failed, "node b failed dead node a's task")
        assert row["state"] == "Failed"
        assert row["error_message"].startswith(
            f"the hub node 'a' (process {dead} on {socket.gethostname()}) stopped while this"
            " task ran: it was last seen "
        ), row["error_message"]
        assert row["error_message"].endswith("and its lease expired")
        async with b.store.connect() as conn:  # type: ignore[union-attr]
            names = [r["name"] for r in await fetch_all(conn, sa.select(t.hub_nodes))]
        assert names == ["b"]  # a's dead lease is gone
    finally:
        await b.stop()


@pytest.mark.parametrize("busy", ["--listen", "--polling-port"])
async def test_a_start_that_cannot_bind_its_ports_leaves_the_database_as_it_was(
    tmp_path: Path, tentacle: TentacleCli, busy: str
) -> None:
    """An older hub still serving this database (at r0001) holds the port: the new one
    says so in one line and neither upgrades the schema under it nor takes a lease."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = await open_store(url)
    try:
        await store.migrate("0001")
    finally:
        await store.close()
    home = create_home(tmp_path / "hub")
    home.with_settings(database=url).save()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--listen": "127.0.0.1:0", "--polling-port": "0", busy: f"127.0.0.1:{port}"}
        if busy == "--polling-port":
            ports[busy] = str(port)
        refused = await asyncio.to_thread(
            tentacle.fails, "hub", "serve", "--home", str(home.path),
            "--listen", ports["--listen"], "--polling-port", ports["--polling-port"],
        )  # fmt: skip
    store = await open_store(url)
    try:
        assert await store.revision() == "0001"
    finally:
        await store.close()
    what = "the API" if busy == "--listen" else "polling agents"
    assert refused.err.strip() == (
        f"error: cannot listen for {what} on 127.0.0.1:{port}: Address already in use"
    )


SHARED = "Listen and PollingPort are both port 18365: the API and polling agents each need"


async def test_one_port_for_the_api_and_polling_is_refused_before_the_database_is_touched(
    tmp_path: Path, tentacle: TentacleCli
) -> None:
    """Else serve migrated the database, then failed binding its second port."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = await open_store(url)
    try:
        await store.migrate("0001")
    finally:
        await store.close()
    home = create_home(tmp_path / "hub")
    home.with_settings(database=url).save()
    before = (home.path / "hub.yaml").read_text()
    ports = ("--listen", "127.0.0.1:18365", "--polling-port", "18365")
    configured = await asyncio.to_thread(
        tentacle.fails, "hub", "configure", "--home", str(home.path), *ports, code=2
    )
    [line] = _error_lines(configured.err)
    assert SHARED in line, configured.err
    assert (home.path / "hub.yaml").read_text() == before
    environ = {"TENTACLE_HUB_LISTEN": "127.0.0.1:18365", "TENTACLE_HUB_POLLING_PORT": "18365"}
    for flags, env in ((ports, None), ((), environ)):
        refused = await asyncio.to_thread(
            tentacle.fails, "hub", "serve", "--home", str(home.path), *flags, env=env
        )
        assert refused.err.strip().startswith(f"error: {SHARED}"), refused.err
        assert len(refused.err.strip().splitlines()) == 1, refused.err
    store = await open_store(url)
    try:
        assert await store.revision() == "0001"
    finally:
        await store.close()
    zero = ("--listen", "127.0.0.1:0", "--polling-port", "0")  # a free port each: two
    tentacle.ok("hub", "configure", "--home", str(home.path), *zero)


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "rror" in line]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("n" * 201, "got 201 characters"),
        ("a\nb", "got 'a\\nb' (with '\\n')"),
        ("a/b", "got 'a/b' (with '/')"),
        ("hüb", "got 'hüb' (with 'ü')"),  # SQLite's lower() folds ASCII only
    ],
)
async def test_a_bad_node_name_is_one_clear_line_and_nothing_is_saved(
    tmp_path: Path, tentacle: TentacleCli, postgres: PostgresServer, name: str, why: str
) -> None:
    url = await fresh_database(postgres, "bad_node_name")
    home = create_home(tmp_path / "hub", url)
    before = (home.path / "hub.yaml").read_text()
    rule = (
        "expected a node name of 1 to 200 characters: ASCII letters and digits, spaces, '.',"
        f" '-' and '_' (such as a machine's name), {why}"
    )
    ports = ("--listen", "127.0.0.1:0", "--polling-port", "0")
    for command in ("serve", "configure"):
        refused = await asyncio.to_thread(
            tentacle.fails, "hub", command, "--home", str(home.path), "--node-name", name,
            *(ports if command == "serve" else ()), code=2,
        )  # fmt: skip
        [line] = _error_lines(refused.err)
        assert rule in line, refused.err
    assert (home.path / "hub.yaml").read_text() == before


async def test_node_names_differing_only_in_case_are_one_node(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        second = HubServer(_second_home(tmp_path, hub.home).with_settings(node_name="HUB"), "1")
        with pytest.raises(NodeNameTaken, match="the hub node 'hub' is running already"):
            await second.start("127.0.0.1:0", polling_port=0)
        assert await _state_rows(hub) == ["hub"]
