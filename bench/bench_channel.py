"""Benchmark the RPC channel against bare aiohttp over the same mutual TLS, in one run.

1. Round trip of a no-op call (capabilities.ping) vs a raw GET, p50 over many
   sequential calls on one open connection. Target: ratio <= 1.5.
2. Upload rate of a large file vs a raw streamed POST into a file.
   Target: ratio >= 0.70, and the agent's RSS grows by < 32 MiB meanwhile.

Both sides run in their own processes on 127.0.0.1; only ratios mean anything.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import psutil

from agent import __version__
from agent.certs import generate_identity, save_identity
from agent.client import AgentClient, Endpoint
from agent.config import InstanceIndex, TrustedPeer
from agent.config.instances import create_instance
from agent.transport.settings import ChannelSettings
from agent.transport.tls import client_context

ROUND_TRIPS = 2000
UPLOAD_BYTES = 512 * 1024 * 1024
UPLOAD_RUNS = 3
MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]


def start(command: list[str], env: dict[str, str], ready: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    for line in process.stdout:
        if ready in line:
            return process, line.strip()
    raise SystemExit(f"{command} exited before it was ready")


class PeakRss:
    """Samples a process's RSS in a thread while a measurement runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def growth_mib(self) -> float:
        self._stop.set()
        self._thread.join()
        return (self.peak - self.before) / MIB


async def round_trips(call: object) -> float:
    samples = []
    for _ in range(ROUND_TRIPS):
        started = time.perf_counter()
        await call()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return statistics.median(samples[ROUND_TRIPS // 10 :]) * 1000


async def payload() -> object:
    chunk = os.urandom(MIB)
    for _ in range(UPLOAD_BYTES // MIB):
        yield chunk


async def measure(work: Path) -> None:
    env = {**os.environ, "TENTACLE_CONFIG_HOME": str(work / "config"), "PYTHONPATH": str(ROOT)}
    index = InstanceIndex(work / "config" / "instances")
    agent_identity, hub_identity = generate_identity(), generate_identity()
    instance = create_instance(index, work / "config", "agent")
    save_identity(instance.config.identity_path, agent_identity)
    config = instance.config.with_settings(port=0, listen_ip="127.0.0.1")
    instance.save(config.with_trusted((TrustedPeer.from_certificate(hub_identity.certificate),)))
    save_identity(work / "hub.pem", hub_identity)
    save_identity(work / "agent.pem", agent_identity)
    (work / "hub-cert.pem").write_bytes(hub_identity.certificate_pem)

    agent, line = start([sys.executable, "-m", "agent", "agent", "--instance", "agent"], env,
                        "Agent listening on")  # fmt: skip
    raw, raw_line = start(
        [sys.executable, "bench/raw_server.py", str(work / "agent.pem"), str(work / "hub-cert.pem"),
         str(work)], env, "PORT",
    )  # fmt: skip
    try:
        url = line.split("wss://", 1)[1].rstrip("/")
        settings = ChannelSettings(hub_identity, "bench", __version__)
        raw_url = f"https://127.0.0.1:{raw_line.split()[1]}"
        async with AgentClient(Endpoint(f"https://{url}/", agent_identity.thumbprint),
                               settings) as client:  # fmt: skip
            channel = await client.connect()
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client_context(hub_identity), limit=1)
            ) as session:

                async def raw_noop() -> None:
                    async with session.get(f"{raw_url}/noop") as response:
                        await response.read()

                raw_ms = await round_trips(raw_noop)
                rpc_ms = await round_trips(lambda: channel.call("capabilities", "ping"))

                raw_rates, rpc_rates, growth = [], [], 0.0
                for _ in range(UPLOAD_RUNS):
                    started = time.perf_counter()
                    async with session.post(f"{raw_url}/upload", data=payload()) as response:
                        assert (await response.json())["Length"] == UPLOAD_BYTES
                    raw_rates.append(UPLOAD_BYTES / MIB / (time.perf_counter() - started))

                    rss = PeakRss(agent.pid)
                    started = time.perf_counter()
                    result = await channel.call(
                        "files", "upload", {"Path": "bench.bin", "Length": UPLOAD_BYTES},
                        upload=payload(),  # type: ignore[arg-type]
                    )  # fmt: skip
                    rpc_rates.append(UPLOAD_BYTES / MIB / (time.perf_counter() - started))
                    growth = max(growth, rss.growth_mib())
                    assert result.value["Length"] == UPLOAD_BYTES
                    # freeing a large file costs the next writer; keep it out of the timings
                    Path(result.value["FullPath"]).unlink()
                    (work / "raw-upload.bin").unlink()
    finally:
        for process in (agent, raw):
            process.terminate()
            process.wait()

    raw_rate, rpc_rate = statistics.median(raw_rates), statistics.median(rpc_rates)
    print(f"no-op round trip p50: tentacle {rpc_ms:.3f} ms, raw aiohttp mTLS {raw_ms:.3f} ms")
    print(f"upload {UPLOAD_BYTES // MIB} MiB (median of {UPLOAD_RUNS}): "
          f"tentacle {rpc_rate:.0f} MiB/s, raw aiohttp mTLS {raw_rate:.0f} MiB/s")  # fmt: skip
    print(f"agent RSS growth during upload: {growth:.1f} MiB (target < 32)")
    print(f"RATIO round trip tentacle/raw: {rpc_ms / raw_ms:.2f} (target <= 1.5)")
    print(f"RATIO upload tentacle/raw: {rpc_rate / raw_rate:.2f} (target >= 0.70)")


def main() -> None:
    # On tmpfs where there is one: disk writeback would throttle whichever side
    # happens to write after the other, which measures the disk, not the channel.
    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="tentacle-bench-", dir=where) as work:
        asyncio.run(measure(Path(work)))


if __name__ == "__main__":
    main()
