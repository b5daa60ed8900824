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
"""

from __future__ import annotations

import asyncio
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
from agent.transport.settings import ChannelSettings

SAMPLE_EVERY = 0.02  # seconds; the resolution of the reported times
CALL_WAIT = 30.0  # seconds a call waits for its agent's connection


async def serve(work: Path, port: int, expected: int) -> None:
    hub = load_identity(work / "hub.pem")
    settings = ChannelSettings(hub, "bench-hub", __version__)
    agents = [path.read_text() for path in sorted(work.glob("fleet-*.crt"))]
    listener = PollingListener(settings, agents)
    [(_, bound), *_] = await listener.start("127.0.0.1", port)
    rss = psutil.Process().memory_info().rss
    print(f"ready {bound} {rss} {loop_factory()[0]}", flush=True)
    milestones = sorted({expected * tenth // 10 for tenth in range(1, 11)} | {expected * 99 // 100})
    while milestones:
        count = sum(listener.connected().values())
        while milestones and count >= milestones[0]:
            print(f"connections {milestones.pop(0)} {time.monotonic():.3f}", flush=True)
        await asyncio.sleep(SAMPLE_EVERY)  # sampling for the report, not synchronisation
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
