"""One process per hub home, and per NodeName on one database: a second `serve` on the
same home is refused at once (the home's lock), a second process with the same
NodeName on the same PostgreSQL is refused while the first renews its lease, a
node killed with -9 is taken over once its lease expired (and only then are its
tasks failed, saying why), a clean stop lets the next start take over at once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from agent import __version__
from agent.hub.home import HubHome, create_home, load_home
from agent.hub.lease import LeaseLost, NodeNameTaken
from agent.hub.server import HubServer
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
    return create_home(folder / "second", first.settings.database)


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


async def test_after_kill_9_a_new_start_takes_over_once_the_lease_expired(
    tmp_path: Path, tentacle: TentacleCli
) -> None:
    home_path = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home_path))
    key = tentacle.ok("hub", "create-api-key", "--home", str(home_path), "--name", "t").out.strip()
    env = {**tentacle.env, "TENTACLE_HUB_NODE_LEASE_SECONDS": "2"}
    process = subprocess.Popen(
        _serve_command(home_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        ready = READY.search(line)
        assert ready, (line, process.stderr)
        home = load_home(home_path, {"TENTACLE_HUB_NODE_LEASE_SECONDS": "2"})
        async with (
            _black_hole() as port,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pinned(home))) as session,
        ):
            api = HubApi(ready.group(1), session, key)
            status, worker = await api.request("POST", "/api/workers", json={
                "Name": "silent", "Thumbprint": "AB" * 20, "WorkerPoolIds": ["WorkerPools-1"],
                "Endpoint": {"CommunicationStyle": "TentaclePassive",
                             "Uri": f"https://127.0.0.1:{port}/"}})  # fmt: skip
            assert status == 201, worker

            async def executing() -> list[Any]:
                tasks = await api.get("/api/tasks/all")
                return [task for task in tasks if task["State"] == "Executing"]

            [task] = await eventually(executing, "the new worker's check is executing")
            process.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(process.wait, 60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    dead = process.pid
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
        assert all(f"process {dead} on" in refusal for refusal in refusals), refusals
        async with server.store.connect() as conn:  # type: ignore[union-attr]
            number = int(task["Id"].removeprefix("ServerTasks-"))
            row = await store_tasks.task(conn, number)
        assert row is not None
        assert row["state"] == "Failed"
        assert row["error_message"].startswith(
            f"the hub node 'hub' (process {dead} on {socket.gethostname()}) stopped while this"
            " task ran: it was last seen "
        ), row["error_message"]
        assert row["error_message"].endswith("and its lease expired")
    finally:
        await server.stop()
