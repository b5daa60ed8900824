"""hub workers, pools, policies and health-check: the real command against a real hub,
with real agents where health matters."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.hub.keys import Permission
from tests.helpers.cli import Result, TentacleCli
from tests.helpers.eventually import eventually
from tests.helpers.hub import RunningHub, hub_args, running_hub
from tests.integration.hub.test_health_checks import free_port, listening_worker, policy

HANG = 60.0  # seconds: a bound for a hang, never reached when things work


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path) as running:
        yield running


async def hub_ok(cli: TentacleCli, hub: RunningHub, verb: str, *args: str) -> Result:
    return await asyncio.to_thread(cli.ok, "hub", verb, *hub_args(hub), *args)


async def hub_fails(cli: TentacleCli, hub: RunningHub, verb: str, *args: str) -> Result:
    return await asyncio.to_thread(cli.fails, "hub", verb, *hub_args(hub), *args)


def one_error_line(result: Result) -> str:
    """The failure's stderr, which must be exactly one ``error:`` line."""
    [line] = result.err.strip().splitlines()
    assert line.startswith("error: "), result.err
    return line


def rows(result: Result) -> list[list[str]]:
    """The table's body rows, split on the two-space column gaps."""
    lines = result.out.strip().splitlines()
    assert set(lines[1].replace(" ", "")) == {"-"}, result.out  # the header's underline
    return [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in lines[2:]]


async def healthy(hub: RunningHub, name: str) -> None:
    async def check() -> bool:
        [worker] = await hub.api.get(f"/api/workers/all?name={name}")
        return bool(worker["HealthStatus"] == "Healthy")

    await eventually(check, f"{name} became Healthy")


