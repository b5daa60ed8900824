"""The capabilities service: what this agent serves and what its machine offers."""

from __future__ import annotations

import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from agent.protocol.calls import IncomingCall, Reply
from agent.scripts.runner import PROGRAMS


def capabilities(
    home: Path, services: Callable[[], tuple[str, ...]], version: str
) -> dict[str, Any]:
    """Build the capabilities document (cheap: no subprocess, no lock)."""
    return {
        "SupportedCapabilities": list(services()),
        "AgentVersion": version,
        "OS": platform.system(),
        "OSVersion": platform.release(),
        "Architecture": platform.machine(),
        # The scripts.start Syntax values this machine can run (python needs python3)
        "Shells": [syntax for syntax, program in PROGRAMS.items() if shutil.which(program)],
        "FreeDiskBytes": shutil.disk_usage(home).free,
        "Cpus": psutil.cpu_count() or 1,
        "MemoryBytes": psutil.virtual_memory().total,
    }


def capabilities_methods(
    home: Path, services: Callable[[], tuple[str, ...]], version: str
) -> dict[str, Callable[[IncomingCall], Any]]:
    async def get(call: IncomingCall) -> Reply:
        return Reply(capabilities(home, services, version))

    async def ping(call: IncomingCall) -> Reply:
        """The cheapest round trip: for liveness checks and latency measurement."""
        return Reply({"Pong": True})

    return {"get": get, "ping": ping}
