"""The heartbeat: proof that a process's event loop turns (/livez, `tentacle livez`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client import Gauge

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 5.0  # seconds between beats
HEARTBEAT_FILE = "tentacle.heartbeat"  # in an agent's home: `tentacle livez` reads its mtime


class Heartbeat:
    """Proof that the event loop turns: ``run()`` beats every ``interval`` seconds,
    recording the time, setting ``gauge`` and touching ``path`` (when given) so that
    another process (``tentacle livez``) can tell a live agent from a hung one."""

    def __init__(
        self,
        path: Path | None = None,
        gauge: Gauge | None = None,
        interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.path = path
        self.gauge = gauge
        self.interval = interval
        self.last = 0.0  # time.time() of the last beat; 0: never
        self._warned = False

    def beat(self) -> None:
        self.last = time.time()
        if self.gauge is not None:
            self.gauge.set(self.last)
        if self.path is not None:
            self._touch(self.path)

    def age(self) -> float:
        """Seconds since the last beat (infinite before the first)."""
        return time.time() - self.last if self.last else float("inf")

    async def run(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self.interval)  # a schedule: the beat is the point

    def _touch(self, path: Path) -> None:
        try:
            # O_NOFOLLOW: the home is the agent's; a link planted there is not followed
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.utime(fd)
            finally:
                os.close(fd)
        except OSError as error:
            if not self._warned:  # a full or read-only disk: once, not every 5 s
                log.warning("cannot touch the heartbeat file %s: %s", path, error)
                self._warned = True


@contextlib.asynccontextmanager
async def heartbeating(heartbeat: Heartbeat) -> AsyncIterator[Heartbeat]:
    """Run ``heartbeat`` for the block (its first beat before the block begins)."""
    heartbeat.beat()
    task = asyncio.create_task(heartbeat.run(), name="heartbeat")
    try:
        yield heartbeat
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def beat_in_background(heartbeat: Heartbeat) -> asyncio.Task[None]:
    """Beat once now, then every interval in a task (cancel it to stop)."""
    heartbeat.beat()
    return asyncio.create_task(heartbeat.run(), name="heartbeat")


def file_age(path: Path) -> float | None:
    """Seconds since ``path`` (a heartbeat file) was last touched; None if it is missing."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
