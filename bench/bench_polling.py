"""P5b: 10,000 polling connections to one polling listener, on each event loop.

5,000 lightweight agents (the agent's own poll loop, 2 connections each, as
pollingConnectionCount's default) in FLEETS processes connect to a
PollingListener in a process of its own, all on 127.0.0.1. Measured, for each
loop in BENCH_LOOPS (default "auto", the one the CLI picks; `make bench-loops`
sets "uvloop asyncio" for the A/B of docs/decisions.md), listener and fleets
running on that loop:

- the listener's RSS per connection: (RSS with all connected and idle - RSS
  before the first) / connections (target <= 64 KiB);
- the listener's CPU while all connections sit idle with heartbeats
  (target < 5% of one core);
- one capabilities call to every agent, CALLS_IN_FLIGHT at a time (target:
  all answered within 20 s);
- after the listener is killed and started again on the same port, the seconds
  until 99% of the connections are back (target <= 30 s).

BENCH_FLEET_LOOP puts the fleets on another loop than the listener (to tell
the listener's part from the agents'). BENCH_POLLING_CONNECTIONS sets another
total (e.g. 2000 for a quick look). Each loop's run takes a few minutes. The
soft limit on file descriptors is raised to the hard one first (the listener
needs one per connection).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from agent.certs import generate_identity, save_identity

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLEETS = 5
CONNECTIONS_PER_AGENT = 2
TOTAL = int(os.environ.get("BENCH_POLLING_CONNECTIONS", "10000"))
AGENTS_PER_FLEET = TOTAL // FLEETS // CONNECTIONS_PER_AGENT
LOOPS = os.environ.get("BENCH_LOOPS", "auto").split()
# seconds: two heartbeat intervals (the default one is 30 s)
IDLE_WINDOW = float(os.environ.get("BENCH_POLLING_IDLE", "60"))
CALLS_IN_FLIGHT = 500
KIB = 1024


class Listener:
    """The listener process and its report lines."""

    def __init__(self, work: Path, port: int, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "polling_listener.py"), str(work), str(port), str(TOTAL)],
            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.milestones: list[tuple[int, float]] = []
        _, port_text, rss_text, self.loop = self._next("ready").split()
        self.port, self.idle_rss = int(port_text), int(rss_text)

    def _next(self, prefix: str) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line
        raise SystemExit(f"the listener exited before printing {prefix!r}")

    def reached(self, count: int) -> float:
        """Wait until ``count`` connections are live; returns when (monotonic).
        Each milestone passed on the way is kept in ``milestones`` (count, when)."""
        while True:
            _, reached, at = self._next("connections").split()
            self.milestones.append((int(reached), float(at)))
            if int(reached) >= count:
                return float(at)

    def call_all(self, in_flight: int) -> tuple[int, int, float]:
        """One capabilities call to every agent: (answered, failed, seconds)."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"call {in_flight}\n")
        self.process.stdin.flush()
        _, answered, failed, seconds = self._next("called").split()
        return int(answered), int(failed), float(seconds)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@dataclass
class Figures:
    loop: str
    first_connect: float
    per_connection: float  # bytes
    rss: int
    busy: float  # share of a core
    answered: int
    failed: int
    call_seconds: float
    back_99: float
    back_all: float
    # CPU seconds until 99% were back: the new listener's (its start included) and
    # the fleets', to tell which one the reconnection waited for
    listener_cpu: float
    fleets_cpu: float
    restarted: float  # seconds from the kill until the new listener listens
    # (connections, seconds since the kill) at each tenth, 99% and all, after the restart
    timeline: list[tuple[int, float]]


def identities(work: Path) -> None:
    hub = generate_identity()
    save_identity(work / "hub.pem", hub)
    (work / "hub.thumbprint").write_text(hub.thumbprint)
    for index in range(FLEETS):
        fleet = generate_identity()
        save_identity(work / f"fleet-{index}.pem", fleet)
        (work / f"fleet-{index}.crt").write_bytes(fleet.certificate_pem)