async def test_workers_pools_and_policies_as_tables_and_json(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    agent = await listening_worker(hub, tentacle)
    try:
        await healthy(hub, "web-1")
        table = await hub_ok(tentacle, hub, "workers")
        assert table.out.splitlines()[0].split()[-3:] == ["LAST", "CHECKED", "(UTC)"]
        [row] = rows(table)
        assert row[:3] == ["web-1", "Workers-1", "Healthy"]
        assert "TentaclePassive" in row
        assert "Default Worker Pool" in row
        assert row[-1] != "never"  # last checked
        listed = (await hub_ok(tentacle, hub, "workers", "--format", "json")).json()
        api = await hub.api.get("/api/workers/all")
        assert [(w["Id"], w["Name"], w["Thumbprint"]) for w in listed] == [
            (w["Id"], w["Name"], w["Thumbprint"]) for w in api
        ]
        assert set(listed[0]) == set(api[0])  # the API's shape

        pools = await hub_ok(tentacle, hub, "pools")
        assert [h.strip() for h in pools.out.splitlines()[0].split("  ") if h.strip()] == [
            "NAME", "ID", "DEFAULT", "WORKERS", "HEALTHY", "HAS WARNINGS", "UNHEALTHY",
            "UNAVAILABLE", "UNKNOWN", "DISABLED"
        ]  # fmt: skip
        [pool] = rows(pools)
        assert pool == [
            "Default Worker Pool",
            "WorkerPools-1",
            "yes",
            "1",
            "1",
            "0",
            "0",
            "0",
            "0",
            "0",
        ]
        pools_json = (await hub_ok(tentacle, hub, "pools", "--format", "json")).json()
        assert pools_json == await hub.api.get("/api/workerpools/all")

        [default] = rows(await hub_ok(tentacle, hub, "policies"))
        assert default == [
            "Default Machine Policy",
            "MachinePolicies-1",
            "yes",
            "01:00:00",
            "RunScript",
            "ExpectedToBeOnline",
            "never delete",
        ]
        policies_json = (await hub_ok(tentacle, hub, "policies", "--format", "json")).json()
        assert policies_json == await hub.api.get("/api/machinepolicies/all")
    finally:
        agent.stop()


async def test_the_hub_options_come_from_the_environment_too(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    env = {
        "TENTACLE_SERVER_URL": hub.api.url,
        "TENTACLE_API_KEY": await hub.key("reader", Permission.READ_ONLY),
        "TENTACLE_SERVER_THUMBPRINT": hub.home.identity().thumbprint,
    }
    result = await asyncio.to_thread(tentacle.ok, "hub", "policies", env=env)
    assert "Default Machine Policy" in result.out


async def test_workers_filter_by_pool_health_and_name(
    hub: RunningHub, tentacle: TentacleCli, tmp_path: Path
) -> None:
    status, pool = await hub.api.request("POST", "/api/workerpools", json={"Name": "Builders"})
    assert status == 201, pool
    up = await listening_worker(hub, tentacle, "--workerpool", "Builders", name="up-1")
    other = TentacleCli(tmp_path / "other")
    down = await listening_worker(hub, other, name="down-1")
    down.stop()
    try:
        await healthy(hub, "up-1")
        await hub_fails(tentacle, hub, "health-check", "--worker", "down-1")
        unavailable = rows(await hub_ok(tentacle, hub, "workers", "--health", "unavailable"))
        assert [row[0] for row in unavailable] == ["down-1"]
        builders = rows(await hub_ok(tentacle, hub, "workers", "--pool", "builders"))
        assert [row[0] for row in builders] == ["up-1"]
        assert (
            "Builders, Default Worker Pool" in builders[0]
            or "Default Worker Pool, Builders" in builders[0]
        )
        named = rows(await hub_ok(tentacle, hub, "workers", "--name", "own"))
        assert [row[0] for row in named] == ["down-1"]
        none = await hub_ok(tentacle, hub, "workers", "--pool", "Builders", "--health", "Unknown")
        assert none.out.strip() == "No workers match"
        unknown = one_error_line(await hub_fails(tentacle, hub, "workers", "--pool", "Nope"))
        assert "no worker pool 'Nope'" in unknown
        assert "'Builders'" in unknown
        assert "'Default Worker Pool'" in unknown
    finally:
        up.stop()


async def test_a_health_check_follows_each_worker_and_succeeds(
    hub: RunningHub, tentacle: TentacleCli, tmp_path: Path
) -> None:
    one = await listening_worker(hub, tentacle, name="web-1")
    two = await listening_worker(hub, TentacleCli(tmp_path / "two"), name="web-2")
    try:
        result = await hub_ok(tentacle, hub, "health-check", "--pool", "Default Worker Pool")
        lines = result.out.strip().splitlines()
        task_id = lines[0].split(":")[0]
        assert lines[0] == f"{task_id}: Check health of the workers in Default Worker Pool"
        assert "Checking the health of 2 worker(s)" in lines
        assert "  web-1: Healthy" in lines
        assert "  web-2: Healthy" in lines
        assert "Health check finished: 2 Healthy" in lines
        order = [lines.index("Checking the health of 2 worker(s)"), lines.index("  web-1: Healthy")]
        assert order == sorted(order)  # in the order it happened
        assert lines.index("  web-2: Healthy") < lines.index("Health check finished: 2 Healthy")
        assert lines[-1].startswith(f"{task_id} Success in ")
        task = await hub.api.get(f"/api/tasks/{task_id}")
        assert task["Arguments"] == {"WorkerpoolId": "WorkerPools-1"}
        # --worker by name or by id scopes the task to those machines
        just_one = await hub_ok(tentacle, hub, "health-check", "--worker", "Workers-2")
        assert just_one.out.splitlines()[0].endswith(": Check health of web-2")  # its name
        assert "  web-2: Healthy" in just_one.out
        assert "web-1" not in just_one.out
    finally:
        one.stop()
        two.stop()


async def test_a_failed_health_check_names_the_unavailable_and_unhealthy_workers(
    hub: RunningHub, tentacle: TentacleCli, tmp_path: Path
) -> None:
    script = {"RunType": "Inline", "ScriptBody": "fail_healthcheck 'the disk is on fire'\n"}
    failing = await policy(
        hub, "Failing", MachineHealthCheckPolicy={"BashHealthCheckPolicy": script}
    )
    sick = await listening_worker(hub, tentacle, "--policy", failing, name="sick")
    gone = await listening_worker(hub, TentacleCli(tmp_path / "gone"), name="gone")
    gone.stop()
    try:
        result = await hub_fails(tentacle, hub, "health-check")
        assert "  sick: Unhealthy: " in result.out
        assert "the disk is on fire" in result.out
        assert "  gone: Unavailable: " in result.out
        line = one_error_line(result)
        assert "failed: " in line
        assert "gone (Unavailable)" in line
        assert "sick (Unhealthy)" in line
    finally:
        sick.stop()


async def test_no_wait_prints_the_task_id(hub: RunningHub, tentacle: TentacleCli) -> None:
    result = await hub_ok(tentacle, hub, "health-check", "--no-wait")
    task_id = result.out.strip()
    task = await hub.api.get(f"/api/tasks/{task_id}")
    assert task["Name"] == "Health"


async def test_ctrl_c_stops_following_and_the_check_goes_on(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    script = {"RunType": "Inline", "ScriptBody": "sleep 300\n"}
    slow = await policy(hub, "Slow", MachineHealthCheckPolicy={"BashHealthCheckPolicy": script})
    agent = await listening_worker(hub, tentacle, "--policy", slow, name="slow")
    follower = subprocess.Popen(
        [sys.executable, "-m", "agent", "hub", "health-check", *hub_args(hub)],
        env=tentacle.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(follower.stdout.readline), HANG)
        task_id = first.split(":")[0]
        assert task_id.startswith("ServerTasks-"), first
        follower.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(asyncio.to_thread(follower.communicate), HANG)
        assert follower.returncode == 130
        assert "Traceback" not in err
        assert f"Stopped following {task_id}; the health check goes on on the hub" in err
        task = await hub.api.get(f"/api/tasks/{task_id}")
        assert task["State"] not in ("Cancelling", "Canceled")
        status, _ = await hub.api.request("POST", f"/api/tasks/{task_id}/cancel")
        assert status == 200
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        agent.stop()


async def test_unknown_names_are_refused_naming_what_the_hub_has(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    worker = one_error_line(await hub_fails(tentacle, hub, "health-check", "--worker", "ghost"))
    assert worker == "error: the hub has no worker 'ghost' (it has none)"
    pool = one_error_line(await hub_fails(tentacle, hub, "health-check", "--pool", "Nope"))
    assert pool == "error: the hub has no worker pool 'Nope' (it has 'Default Worker Pool')"
    assert await hub.api.get("/api/tasks/all") == []  # nothing was submitted
    bad_health = await asyncio.to_thread(
        tentacle.fails, "hub", "workers", *hub_args(hub), "--health", "Sick", code=2
    )
    assert "'Sick' is not one of" in bad_health.err


async def test_an_unreachable_hub_or_a_bad_key_is_one_clear_line(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    nowhere = f"https://127.0.0.1:{free_port()}/"
    unreachable = await asyncio.to_thread(
        tentacle.fails, "hub", "workers", "--server", nowhere, "--apikey", "API-X"
    )
    assert one_error_line(unreachable).startswith(f"error: cannot reach the hub at {nowhere[:-1]}")
    bad_key = "API-" + "A" * 26
    for verb in ("workers", "pools", "policies", "health-check"):
        refused = await asyncio.to_thread(tentacle.fails, "hub", verb, *hub_args(hub, key=bad_key))
        line = one_error_line(refused)
        assert "401" in line, line
        assert "the API key is not valid for this hub" in line, line
    reader = await hub.key("reader", Permission.READ_ONLY)
    forbidden = one_error_line(await hub_fails_with(tentacle, hub, reader, "health-check"))
    assert "403" in forbidden, forbidden


async def hub_fails_with(cli: TentacleCli, hub: RunningHub, key: str, verb: str) -> Result:
    return await asyncio.to_thread(cli.fails, "hub", verb, *hub_args(hub, key=key))


async def test_the_all_routes_filter_by_name_as_the_pages_do(
    hub: RunningHub, tentacle: TentacleCli, tmp_path: Path
) -> None:
    """register-worker looks a name up with /api/workers/all?name=: with /all ignoring the
    filter, a second worker under another name was refused as a taken name."""
    first = await listening_worker(hub, tentacle, name="alpha")
    second = await listening_worker(hub, TentacleCli(tmp_path / "b"), name="beta")
    try:
        named = await hub.api.get("/api/workers/all?name=BETA")
        assert [w["Name"] for w in named] == ["beta"]
        partial = await hub.api.get("/api/workers/all?partialName=lph")
        assert [w["Name"] for w in partial] == ["alpha"]
        pools = await hub.api.get("/api/workerpools/all?name=nope")
        assert pools == []
    finally:
        first.stop()
        second.stop()


async def test_a_key_read_from_a_file_with_windows_line_ends_works(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    key = f"{hub.api.key}\r\n"  # what `$(cat key.txt)` keeps of a CRLF file: the \r
    result = await asyncio.to_thread(
        tentacle.ok, "hub", "pools", *hub_args(hub, key), "--format", "json"
    )
    assert "Default Worker Pool" in result.out


@pytest.mark.parametrize("key", ["API-ABC\nDEF", "API-ABC DEF", "API-ABC\x01"])
async def test_a_key_holding_a_control_character_or_space_is_one_clear_line(
    hub: RunningHub, tentacle: TentacleCli, key: str
) -> None:
    result = await asyncio.to_thread(
        lambda: tentacle.fails("hub", "pools", *hub_args(hub, key), code=2)  # a usage error
    )
    assert "Traceback" not in result.err
    assert "an API key is API- followed by letters and digits" in result.err, result.err
    assert key not in result.err  # a key is never printed, not even a wrong one
