"""What every benchmark needs: a real agent and a bare aiohttp server over the same mTLS.

Both run as processes of their own on 127.0.0.1, in a temporary folder.
That folder is on tmpfs by default (disk writeback would otherwise land on
whichever side writes second and measure the disk, not the code); with
``on_disk`` it is on the machine's disk, where every real agent keeps its
home: the script benchmarks run so, since each script creates, renames and
removes files, which costs more on a disk than on tmpfs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from agent import __version__
from agent.certs import Identity, generate_identity, save_identity
from agent.client import AgentClient, Endpoint, PollingListener
from agent.config import InstanceIndex, TrustedPeer
from agent.config.instances import create_instance
from agent.config.polling import PollingServer, new_subscription_id
from agent.transport.settings import ChannelSettings
from agent.transport.tls import client_context

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


@dataclass
class Harness:
    work: Path
    agent: subprocess.Popen[str]
    agent_home: Path
    client: AgentClient
    raw_url: str
    session: aiohttp.ClientSession


def _start(
    command: list[str], env: dict[str, str], ready: str
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    for line in process.stdout:
        if ready in line:
            return process, line.strip()
    raise SystemExit(f"{command} exited before it was ready")


def _identities(work: Path, polled_from: int | None) -> tuple[Identity, Identity, Path, str]:
    index = InstanceIndex(work / "config" / "instances")
    agent_identity, hub_identity = generate_identity(), generate_identity()
    instance = create_instance(index, work / "config", "agent")
    save_identity(instance.config.identity_path, agent_identity)
    config = instance.config.with_settings(port=0, listen_ip="127.0.0.1")
    subscription = new_subscription_id()
    if polled_from is not None:
        server = PollingServer.at("127.0.0.1", polled_from, hub_identity.thumbprint)
        config = config.with_settings(no_listen=True, subscription_id=subscription,
                                      polling_servers=(server,))  # fmt: skip
    instance.save(config.with_trusted((TrustedPeer.from_certificate(hub_identity.certificate),)))
    save_identity(work / "agent.pem", agent_identity)
    (work / "hub-cert.pem").write_bytes(hub_identity.certificate_pem)
    return agent_identity, hub_identity, instance.config.home, subscription


@contextlib.asynccontextmanager
async def harness(
    *, polling: bool = False, on_disk: bool = False, agent_args: tuple[str, ...] = ()
) -> AsyncIterator[Harness]:
    """The agent and the raw server; with ``polling`` the agent polls the bench.

    With ``on_disk`` the agent's home is on the disk rather than on tmpfs;
    ``agent_args`` are added to the agent's command line (``--metrics H:P``).
    """
    where = disk_folder() if on_disk else memory_folder()
    with tempfile.TemporaryDirectory(prefix="tentacle-bench-", dir=where) as directory:
        work = Path(directory)
        # searchable by scripts' users (the agent runs each as its group's uid when root,
        # as a real installation's home under /var/lib is); the folders inside stay 0700
        work.chmod(0o711)
        env = {**os.environ, "TENTACLE_CONFIG_HOME": str(work / "config"), "PYTHONPATH": str(ROOT)}
        for variable in ("SSH_CLIENT", "SSH_CONNECTION"):
            env.pop(variable, None)
        port = free_port() if polling else None
        agent_identity, hub_identity, home, subscription = _identities(work, port)
        settings = ChannelSettings(hub_identity, "bench", __version__)
        listener = PollingListener(settings, [agent_identity.certificate_pem.decode()])
        if port is not None:
            await listener.start("127.0.0.1", port)
        ready = "Agent will not listen" if polling else "Agent listening on"
        agent, line = _start([sys.executable, "-m", "agent", "agent", "--instance", "agent",
                              *agent_args], env, ready)  # fmt: skip
        raw, raw_line = _start(
            [sys.executable, "bench/raw_server.py", str(work / "agent.pem"),
             str(work / "hub-cert.pem"), str(work)], env, "PORT",
        )  # fmt: skip
        try:
            if polling:
                client = AgentClient.polling(
                    listener, Endpoint(subscription, agent_identity.thumbprint), settings
                )
            else:
                url = "https://" + line.split("wss://", 1)[1]
                client = AgentClient(Endpoint(url, agent_identity.thumbprint), settings)
            connector = aiohttp.TCPConnector(ssl=client_context(hub_identity), limit=64)
            async with client, aiohttp.ClientSession(connector=connector) as session:
                raw_url = f"https://127.0.0.1:{raw_line.split()[1]}"
                yield Harness(work, agent, home, client, raw_url, session)
        finally:
            for process in (agent, raw):
                process.terminate()
                process.wait()
            if polling:
                await listener.stop()


def memory_folder() -> str | None:
    """A folder on tmpfs (None, the system's default, where there is none)."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def disk_folder() -> str:
    """A writable folder on a disk (not tmpfs): the system's temporary folder or the project's."""
    for candidate in (tempfile.gettempdir(), str(ROOT)):
        if _filesystem(candidate) not in ("tmpfs", "ramfs") and os.access(candidate, os.W_OK):
            return candidate
    raise SystemExit(f"no folder on a disk to put the agent's home in (tried /tmp and {ROOT})")


def _filesystem(path: str) -> str:
    """The type of the filesystem ``path`` is on, from /proc/mounts (the longest mount point)."""
    real, best, kind = os.path.realpath(path), "", ""
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1]
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[2]
    return kind


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def p50_ms(operation: Callable[[], Awaitable[object]], count: int) -> float:
    """Median latency of ``count`` sequential runs, the first tenth left out as warm-up."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await operation()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples[count // 10 :]) * 1000


# The benches' temporary folders are 0700, and as root scripts would run as their
# isolation groups' uids, which cannot reach them: scripts as the benches' user
# (as the tests do), the same measurement as before users
UNISOLATED = {"TENTACLE_HUB_BUILTIN_WORKER_SCRIPT_USERS": "off", "TENTACLE_SCRIPT_USERS": "off"}
