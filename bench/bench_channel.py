"""Benchmark the RPC channel against bare aiohttp over the same mutual TLS, in one run.

1. Round trip of a no-op call (capabilities.ping) vs a raw GET, p50 over many
   sequential calls on one open connection. Target: ratio <= 1.5.
2. Upload rate of a large file vs a raw streamed POST into a file.
   Target: ratio >= 0.70, and the agent's RSS grows by < 32 MiB meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
from harness import MIB, harness, p50_ms

ROUND_TRIPS = 2000
UPLOAD_BYTES = 512 * MIB
UPLOAD_RUNS = 3


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


async def payload() -> AsyncIterator[bytes]:
    chunk = os.urandom(MIB)
    for _ in range(UPLOAD_BYTES // MIB):
        yield chunk


async def measure() -> None:
    async with harness() as h:
        channel = await h.client.connect()

        async def raw_noop() -> None:
            async with h.session.get(f"{h.raw_url}/noop") as response:
                await response.read()

        raw_ms = await p50_ms(raw_noop, ROUND_TRIPS)
        rpc_ms = await p50_ms(lambda: channel.call("capabilities", "ping"), ROUND_TRIPS)

        raw_rates, rpc_rates, growth = [], [], 0.0
        for _ in range(UPLOAD_RUNS):
            started = time.perf_counter()
            async with h.session.post(f"{h.raw_url}/upload", data=payload()) as response:
                assert (await response.json())["Length"] == UPLOAD_BYTES
            raw_rates.append(UPLOAD_BYTES / MIB / (time.perf_counter() - started))
            rss = PeakRss(h.agent.pid)
            started = time.perf_counter()
            result = await channel.call(
                "files", "upload", {"Path": "bench.bin", "Length": UPLOAD_BYTES}, upload=payload()
            )
            rpc_rates.append(UPLOAD_BYTES / MIB / (time.perf_counter() - started))
            growth = max(growth, rss.growth_mib())
            assert result.value["Length"] == UPLOAD_BYTES
            # freeing a large file costs the next writer; keep it out of the timings
            Path(result.value["FullPath"]).unlink()
            (h.work / "raw-upload.bin").unlink()

    raw_rate, rpc_rate = statistics.median(raw_rates), statistics.median(rpc_rates)
    print(f"no-op round trip p50: tentacle {rpc_ms:.3f} ms, raw aiohttp mTLS {raw_ms:.3f} ms")
    print(f"upload {UPLOAD_BYTES // MIB} MiB (median of {UPLOAD_RUNS}): "
          f"tentacle {rpc_rate:.0f} MiB/s, raw aiohttp mTLS {raw_rate:.0f} MiB/s")  # fmt: skip
    print(f"agent RSS growth during upload: {growth:.1f} MiB (target < 32)")
    print(f"RATIO round trip tentacle/raw: {rpc_ms / raw_ms:.2f} (target <= 1.5)")
    print(f"RATIO upload tentacle/raw: {rpc_rate / raw_rate:.2f} (target >= 0.70)")


if __name__ == "__main__":
    asyncio.run(measure())