def start_fleet(work: Path, index: int, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    arguments = [work, index, port, AGENTS_PER_FLEET, CONNECTIONS_PER_AGENT]
    return subprocess.Popen(
        [sys.executable, str(HERE / "polling_fleet.py"), *map(str, arguments)],
        stdout=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def raise_file_limit() -> None:
    """Soft limit up to the hard one; refuse to start if even that is too few."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    needed = TOTAL + 256
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"P5b needs {needed} file descriptors; the hard limit is {hard}")


def measure(loop: str) -> Figures:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if loop != "auto":  # else what the CLI picks by default
        env["TENTACLE_EVENT_LOOP"] = loop
    with tempfile.TemporaryDirectory(prefix="tentacle-p5b-") as directory:
        work = Path(directory)
        identities(work)
        listener = Listener(work, 0, env)
        assert loop in ("auto", listener.loop), f"asked for {loop}, got {listener.loop}"
        fleet_env = dict(env)
        if "BENCH_FLEET_LOOP" in os.environ:
            fleet_env["TENTACLE_EVENT_LOOP"] = os.environ["BENCH_FLEET_LOOP"]
        fleets = [start_fleet(work, index, listener.port, fleet_env) for index in range(FLEETS)]
        try:
            started = time.monotonic()
            first_connect = listener.reached(TOTAL) - started
            watched = psutil.Process(listener.process.pid)
            before, wall = watched.cpu_times(), time.monotonic()
            time.sleep(IDLE_WINDOW)  # the measurement window itself
            after = watched.cpu_times()
            busy = (after.user + after.system - before.user - before.system) / (
                time.monotonic() - wall
            )
            rss = watched.memory_info().rss
            answered, failed, call_seconds = listener.call_all(CALLS_IN_FLIGHT)
            fleets_before = _cpu(fleets)
            killed = time.monotonic()
            listener.kill()
            listener = Listener(work, listener.port, env)
            restarted = time.monotonic() - killed
            back_99 = listener.reached(TOTAL * 99 // 100) - killed
            listener_cpu = _cpu([listener.process])
            fleets_cpu = _cpu(fleets) - fleets_before
            back_all = listener.reached(TOTAL) - killed
            timeline = [(count, at - killed) for count, at in listener.milestones]
        finally:
            for fleet in fleets:
                fleet.kill()
                fleet.wait()
            listener.kill()
    per_connection = (rss - listener.idle_rss) / TOTAL
    return Figures(listener.loop, first_connect, per_connection, rss, busy, answered, failed,
                   call_seconds, back_99, back_all, listener_cpu, fleets_cpu,
                   restarted, timeline)  # fmt: skip


def _cpu(processes: list[subprocess.Popen[bytes]] | list[subprocess.Popen[str]]) -> float:
    """CPU seconds (user + system) the processes have used so far."""
    times = [psutil.Process(process.pid).cpu_times() for process in processes]
    return sum(t.user + t.system for t in times)


def report(f: Figures) -> None:
    name = f"P5b[{f.loop}]"
    print(f"{name} {TOTAL} connections ({FLEETS} processes x {AGENTS_PER_FLEET} agents x "
          f"{CONNECTIONS_PER_AGENT}): all connected in {f.first_connect:.1f} s from cold; "
          f"listener RSS {f.rss / 2**20:.0f} MiB")  # fmt: skip
    print(f"{name} capabilities to every agent, {CALLS_IN_FLIGHT} in flight: {f.answered} "
          f"answered, {f.failed} failed, in {f.call_seconds:.1f} s")  # fmt: skip
    print(f"{name} after a listener restart (listening again {f.restarted:.1f} s after the "
          f"kill): 99% back in {f.back_99:.1f} s, "
          f"all in {f.back_all:.1f} s; CPU meanwhile: listener {f.listener_cpu:.1f} s "
          f"({f.listener_cpu / f.back_99:.0%} of a core), fleets {f.fleets_cpu:.1f} s")  # fmt: skip
    print(f"{name} back after the restart (connections at seconds): "
          + ", ".join(f"{count} at {at:.1f}" for count, at in f.timeline))  # fmt: skip
    print(f"RATIO {name} listener RSS per connection, KiB: {f.per_connection / KIB:.0f} "
          "(target <= 64)")  # fmt: skip
    print(f"RATIO {name} listener CPU with {TOTAL} idle connections, share of a core: "
          f"{f.busy:.3f} (target < 0.05)")  # fmt: skip
    print(f"RATIO {name} seconds until all {TOTAL} answered capabilities: "
          f"{f.call_seconds if not f.failed else float('inf'):.1f} (target <= 20)")  # fmt: skip
    print(f"RATIO {name} seconds until 99% reconnect after a listener restart: "
          f"{f.back_99:.1f} (target <= 30)")  # fmt: skip


def main() -> None:
    raise_file_limit()
    for loop in LOOPS:
        report(measure(loop))


if __name__ == "__main__":
    main()
