"""P5b's server: one PollingListener in a process of its own, reporting its connections.

Usage: polling_listener.py WORK PORT EXPECTED. Runs on the loop that
TENTACLE_EVENT_LOOP asks for (agent.cli.loop, as the CLI does). Prints
``ready PORT RSS LOOP`` once listening (RSS in bytes, before any agent), then
``connections N T`` (T: CLOCK_MONOTONIC, comparable across processes) each time
the count of live agent connections reaches another tenth of EXPECTED, 99% of
it, or all of it; then it stops counting and reads commands on stdin:

- ``call IN_FLIGHT``: one capabilities call to every agent listed in
  WORK/fleet-*.subscriptions, IN_FLIGHT at a time; prints
  ``called OK FAILED SECONDS``.

For finding where a reconnection storm's time goes: BENCH_TRACE=1 prints on
stderr, once a second, the listener's CPU seconds and the connections it has
accepted and whose TLS handshakes completed or failed; BENCH_PROFILE=FILE
profiles its event loop (cProfile, wall-clock: on a loaded machine a function
is also charged the time the process waited for a CPU) from listening until
all are connected, into FILE.PID.
"""

from __future__ import annotations

import asyncio
import cProfile
import ctypes
import logging
import os
import sys
import time
import tracemalloc
from pathlib import Path

import psutil

from agent import __version__
from agent.certs import load_identity
from agent.cli.loop import loop_factory, run
from agent.client import AgentClient, Endpoint, PollingListener
from agent.transport import tls_server
from agent.transport.settings import ChannelSettings

# seconds; the resolution of the reported times. A sample counts the live connections
# (~1.8 ms at 10,000); sampling every 0.1 s instead did not make the storm shorter
# (3 runs each, alternated: 87-130 s against 45-94 s), so it stays.
SAMPLE_EVERY = 0.02
CALL_WAIT = 30.0  # seconds a call waits for its agent's connection


async def trace() -> None:
    """BENCH_TRACE: once a second on stderr, what the listener has done (by wrapping
    the site's accept count and handshake completion, for this process only)."""
    counts = {"accepted": 0, "handshakes": 0, "failed": 0}
    accept = tls_server.HeapTrimmer.accepted
    complete = tls_server.SharedBufferTLS._on_handshake_complete

    def accepted(self: tls_server.HeapTrimmer) -> None:
        counts["accepted"] += 1
        accept(self)

    def completed(self: tls_server.SharedBufferTLS, exc: BaseException | None) -> None:
        counts["failed" if exc else "handshakes"] += 1
        complete(self, exc)

    tls_server.HeapTrimmer.accepted = accepted  # type: ignore[method-assign]
    tls_server.SharedBufferTLS._on_handshake_complete = completed  # type: ignore[method-assign]
    process = psutil.Process()
    while True:
        cpu = process.cpu_times()
        print(f"trace {time.monotonic():.1f} cpu {cpu.user + cpu.system:.1f} {counts}",
              file=sys.stderr, flush=True)  # fmt: skip
        await asyncio.sleep(1)  # a report period, not synchronisation


async def serve(work: Path, port: int, expected: int) -> None:
    if os.environ.get("BENCH_TRACE"):
        asyncio.get_running_loop().create_task(trace())
    hub = load_identity(work / "hub.pem")
    settings = ChannelSettings(hub, "bench-hub", __version__)
    agents = [path.read_text() for path in sorted(work.glob("fleet-*.crt"))]
    listener = PollingListener(settings, agents)
    [(_, bound), *_] = await listener.start("127.0.0.1", port)
    rss = psutil.Process().memory_info().rss
    profile = None
    if os.environ.get("BENCH_PROFILE"):
        profile = cProfile.Profile()
        profile.enable()
    print(f"ready {bound} {rss} {loop_factory()[0]}", flush=True)
    milestones = sorted({expected * tenth // 10 for tenth in range(1, 11)} | {expected * 99 // 100})
    while milestones:
        count = sum(listener.connected().values())
        while milestones and count >= milestones[0]:
            print(f"connections {milestones.pop(0)} {time.monotonic():.3f}", flush=True)
        await asyncio.sleep(SAMPLE_EVERY)  # sampling for the report, not synchronisation
    if profile is not None:
        profile.disable()
        profile.dump_stats(f"{os.environ['BENCH_PROFILE']}.{os.getpid()}")
    while command := (await asyncio.to_thread(sys.stdin.readline)).split():
        if command[0] == "call":
            await call_all(work, listener, settings, int(command[1]))
        elif command[0] == "memory":
            print_memory()
        elif command[0] == "trim":  # experiment: how much of the RSS is free heap
            before = psutil.Process().memory_info().rss
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            print(f"trimmed {before} {psutil.Process().memory_info().rss}", flush=True)
    await asyncio.Event().wait()  # stdin closed: stay up until killed


def print_memory() -> None:
    """Python's own allocations, when tracing (PYTHONTRACEMALLOC=8): for finding what
    a connection costs."""
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        stats = snapshot.statistics("traceback")
        print(f"traced {sum(stat.size for stat in stats)}", file=sys.stderr)
        for stat in stats[: int(os.environ.get("BENCH_MEMORY_TOP", "15"))]:
            print(stat, *stat.traceback.format()[-6:], sep="\n  ", file=sys.stderr)
    print("memory", flush=True)


async def call_all(
    work: Path, listener: PollingListener, settings: ChannelSettings, in_flight: int
) -> None:
    """One capabilities call to every fleet agent, ``in_flight`` at a time."""
    endpoints = []
    for listed in sorted(work.glob("fleet-*.subscriptions")):
        thumbprint = load_identity(work / listed.name.replace(".subscriptions", ".pem")).thumbprint
        endpoints += [Endpoint(s, thumbprint) for s in listed.read_text().split()]
    gate = asyncio.Semaphore(in_flight)
    failures: list[Exception] = []

    async def one(endpoint: Endpoint) -> bool:
        async with gate:
            client = AgentClient.polling(listener, endpoint, settings, wait=CALL_WAIT)
            try:
                return isinstance(await client.capabilities(), dict)
            except Exception as error:
                failures.append(error)
                return False

    started = time.monotonic()
    answered = await asyncio.gather(*(one(endpoint) for endpoint in endpoints))
    elapsed = time.monotonic() - started
    if failures:
        print(f"first failure: {failures[0]!r}", file=sys.stderr, flush=True)
    print(f"called {sum(answered)} {len(answered) - sum(answered)} {elapsed:.2f}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    run(serve(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
