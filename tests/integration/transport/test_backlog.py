"""The listening socket queues a reconnection storm instead of dropping it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from agent.transport.listener import LISTEN_BACKLOG
from tests.helpers.agent import AgentProcess


def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on 127.0.0.1:``port``, as the kernel has it
    (``ss`` shows it as Send-Q of a listening socket), capped by net.core.somaxconn."""
    shown = subprocess.run(["ss", "-ltnH", f"( sport = :{port} )"], capture_output=True,
                           text=True, check=True).stdout.split()  # fmt: skip
    assert shown, f"nothing listens on port {port}"
    return int(shown[2])


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_the_listener_queues_thousands_of_connections(agent: AgentProcess) -> None:
    with open("/proc/sys/net/core/somaxconn") as limit:
        cap = int(limit.read())
    assert listen_backlog(agent.port) == min(LISTEN_BACKLOG, cap) >= 1024
