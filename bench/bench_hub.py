"""P8: one health-check round of 2,000 polling workers through a real hub.

A hub (``tentacle hub serve``, a process of its own, SQLite on tmpfs) and
2,000 lightweight polling agents (bench/polling_fleet.py, FLEETS processes,
each agent with a certificate of its own and one connection) on loopback.
The workers are registered through the API (POST /api/workers with their
certificates), the default policy set to OnlyConnectivity, the checks the hub
queues for new workers left to finish; then one Health task for the default
pool is submitted and timed to completion (target <= 10 s). Hub RSS reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from harness import UNISOLATED

from agent.certs import generate_identity, save_identity
from agent.client.hub_api import HubApi
from agent.config.polling import new_subscription_id
from agent.hub.home import create_home
from agent.hub.keys import Permission
from agent.hub.store import open_store
from agent.hub.store.apikeys import create_api_key
from agent.hub.store.records import initialise

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKERS = int(os.environ.get("P8_WORKERS", "2000"))
FLEETS = 4
REGISTERING = 50  # registrations in flight at once, as a fleet coming up would send them
DEADLINE = 600.0  # seconds the whole benchmark may take before it gives up
POLL = 0.05  # seconds between looks at the task (the resolution of the timing)
TARGET = 10.0


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.end:
            raise SystemExit(f"P8 gave up waiting for {what} ({DEADLINE:g} s in all)")


async def api_key(database: str) -> str:
    store = await open_store(database)
    try:
        await store.migrate()
        async with store.transaction() as conn:
            await initialise(conn, datetime.now(UTC))
            return await create_api_key(conn, "p8", Permission.CONFIGURE_SERVER, datetime.now(UTC))
    finally:
        await store.close()


def agents(work: Path) -> list[dict[str, Any]]:
    """Each agent's certificate and subscription, written for the fleets; the worker
    bodies for the hub returned."""
    bodies: list[dict[str, Any]] = []
    folder = work / "agents"
    folder.mkdir()
    lines: list[list[str]] = [[] for _ in range(FLEETS)]
    for number in range(WORKERS):
        identity, subscription = generate_identity(), new_subscription_id()
        pem = folder / f"{number}.pem"
        save_identity(pem, identity)
        lines[number % FLEETS].append(f"{subscription} {pem}")
        bodies.append(
            {
                "Name": f"p8-{number:04d}",
                "Thumbprint": identity.thumbprint,
                "Certificate": identity.certificate_pem.decode("ascii"),
                "Endpoint": {"CommunicationStyle": "TentacleActive", "Uri": subscription},
                "WorkerPoolIds": ["WorkerPools-1"],
            }
        )
    for index, listed in enumerate(lines):
        (work / f"fleet-{index}.agents").write_text("\n".join(listed) + "\n")
    return bodies


@contextlib.contextmanager
def hub_process(home: Path, log: Path) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    # its temporary folder is 0700: the built-in worker's steps as the hub's user
    env = {**os.environ, "PYTHONPATH": str(ROOT), **UNISOLATED}
    # P8_PROFILE=FILE: the hub runs under cProfile during the round (bench/profiled.py)
    profile = os.environ.get("P8_PROFILE")
    command = [
        sys.executable,
        *([str(HERE / "profiled.py"), profile] if profile else ["-m", "agent"]),
        "hub",
        "serve",
        "--home",
        str(home),
        "--listen",
        "127.0.0.1:0",
        "--polling-port",
        "0",
    ]
    with log.open("w") as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env, cwd=ROOT
        )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().removeprefix("Hub listening on: ").strip()
        port = process.stdout.readline().removeprefix("Hub polling port: ").strip()
        if not url.startswith("https://") or not port.isdigit():
            raise SystemExit(f"the hub did not start:\n{log.read_text()[-3000:]}")
        yield process, url, int(port)
    finally:
        process.terminate()
        process.wait()


async def only_connectivity(hub: HubApi) -> None:
    policy = await hub.get("/api/machinepolicies/MachinePolicies-1")
    policy["MachineHealthCheckPolicy"]["HealthCheckType"] = "OnlyConnectivity"
    await hub.request("PUT", "/api/machinepolicies/MachinePolicies-1", policy)


async def register(hub: HubApi, bodies: list[dict[str, Any]]) -> None:
    gate = asyncio.Semaphore(REGISTERING)

    async def one(body: dict[str, Any]) -> None:
        async with gate:
            await hub.request("POST", "/api/workers", body)

    await asyncio.gather(*(one(body) for body in bodies))


async def queue_drained(hub: HubApi, deadline: Deadline) -> None:
    """Until no task is queued or running (the checks of the new workers)."""
    while True:
        page = await hub.get("/api/tasks", states="Queued,Executing,Cancelling", take="1")
        if page["TotalResults"] == 0:
            return
        deadline.check(f"the new workers' checks ({page['TotalResults']} tasks left)")
        await asyncio.sleep(0.5)  # a look at the queue twice a second


async def health_counts(hub: HubApi) -> dict[str, int]:
    summary = await hub.get("/api/workerpools/summary")
    counts = summary["WorkerPoolSummaries"][0]["MachineHealthStatusSummaries"]
    return {status: n for status, n in counts.items() if n}


async def one_round(hub: HubApi, watched: psutil.Process, deadline: Deadline) -> dict[str, Any]:
    """Submit one Health task for the default pool; time it until it is completed."""
    started = time.monotonic()
    body = {"Name": "Health", "Arguments": {"WorkerpoolId": "WorkerPools-1"}}
    task = await hub.request("POST", "/api/tasks", body)
    peak = 0
    while True:
        peak = max(peak, watched.memory_info().rss)
        task = await hub.get(f"/api/tasks/{task['Id']}")
        if task["IsCompleted"]:
            break
        deadline.check("the health-check round")
        await asyncio.sleep(POLL)  # the timing's resolution, not synchronisation
    took = time.monotonic() - started
    hub_side = (
        datetime.fromisoformat(task["CompletedTime"]) - datetime.fromisoformat(task["StartTime"])
    ).total_seconds()
    return {"seconds": took, "hub_seconds": hub_side, "state": task["State"], "peak": peak}


def start_fleets(work: Path, port: int) -> list[subprocess.Popen[bytes]]:
    per_fleet = -(-WORKERS // FLEETS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "polling_fleet.py"),
                str(work),
                str(index),
                str(port),
                str(per_fleet),
                "1",
            ],
            stdout=subprocess.DEVNULL,
            env=env,
        )
        for index in range(FLEETS)
    ]


async def drive(
    url: str,
    key: str,
    thumbprint: str,
    work: Path,
    hub_pid: int,
    port: int,
    bodies: list[dict[str, Any]],
) -> None:
    deadline = Deadline(DEADLINE)
    watched = psutil.Process(hub_pid)
    fleets: list[subprocess.Popen[bytes]] = []
    try:
        async with HubApi(url, key, thumbprint) as hub:
            await only_connectivity(hub)
            started = time.monotonic()
            await register(hub, bodies)
            registered = time.monotonic() - started
            print(
                f"P8 registered {WORKERS} polling workers through POST /api/workers in "
                f"{registered:.1f} s ({WORKERS / registered:.0f}/s)",
                flush=True,
            )
            fleets = start_fleets(work, port)
            started = time.monotonic()
            await queue_drained(hub, deadline)
            print(
                f"P8 the hub's checks of the {WORKERS} new workers (one task each) done in "
                f"{time.monotonic() - started:.1f} s: {await health_counts(hub)}",
                flush=True,
            )
            rss_before = watched.memory_info().rss
            if os.environ.get("P8_PROFILE"):
                os.kill(hub_pid, signal.SIGUSR1)  # the profiler on, for the round only
            result = await one_round(hub, watched, deadline)
            if os.environ.get("P8_PROFILE"):
                os.kill(hub_pid, signal.SIGUSR1)
            counts = await health_counts(hub)
            rss_after = watched.memory_info().rss
    finally:
        for fleet in fleets:
            fleet.kill()
            fleet.wait()
    print(
        f"P8 one health-check round of {WORKERS} polling workers (OnlyConnectivity): "
        f"{result['state']} in {result['seconds']:.2f} s ({result['hub_seconds']:.2f} s "
        f"from its start to its end in the hub): {counts}"
    )
    print(
        f"P8 hub RSS: {rss_before / 2**20:.0f} MiB before the round, peak "
        f"{result['peak'] / 2**20:.0f} MiB during it, {rss_after / 2**20:.0f} MiB after"
    )
    print(
        f"RATIO P8 seconds for one health-check round of {WORKERS} polling workers: "
        f"{result['seconds']:.2f} (target <= {TARGET:g})"
    )
    if result["state"] != "Success" or counts.get("Healthy") != WORKERS:
        raise SystemExit(f"P8: the round did not find every worker Healthy: {counts}")


def main() -> None:
    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="tentacle-p8-", dir=where) as directory:
        work = Path(directory)
        home = create_home(work / "hub", None)
        key = asyncio.run(api_key(home.settings.database))
        thumbprint = home.identity().thumbprint
        (work / "hub.thumbprint").write_text(thumbprint)
        bodies = agents(work)
        with hub_process(home.path, work / "hub.log") as (process, url, port):
            try:
                asyncio.run(drive(url, key, thumbprint, work, process.pid, port, bodies))
            except BaseException:
                print((work / "hub.log").read_text()[-3000:], file=sys.stderr)
                raise


if __name__ == "__main__":
    main()
