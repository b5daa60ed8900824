"""P5's server: one PollingListener in a process of its own, reporting its connections.

Usage: polling_listener.py WORK PORT EXPECTED. Prints ``ready PORT`` once
listening, then ``connections N T`` (T: CLOCK_MONOTONIC, comparable across
processes) each time the count of live agent connections reaches another
tenth of EXPECTED, 99% of it, or all of it; then it stops counting.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

from agent import __version__
from agent.certs import load_identity
from agent.client import PollingListener
from agent.transport.settings import ChannelSettings

SAMPLE_EVERY = 0.02  # seconds; the resolution of the reported times


async def serve(work: Path, port: int, expected: int) -> None:
    hub = load_identity(work / "hub.pem")
    agents = [path.read_text() for path in sorted(work.glob("fleet-*.crt"))]
    listener = PollingListener(ChannelSettings(hub, "bench-hub", __version__), agents)
    [(_, bound), *_] = await listener.start("127.0.0.1", port)
    print(f"ready {bound}", flush=True)
    milestones = sorted({expected * tenth // 10 for tenth in range(1, 11)} | {expected * 99 // 100})
    while milestones:
        count = sum(listener.connected().values())
        while milestones and count >= milestones[0]:
            print(f"connections {milestones.pop(0)} {time.monotonic():.3f}", flush=True)
        await asyncio.sleep(SAMPLE_EVERY)  # sampling for the report, not synchronisation
    await asyncio.Event().wait()  # all connected: now idle, and measured so


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(serve(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
