"""P5: 2,000 polling connections to one polling listener.

1,000 lightweight agents (the agent's own poll loop, 2 connections each, as
pollingConnectionCount's default) in FLEETS processes connect to a
PollingListener in a process of its own. Measured:

- the listener's CPU while all 2,000 connections sit idle with heartbeats
  (target < 5% of one core);
- after the listener is killed and started again on the same port, the seconds
  until 99% of the connections are back (target <= 30 s).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from agent.certs import generate_identity, save_identity

HERE = Path(__file__).resolve().parent
FLEETS = 4
AGENTS_PER_FLEET = 250
CONNECTIONS_PER_AGENT = 2
TOTAL = FLEETS * AGENTS_PER_FLEET * CONNECTIONS_PER_AGENT
IDLE_WINDOW = 30.0  # seconds: three heartbeat intervals


class Listener:
    """The listener process and its report lines."""

    def __init__(self, work: Path, port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "polling_listener.py"), str(work), str(port), str(TOTAL)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.port = int(self._next("ready").split()[1])

    def _next(self, prefix: str) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line
        raise SystemExit(f"the listener exited before printing {prefix!r}")

    def reached(self, count: int) -> float:
        """Wait until ``count`` connections are live; returns when (monotonic)."""
        while True:
            _, reached, at = self._next("connections").split()
            if int(reached) >= count:
                return float(at)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def identities(work: Path) -> None:
    hub = generate_identity()
    save_identity(work / "hub.pem", hub)
    (work / "hub.thumbprint").write_text(hub.thumbprint)
    for index in range(FLEETS):
        fleet = generate_identity()
        save_identity(work / f"fleet-{index}.pem", fleet)
        (work / f"fleet-{index}.crt").write_bytes(fleet.certificate_pem)


def start_fleet(work: Path, index: int, port: int) -> subprocess.Popen[bytes]:
    arguments = [work, index, port, AGENTS_PER_FLEET, CONNECTIONS_PER_AGENT]
    return subprocess.Popen(
        [sys.executable, str(HERE / "polling_fleet.py"), *map(str, arguments)],
        stdout=subprocess.DEVNULL,
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tentacle-p5-") as directory:
        work = Path(directory)
        identities(work)
        listener = Listener(work, 0)
        fleets = [start_fleet(work, index, listener.port) for index in range(FLEETS)]
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
            memory = watched.memory_info().rss
            killed = time.monotonic()
            listener.kill()
            listener = Listener(work, listener.port)
            back_99 = listener.reached(TOTAL * 99 // 100) - killed
            back_all = listener.reached(TOTAL) - killed
        finally:
            for fleet in fleets:
                fleet.kill()
            listener.kill()
    print(f"P5 {TOTAL} connections ({FLEETS} processes x {AGENTS_PER_FLEET} agents x "
          f"{CONNECTIONS_PER_AGENT}): all connected in {first_connect:.1f} s from cold; "
          f"listener RSS {memory / 2**20:.0f} MiB")  # fmt: skip
    print(f"P5 after a listener restart: 99% back in {back_99:.1f} s, all in {back_all:.1f} s")
    print(f"RATIO P5 listener CPU with {TOTAL} idle connections, share of a core: "
          f"{busy:.3f} (target < 0.05)")  # fmt: skip
    print(f"RATIO P5 seconds until 99% reconnect after a listener restart: {back_99:.1f} "
          "(target <= 30)")  # fmt: skip


if __name__ == "__main__":
    main()
