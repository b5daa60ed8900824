"""A task's steps survive faults: a hub killed with -9 mid-task and started again, a
clean stop and start, a connection cut mid-step. No step starts twice (starts are
counted with marker files), no log line is lost or repeated, the task reaches its
real outcome. And a step printing 200 MiB keeps the hub's memory bounded."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from agent import __version__
from agent.hub.api.context import utc_now
from agent.hub.home import load_home
from agent.hub.server import HubServer
from agent.hub.store import open_store, tables
from agent.hub.store import tasks as store_tasks
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually
from tests.helpers.forwarder import Forwarder
from tests.helpers.hub import HubApi, RunningHub, pinned
from tests.helpers.postgres import PostgresServer, fresh_database
from tests.integration.hub.tasks_helpers import add_worker, finished, submit
from tests.integration.hub.test_health_checks import free_port
from tests.integration.hub.test_node_lease import _serving

LINES = 300


def staged_script(shared: Path) -> str:
    """Prints ``before-*``, records its start, waits for ``go-1``, prints ``middle-*``
    (then ``middle-done``), waits for ``go-2``, prints ``after-*``, exits 0."""
    return f"""D={shared}
for i in $(seq 1 {LINES}); do echo before-$i; done
( flock 9; echo "$1" >> $D/starts ) 9>$D/lock
wait_for() {{
  i=0; until [ -e $D/$1 ]; do i=$((i+1)); [ $i -gt 3000 ] && exit 9; sleep 0.05; done
}}
wait_for go-1
for i in $(seq 1 {LINES}); do echo middle-$i; done
touch $D/middle-done-$1
wait_for go-2
for i in $(seq 1 {LINES}); do echo after-$i; done
"""


EXPECTED = [f"{stage}-{i}" for stage in ("before", "middle", "after") for i in range(1, LINES + 1)]


def starts(shared: Path) -> list[str]:
    path = shared / "starts"
    return path.read_text().split() if path.exists() else []


async def _lines_of(api: HubApi, task: dict[str, Any]) -> dict[str, list[str]]:
    details = await api.get(f"/api/tasks/{task['Id']}/details")
    return {
        child["Worker"]: [e["MessageText"] for e in child["LogElements"]]
        for child in details["ActivityLogs"][0]["Children"]
    }


async def _stored(api: HubApi, task: dict[str, Any], worker: str, count: int) -> None:
    async def enough() -> bool:
        return len((await _lines_of(api, task)).get(worker, [])) >= count

    await eventually(enough, f"{count} lines of {worker} stored")


async def test_a_hub_killed_mid_task_re_attaches_on_its_next_start(
    tmp_path: Path, tentacle: TentacleCli
) -> None:
    """Two workers, MaxParallelism 1: web-1's step runs when the hub is killed, web-2's
    is leased but not started. web-1 prints while the hub is dead; after the restart
    both steps end, each started once, each line stored once."""
    home_path = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home_path))
    home = load_home(home_path, tentacle.env)
    shared = tmp_path / "shared"
    shared.mkdir()
    agents = []
    try:
        async with _serving(home_path, tentacle.env) as (process, api):
            polling_port = await _polling_port(api)
            agents.append(await add_worker(api, home.identity(), tmp_path, "web-1"))
            agents.append(await add_worker(api, home.identity(), tmp_path, "web-2", polling_port))
            task = await submit(
                api,
                ScriptBody=staged_script(shared),
                ScriptArguments=["s"],
                TargetAllWorkers=True,
                MaxParallelism=1,
            )
            await eventually(lambda: len(starts(shared)) == 1, "the first step started")

            async def first_stored() -> bool:
                lines = await _lines_of(api, task)
                return any(len(texts) >= LINES for texts in lines.values())

            await eventually(first_stored, "the first step's first lines stored")
            process.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(process.wait, 60) == -signal.SIGKILL
        (shared / "go-1").touch()  # the script prints while no hub follows it
        await eventually(lambda: len(list(shared.glob("middle-done-*"))) == 1, "middle printed")
        server = HubServer(load_home(home_path, tentacle.env), __version__)
        url = await server.start("127.0.0.1:0", polling_port=polling_port)
        try:
            async with _api(url, home_path, tentacle) as restarted:
                (shared / "go-2").touch()
                done = await finished(restarted, task)
                assert (done["State"], done["ErrorMessage"]) == ("Success", "")
                assert starts(shared) == ["s", "s"]  # one start a worker, none again
                lines = await _lines_of(restarted, task)
                assert sorted(lines) == ["web-1", "web-2"]
                for worker, texts in lines.items():
                    assert texts == EXPECTED, worker
        finally:
            await server.stop()
    finally:
        for agent in agents:
            agent.stop()


async def _polling_port(api: HubApi) -> int:
    """The polling port the hub process listens on (its /api document says it)."""
    root = await api.get("/api")
    assert isinstance(root["PollingPort"], int), root
    return int(root["PollingPort"])


class _api:  # used as a context manager like a function
    def __init__(self, url: str, home_path: Path, tentacle: TentacleCli) -> None:
        self.url, self.home_path, self.tentacle = url, home_path, tentacle

    async def __aenter__(self) -> HubApi:
        key = self.tentacle.ok(
            "hub", "create-api-key", "--home", str(self.home_path), "--name", "again"
        ).out.strip()
        home = load_home(self.home_path, self.tentacle.env)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pinned(home)))
        return HubApi(self.url, self.session, key)

    async def __aexit__(self, *_: object) -> None:
        await self.session.close()


async def test_a_clean_stop_leaves_the_task_running_for_the_next_start(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        task = await submit(hub.api, ScriptBody=staged_script(shared), ScriptArguments=["s"])
        await eventually(lambda: starts(shared) == ["s"], "the step started")
        await _stored(hub.api, task, "web-1", LINES)
        await hub.server.stop()
        (shared / "go-1").touch()
        await eventually((shared / "middle-done-s").exists, "middle printed")
        restarted = HubServer(hub.home, __version__)
        port = int(hub.api.url.rstrip("/").rsplit(":", 1)[1])
        await restarted.start(f"127.0.0.1:{port}", polling_port=0)
        try:
            (shared / "go-2").touch()
            done = await finished(hub.api, task)
            assert (done["State"], done["ErrorMessage"]) == ("Success", "")
            assert starts(shared) == ["s"]
            assert (await _lines_of(hub.api, task))["web-1"] == EXPECTED
        finally:
            await restarted.stop()
    finally:
        agent.stop()


async def test_a_connection_cut_mid_step_loses_and_repeats_nothing(
    hub: RunningHub, tmp_path: Path
) -> None:
    from tests.helpers.agent import AgentProcess

    agent = AgentProcess(TentacleCli(tmp_path / "web-1"), caller=hub.home.identity())
    await asyncio.to_thread(agent.start)
    forwarder = Forwarder(agent.port, agent_dials=False)
    port = await forwarder.start()
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        status, worker = await hub.api.request("POST", "/api/workers", json={
            "Name": "web-1", "Thumbprint": agent.thumbprint, "WorkerPoolIds": ["WorkerPools-1"],
            "Endpoint": {"CommunicationStyle": "TentaclePassive",
                         "Uri": f"https://127.0.0.1:{port}/"}})  # fmt: skip
        assert status == 201, worker

        async def healthy() -> bool:
            return bool((await hub.api.get(f"/api/workers/{worker['Id']}"))["HealthStatus"]
                        == "Healthy")  # fmt: skip

        await eventually(healthy, "web-1 Healthy")
        task = await submit(hub.api, ScriptBody=staged_script(shared), ScriptArguments=["s"])
        await eventually(lambda: starts(shared) == ["s"], "the step started")
        await _stored(hub.api, task, "web-1", LINES)
        forwarder.arm("cut")
        await asyncio.wait_for(forwarder.fired.wait(), 60)
        (shared / "go-1").touch()
        (shared / "go-2").touch()
        done = await finished(hub.api, task)
        assert (done["State"], done["ErrorMessage"]) == ("Success", "")
        assert forwarder.faults == 1
        assert starts(shared) == ["s"]
        assert (await _lines_of(hub.api, task))["web-1"] == EXPECTED
    finally:
        await forwarder.stop()
        agent.stop()


async def test_an_agent_killed_mid_step_and_started_again_loses_and_repeats_nothing(
    hub: RunningHub, tmp_path: Path
) -> None:
    """The agent's scripts outlive it (agent.scripts.recovery): the step's calls ride out
    its absence and follow the same script once it is back."""
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1", port=free_port())
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        task = await submit(hub.api, ScriptBody=staged_script(shared), ScriptArguments=["s"])
        await eventually(lambda: starts(shared) == ["s"], "the step started")
        await _stored(hub.api, task, "web-1", LINES)
        assert agent.process is not None
        agent.process.kill()
        await asyncio.to_thread(agent.process.wait, 60)
        (shared / "go-1").touch()  # printed while no agent reads it
        await eventually((shared / "middle-done-s").exists, "middle printed")
        await asyncio.to_thread(agent.start)
        (shared / "go-2").touch()
        done = await finished(hub.api, task)
        assert (done["State"], done["ErrorMessage"]) == ("Success", "")
        assert starts(shared) == ["s"]
        assert (await _lines_of(hub.api, task))["web-1"] == EXPECTED
    finally:
        agent.stop()


async def test_a_dead_nodes_task_is_taken_over_by_another_node(
    tmp_path: Path, tentacle: TentacleCli, postgres: PostgresServer
) -> None:
    """Two nodes on one PostgreSQL; the one running the task is killed with -9 and never
    comes back. Once its lease expired the other takes the task over by its stored
    ticket: the step is not started again, every line is stored once, Success."""
    database = await fresh_database(postgres, "dead_node_task_taken_over")
    first_home = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(first_home), "--database", database)
    env = {**tentacle.env, "TENTACLE_HUB_NODE_LEASE_SECONDS": "2"}
    first = load_home(first_home, env)
    tentacle.ok("hub", "create", "--home", str(tmp_path / "second"), "--database", database,
                "--join")  # fmt: skip
    second_env = {**env, "TENTACLE_HUB_NODE_NAME": "second"}
    second = load_home(tmp_path / "second", second_env)
    shared = tmp_path / "shared"
    shared.mkdir()
    agent = None
    try:
        async with _serving(first_home, env) as (process, api):
            agent = await add_worker(
                api, first.identity(), tmp_path, "web-1", also_trusts=second.identity()
            )
            task = await submit(api, ScriptBody=staged_script(shared), ScriptArguments=["s"])
            await eventually(lambda: starts(shared) == ["s"], "the step started")
            await _stored(api, task, "web-1", LINES)
            key = str(api.key)
            process.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(process.wait, 60) == -signal.SIGKILL
        (shared / "go-1").touch()
        server = HubServer(second, __version__)
        url = await server.start("127.0.0.1:0", polling_port=0)
        try:
            connector = aiohttp.TCPConnector(ssl=pinned(second))
            async with aiohttp.ClientSession(connector=connector) as session:
                other = HubApi(url, session, key)

                async def taken_over() -> bool:
                    now = await other.get(f"/api/tasks/{task['Id']}")
                    return bool(now["ServerNode"] == "second")

                await eventually(taken_over, "the second node took the task over")
                (shared / "go-2").touch()
                done = await finished(other, task)
                assert (done["State"], done["ErrorMessage"]) == ("Success", "")
                assert starts(shared) == ["s"]
                assert (await _lines_of(other, task))["web-1"] == EXPECTED
        finally:
            await server.stop()
    finally:
        if agent is not None:
            agent.stop()


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


MIB = 1024 * 1024


async def _stored_chars(database: str) -> int:
    """The characters (a newline each) of every stored log element (details says only
    those of the elements it returns)."""
    store = await open_store(database)
    try:
        async with store.connect() as conn:
            log = tables.task_log
            query = sa.select(sa.func.sum(sa.func.length(log.c.message) + 1))
            return int((await conn.execute(query)).scalar_one() or 0)
    finally:
        await store.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_a_step_printing_200_mib_keeps_the_hubs_memory_bounded(
    tmp_path: Path, tentacle: TentacleCli
) -> None:
    home_path = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home_path))
    home = load_home(home_path, tentacle.env)
    async with _serving(home_path, tentacle.env) as (process, api):
        agent = await add_worker(api, home.identity(), tmp_path, "web-1")
        try:
            before = _peak_rss(process.pid)
            line = "x" * 999
            body = f'yes "{line}" | head -c {200 * MIB}\necho the-end\n'
            task = await submit(api, ScriptBody=body)
            done = await finished(api, task)
            assert done["State"] == "Success", done
            grown = _peak_rss(process.pid) - before
            assert await _stored_chars(home.settings.database) >= 200 * MIB
            print(f"hub peak RSS grew {grown / MIB:.1f} MiB for a 200 MiB step")
            assert grown < 120 * MIB, f"the hub's peak RSS grew {grown / MIB:.0f} MiB"
        finally:
            agent.stop()
    assert os.path.exists(home_path)


async def test_a_task_cancelled_while_its_hub_was_stopped_is_cancelled_on_the_next_start(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        task = await submit(hub.api, ScriptBody=staged_script(shared), ScriptArguments=["s"])
        await eventually(lambda: starts(shared) == ["s"], "the step started")
        await hub.server.stop()
        # what another node's API writes meanwhile (the same store)
        restarted = HubServer(hub.home, __version__)
        port = int(hub.api.url.rstrip("/").rsplit(":", 1)[1])
        number = int(task["Id"].removeprefix("ServerTasks-"))
        other = await open_store(hub.home.settings.database)
        try:
            async with other.transaction() as conn:
                state = await store_tasks.request_cancel(conn, number, utc_now())
            assert state == "Cancelling"
        finally:
            await other.close()
        await restarted.start(f"127.0.0.1:{port}", polling_port=0)
        try:
            done = await finished(hub.api, task)
            assert (done["State"], done["ErrorMessage"]) == ("Canceled", "canceled")
            assert starts(shared) == ["s"]
            details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
            [step] = details["ActivityLogs"][0]["Children"]
            assert step["Status"] == "Canceled"
            # its script was stopped before it got past go-1 (never touched)
            assert "middle-1" not in [e["MessageText"] for e in step["LogElements"]]
        finally:
            await restarted.stop()
    finally:
        agent.stop()
