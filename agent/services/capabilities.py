"""The capabilities service: what this agent serves and what its machine offers."""

from __future__ import annotations

import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from agent.protocol.calls import IncomingCall, Reply
from agent.protocol.services import (
    Capabilities,
    CapabilitiesRequest,
    PingRequest,
    Pong,
    ProcessTree,
    ScriptIsolation,
)
from agent.scripts.runner import PROGRAMS

Draining = Callable[[], str | None]  # since when the agent drains, None if it does not


def capabilities(
    home: Path,
    services: Callable[[], tuple[str, ...]],
    version: str,
    draining: Draining | None = None,
    process_tree: ProcessTree = ProcessTree.SESSION,
    isolation: ScriptIsolation = ScriptIsolation.NONE,
) -> dict[str, Any]:
    """Build the capabilities document (cheap: no subprocess, no lock)."""
    since = draining() if draining is not None else None
    return Capabilities(
        supported_capabilities=tuple(services()),
        agent_version=version,
        os=platform.system(),
        os_version=platform.release(),
        architecture=platform.machine(),
        # The scripts.start Syntax values this machine can run (python needs python3)
        shells=tuple(syntax for syntax, program in PROGRAMS.items() if shutil.which(program)),
        free_disk_bytes=shutil.disk_usage(home).free,
        cpus=psutil.cpu_count() or 1,
        memory_bytes=psutil.virtual_memory().total,
        draining=since is not None,
        draining_since=since,
        process_tree=process_tree,
        script_isolation=isolation,  # whether scripts run as their isolation groups' uids
    ).to_wire()


def capabilities_methods(
    home: Path,
    services: Callable[[], tuple[str, ...]],
    version: str,
    draining: Draining | None = None,
    process_tree: ProcessTree = ProcessTree.SESSION,
    isolation: ScriptIsolation = ScriptIsolation.NONE,
) -> dict[str, Callable[[IncomingCall], Any]]:
    async def get(call: IncomingCall) -> Reply:
        CapabilitiesRequest.parse(call.params)
        return Reply(capabilities(home, services, version, draining, process_tree, isolation))

    async def ping(call: IncomingCall) -> Reply:
        """The cheapest round trip: for liveness checks and latency measurement."""
        PingRequest.parse(call.params)
        return Reply(Pong(pong=True).to_wire())

    return {"get": get, "ping": ping}
