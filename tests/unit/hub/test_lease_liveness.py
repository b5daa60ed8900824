"""Whether a lease's holder on this host is dead, judged by its real process."""

from __future__ import annotations

import os
import socket
import subprocess

import psutil

from agent.hub.lease import _gone, _started
from tests.helpers.eventually import eventually


def holder(pid: int, started: float | None) -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": pid, "process_started": started}


def test_a_live_holder_is_not_gone() -> None:
    assert not _gone(holder(os.getpid(), _started(os.getpid())))


async def test_a_zombie_holder_is_gone() -> None:
    """Right after kill -9 the holder is a zombie until its parent reaps it: psutil
    still gives its start time, yet it is dead and a restart must take over."""
    child = subprocess.Popen(["true"])  # exits at once; not waited for: a zombie
    try:
        started = _started(child.pid)
        process = psutil.Process(child.pid)
        await eventually(
            lambda: process.status() == psutil.STATUS_ZOMBIE, "the child to be a zombie"
        )
        assert _gone(holder(child.pid, started))
    finally:
        child.wait()
