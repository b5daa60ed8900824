"""P9-P11: tasks on workers through a real hub, against direct execute_script in the same run.

A hub (``tentacle hub serve``, a process of its own, task cap 5) and 20 real
listening agents (``tentacle agent``), homes on the machine's disk as P1's.
The agents trust the hub's certificate and are registered through
POST /api/workers: the first 4 in a pool "P10" (P9 and P10 use it), all 20 in
"P11". The direct baseline is the bench calling the same agents with the hub's
own identity, as the hub does.

P9  an ``echo hi`` AdHocScript task on one worker: POST /api/tasks until the caller
    sees Success (GET /api/tasks/{id}/state?wait=WAIT: a long poll answered as the
    task changes) vs P1's direct
    execute_script to the same worker: p50 ratio (target <= 2).
P10 200 one-worker ``echo hi`` tasks submitted at once on the 4 workers: tasks/s vs
    direct execute_script with 5 in flight over the same workers (target >= 0.5).
P11 one task on all 20 workers with MaxParallelism 10, each step holding a marker
    file for STEP_SECONDS: the most markers seen at once (must be exactly 10) and the
    wall time vs 2x a single step's (a task on one worker with the same script).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from harness import UNISOLATED, disk_folder, memory_folder

from agent import __version__
from agent.certs import Identity, generate_identity, save_identity
from agent.client import AgentClient, Endpoint
from agent.client.hub_api import HubApi
from agent.client.scripts import LogChunk, ScriptRequest, execute_script
from agent.config import InstanceIndex, TrustedPeer
from agent.config.instances import create_instance
from agent.hub.home import create_home
from agent.hub.keys import Permission
from agent.hub.store import open_store
from agent.hub.store.apikeys import create_api_key
from agent.hub.store.records import initialise
from agent.transport.settings import ChannelSettings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AGENTS = 20
SMALL_POOL = 4
TASK_CAP = 5
ROUND_TRIPS = int(os.environ.get("P9_ROUND_TRIPS", "100"))
TASKS = int(os.environ.get("P10_TASKS", "200"))
IN_FLIGHT = 5
PARALLELISM = 10
STEP_SECONDS = 2.0
WAIT = 20  # seconds a caller's look at a task's state may wait for its change
DEADLINE = 900.0  # seconds the whole benchmark may take before it gives up
PROFILE = os.environ.get("P9_PROFILE", "")
HUB_PID: list[int] = []  # the hub process's, once started

# P11's step: a marker while it runs; the markers seen at its start and its end noted
MARKED = """\
marker=$(mktemp "$1/running.XXXXXXXX")
ls "$1" | grep -c '^running\\.' >> "$1/seen"
sleep "$2"
ls "$1" | grep -c '^running\\.' >> "$1/seen"
rm -f "$marker"
"""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.end:
            raise SystemExit(f"bench_tasks gave up waiting for {what} ({DEADLINE:g} s in all)")


DEADLINE_ALL = Deadline(DEADLINE)


@dataclass
class Agent:
    name: str
    process: subprocess.Popen[str]
    url: str
    identity: Identity


async def api_key(database: str) -> str:
    store = await open_store(database)
    try:
        await store.migrate()
        async with store.transaction() as conn:
            await initialise(conn, datetime.now(UTC))
            return await create_api_key(conn, "bench", Permission.CONFIGURE_SERVER,
                                        datetime.now(UTC))  # fmt: skip
    finally:
        await store.close()


def _ready_line(process: subprocess.Popen[str], ready: str, what: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if ready in line:
            return line.strip()
    raise SystemExit(f"{what} exited before it was ready")


@contextlib.contextmanager
def hub_process(home: Path, log: Path) -> Iterator[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TENTACLE_HUB_TASK_CAP": str(TASK_CAP),
           **UNISOLATED}  # fmt: skip
    # P9_PROFILE=FILE: the hub runs under cProfile during P9's and P10's hub parts
    # (bench/profiled.py), its statistics written to FILE
    program = [str(HERE / "profiled.py"), PROFILE] if PROFILE else ["-m", "agent"]
    command = [sys.executable, *program, "hub", "serve", "--home", str(home),
               "--listen", "127.0.0.1:0", "--polling-port", "0"]  # fmt: skip
    with log.open("w") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True,
                                   env=env, cwd=ROOT)  # fmt: skip
    HUB_PID.append(process.pid)
    try:
        url = _ready_line(process, "Hub listening on: ", "the hub").split(": ", 1)[1]
        _ready_line(process, "Hub polling port: ", "the hub")
        yield url
    finally:
        process.terminate()
        process.wait()


@contextlib.contextmanager
def agent_processes(work: Path, hub: Identity) -> Iterator[list[Agent]]:
    """AGENTS listening agents trusting the hub, each an instance of one config home."""
    config = work / "config"
    index = InstanceIndex(config / "instances")
    env = {
        **os.environ,
        "TENTACLE_CONFIG_HOME": str(config),
        "PYTHONPATH": str(ROOT),
        **UNISOLATED,
    }  # fmt: skip (its temporary folder is 0700: scripts as this user)
    started: list[Agent] = []
    try:
        for number in range(AGENTS):
            name = f"bench-{number:02d}"
            identity = generate_identity()
            instance = create_instance(index, config, name)
            save_identity(instance.config.identity_path, identity)
            settings = instance.config.with_settings(port=0, listen_ip="127.0.0.1")
            instance.save(settings.with_trusted((TrustedPeer.from_certificate(hub.certificate),)))
            process = subprocess.Popen(
                [sys.executable, "-m", "agent", "agent", "--instance", name],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
            )  # fmt: skip
            line = _ready_line(process, "Agent listening on", name)
            started.append(Agent(name, process, "https://" + line.split("wss://", 1)[1], identity))
        yield started
    finally:
        for agent in started:
            agent.process.terminate()
        for agent in started:
            agent.process.wait()


async def setup(hub: HubApi, agents: list[Agent]) -> tuple[str, str, list[str]]:
    """The pools P10 (the first 4 agents) and P11 (all), the workers registered in them
    and Healthy; returns the pools' ids and the workers' ids."""
    small = (await hub.request("POST", "/api/workerpools", {"Name": "P10"}))["Id"]
    large = (await hub.request("POST", "/api/workerpools", {"Name": "P11"}))["Id"]
    ids = []
    for position, agent in enumerate(agents):
        pools = [small, large] if position < SMALL_POOL else [large]
        body = {"Name": agent.name, "Thumbprint": agent.identity.thumbprint,
                "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": agent.url},
                "WorkerPoolIds": pools}  # fmt: skip
        ids.append((await hub.request("POST", "/api/workers", body))["Id"])
    while True:
        workers = await hub.get("/api/workers/all")
        if sum(w["HealthStatus"] == "Healthy" for w in workers) == len(agents):
            break
        DEADLINE_ALL.check("the workers' first health checks")
        await asyncio.sleep(0.2)  # the hub checks new workers on its own
    await drained(hub)
    return small, large, ids


async def drained(hub: HubApi) -> None:
    """Until no task is queued or running."""
    while True:
        page = await hub.get("/api/tasks", states="Queued,Executing,Cancelling", take="1")
        if page["TotalResults"] == 0:
            return
        DEADLINE_ALL.check(f"the queue to drain ({page['TotalResults']} left)")
        await asyncio.sleep(0.05)


def adhoc(
    pool: str,
    body: str,
    *,
    machines: list[str] | None = None,
    everywhere: bool = False,
    arguments: list[str] | None = None,
    parallelism: int | None = None,
) -> dict[str, Any]:
    task: dict[str, Any] = {"ScriptBody": body, "Syntax": "Bash", "WorkerPoolId": pool,
                            "TargetAllWorkers": everywhere,
                            "ScriptArguments": arguments or []}  # fmt: skip
    if machines:
        task["MachineIds"] = machines
    if parallelism is not None:
        task["MaxParallelism"] = parallelism
    return {"Name": "AdHocScript", "Arguments": task}


async def until_done(hub: HubApi, task_id: str) -> dict[str, Any]:
    """The task's state once completed, by long polls (answered as it changes)."""
    while True:
        state: dict[str, Any] = await hub.get(f"/api/tasks/{task_id}/state", wait=str(WAIT))
        if state["IsCompleted"]:
            return state
        DEADLINE_ALL.check(f"{task_id} to complete")


async def one_task(hub: HubApi, body: dict[str, Any]) -> dict[str, Any]:
    task = await hub.request("POST", "/api/tasks", body)
    state = await until_done(hub, task["Id"])
    if state["State"] != "Success":
        raise SystemExit(f"{task['Id']} ended {state['State']}: {state.get('ErrorMessage')}")
    return state


async def p50_ms(operation: Callable[[], Awaitable[object]], count: int) -> float:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await operation()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples[count // 10 :]) * 1000


@contextlib.contextmanager
def profiled(what: str, count: int) -> Iterator[None]:
    """The hub's profiler on meanwhile (P9_PROFILE), off after; the hub process's CPU
    time per task meanwhile printed (all its threads: the database's too)."""
    hub = psutil.Process(HUB_PID[0])
    before = sum(hub.cpu_times()[:2])
    main_before = _main_thread_cpu(hub)
    switches = _waits(hub.pid)
    if PROFILE:
        os.kill(HUB_PID[0], signal.SIGUSR1)
    try:
        yield
    finally:
        if PROFILE:
            os.kill(HUB_PID[0], signal.SIGUSR1)
    spent = sum(hub.cpu_times()[:2]) - before
    main = _main_thread_cpu(hub) - main_before
    switches = _waits(hub.pid) - switches
    print(f"{what} the hub's CPU per task: {spent * 1000 / count:.2f} ms (its event loop's "
          f"thread {main * 1000 / count:.2f} ms); its threads' waits per task: "
          f"{switches / count:.0f}", flush=True)  # fmt: skip


def _waits(pid: int) -> int:
    """The voluntary context switches of all the process's threads (each wait for a
    queue, a lock, the network): a count of the trips between its threads."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def _main_thread_cpu(process: psutil.Process) -> float:
    main = next(t for t in process.threads() if t.id == process.pid)
    return float(main.user_time + main.system_time)


def ignore(chunk: LogChunk) -> None:
    pass


@contextlib.asynccontextmanager
async def direct_clients(agents: list[Agent], hub: Identity) -> AsyncIterator[list[AgentClient]]:
    settings = ChannelSettings(hub, "bench", __version__)
    clients = [AgentClient(Endpoint(a.url, a.identity.thumbprint), settings) for a in agents]
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        yield clients


async def direct_echo(client: AgentClient) -> None:
    request = ScriptRequest("echo hi", isolation="none", wait=5.0)  # P1's
    outcome = await execute_script(client, request, ignore)
    assert outcome.exit_code == 0, outcome


async def p9(hub: HubApi, pool: str, worker: str, client: AgentClient) -> tuple[float, float]:
    body = adhoc(pool, "echo hi", machines=[worker])
    await one_task(hub, body)  # warm up
    await direct_echo(client)
    with profiled("P9", ROUND_TRIPS):
        hub_ms = await p50_ms(lambda: one_task(hub, body), ROUND_TRIPS)
    direct_ms = await p50_ms(lambda: direct_echo(client), ROUND_TRIPS)
    waited, ran = await hub_side(hub, ROUND_TRIPS)
    print(f"P9 in the hub, p50: queued to started {waited:.2f} ms, started to completed "
          f"{ran:.2f} ms", flush=True)  # fmt: skip
    return hub_ms, direct_ms


async def hub_side(hub: HubApi, count: int) -> tuple[float, float]:
    """Median ms of the newest ``count`` tasks from queued to started and started to
    completed, as the hub recorded them: where a task's time goes."""
    tasks = (await hub.get("/api/tasks", take=str(count), name="AdHocScript"))["Items"]

    def ms(start: str, end: str) -> float:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000

    waited = statistics.median(ms(t["QueueTime"], t["StartTime"]) for t in tasks)
    ran = statistics.median(ms(t["StartTime"], t["CompletedTime"]) for t in tasks)
    return waited, ran


async def p10(hub: HubApi, pool: str, clients: list[AgentClient]) -> tuple[float, float]:
    body = adhoc(pool, "echo hi")
    started = time.perf_counter()
    with profiled("P10", TASKS):
        tasks = await asyncio.gather(
            *(hub.request("POST", "/api/tasks", body) for _ in range(TASKS))
        )
        await drained(hub)
    hub_rate = TASKS / (time.perf_counter() - started)
    submitted = {task["Id"] for task in tasks}
    ended = [t for t in await hub.get("/api/tasks/all") if t["Id"] in submitted]
    failed = [t for t in ended if t["State"] != "Success"]
    if failed:
        raise SystemExit(f"P10: {len(failed)} tasks did not succeed, e.g. {failed[0]}")

    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(number: int) -> None:
        async with gate:
            await direct_echo(clients[number % len(clients)])

    started = time.perf_counter()
    await asyncio.gather(*(one(number) for number in range(TASKS)))
    return hub_rate, TASKS / (time.perf_counter() - started)


async def p11(hub: HubApi, pool: str, worker: str, markers: Path) -> tuple[int, float, float]:
    arguments = [str(markers), str(STEP_SECONDS)]
    started = time.perf_counter()
    await one_task(hub, adhoc(pool, MARKED, machines=[worker], arguments=arguments))
    single = time.perf_counter() - started
    (markers / "seen").unlink()
    started = time.perf_counter()
    await one_task(hub, adhoc(pool, MARKED, everywhere=True, arguments=arguments,
                              parallelism=PARALLELISM))  # fmt: skip
    wall = time.perf_counter() - started
    seen = [int(line) for line in (markers / "seen").read_text().split()]
    if len(seen) != 2 * AGENTS:
        raise SystemExit(f"P11: {len(seen) // 2} steps ran, not {AGENTS}")
    return max(seen), wall, single


async def drive(url: str, key: str, home_identity: Identity, agents: list[Agent],
                work: Path) -> None:  # fmt: skip
    async with (
        HubApi(url, key, home_identity.thumbprint) as hub,
        direct_clients(agents[:SMALL_POOL], home_identity) as clients,
    ):
        small, large, workers = await setup(hub, agents)
        hub_ms, direct_ms = await p9(hub, small, workers[0], clients[0])
        print(f"P9 echo hi p50: task through the hub {hub_ms:.2f} ms (POST to Success seen, "
              f"by GET .../state?wait={WAIT}); direct execute_script "
              f"{direct_ms:.2f} ms", flush=True)  # fmt: skip
        if os.environ.get("BENCH_TASKS_ONLY") == "P9":
            print(f"RATIO P9 echo task p50 hub/direct: {hub_ms / direct_ms:.2f} (target <= 2)")
            return
        hub_rate, direct_rate = await p10(hub, small, clients)
        print(f"P10 {TASKS} one-worker tasks at once, task cap {TASK_CAP}, {SMALL_POOL} "
              f"workers: {hub_rate:.1f} tasks/s; direct execute_script {IN_FLIGHT} in flight: "
              f"{direct_rate:.1f} scripts/s", flush=True)  # fmt: skip
        markers = work / "markers"
        markers.mkdir()
        peak, wall, single = await p11(hub, large, workers[0], markers)
        print(f"P11 a task on {AGENTS} workers, MaxParallelism {PARALLELISM}, steps of "
              f"{STEP_SECONDS:g} s: at most {peak} at once; {wall:.2f} s "
              f"(a single step's task {single:.2f} s)", flush=True)  # fmt: skip
    print(f"RATIO P9 echo task p50 hub/direct: {hub_ms / direct_ms:.2f} (target <= 2)")
    print(f"RATIO P10 tasks/s hub/direct: {hub_rate / direct_rate:.2f} (target >= 0.5)")
    print(f"RATIO P11 concurrent invocations: {peak} (must be exactly {PARALLELISM})")
    print(f"RATIO P11 wall time / 2x a single step's: {wall / (2 * single):.2f} (ideal 1.0)")
    if peak != PARALLELISM:
        raise SystemExit(f"P11: {peak} invocations at once, not {PARALLELISM}")


def main() -> None:
    # --tmpfs: the hub's database and the agents' homes on tmpfs (no fsync), to tell the
    # disk's share of P9-P10 from the code's; the targets are for the disk
    where = memory_folder() if "--tmpfs" in sys.argv[1:] else disk_folder()
    with tempfile.TemporaryDirectory(prefix="tentacle-p9-", dir=where) as directory:
        work = Path(directory)
        home = create_home(work / "hub", None)
        key = asyncio.run(api_key(home.settings.database))
        identity = home.identity()
        with (
            hub_process(home.path, work / "hub.log") as url,
            agent_processes(work, identity) as agents,
        ):
            try:
                asyncio.run(drive(url, key, identity, agents, work))
            except BaseException:
                print((work / "hub.log").read_text()[-3000:], file=sys.stderr)
                raise


if __name__ == "__main__":
    main()
