"""Benchmark scripts on a real agent against raw process spawns and raw mTLS, in one run.

P1  `echo hi` through the client (start, wait, complete) vs a raw
    `bash -c 'echo hi'` spawn plus a raw mTLS request, over both dialers
    (the bench dials the agent; the agent polls the bench). Target: ratio <= 1.5.
P2  trivial scripts per second, 32 at a time, vs raw concurrent bash spawns.
    Target: ratio >= 0.7.
P3  256 MiB of script output received by the client vs a raw mTLS bulk upload
    of 256 MiB. Target: ratio >= 0.7.

The agent's home is on the machine's disk, as a real agent's is; the targets
hold for those figures. With ``--tmpfs`` the same is measured again with the
home on tmpfs and printed beside them (not held to the targets).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from harness import MIB, harness, p50_ms

from agent.client.scripts import LogChunk, ScriptRequest, execute_script

ROUND_TRIPS = 300
CONCURRENCY = 32
BATCH = 640
OUTPUT_BYTES = 256 * MIB


async def spawn_echo() -> None:
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", "echo hi", stdout=asyncio.subprocess.PIPE
    )
    await process.communicate()


async def rate(operation: object, count: int, concurrency: int) -> float:
    """Operations per second with ``concurrency`` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await operation()  # type: ignore[operator]

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - started)


async def payload(total: int) -> AsyncIterator[bytes]:
    chunk = os.urandom(MIB)
    for _ in range(total // MIB):
        yield chunk


@dataclass(frozen=True)
class Figures:
    script_ms: float
    spawn_ms: float
    request_ms: float
    scripts_per_s: float
    spawns_per_s: float
    output_rate: float
    upload_rate: float
    polled_ms: float

    @property
    def raw_ms(self) -> float:
        return self.spawn_ms + self.request_ms

    def ratios(self) -> tuple[float, float, float, float]:
        """P1, P1 over polling, P2 and P3."""
        return (self.script_ms / self.raw_ms, self.polled_ms / self.raw_ms,
                self.scripts_per_s / self.spawns_per_s,
                self.output_rate / self.upload_rate)  # fmt: skip


async def measure(on_disk: bool) -> Figures:
    async with harness(on_disk=on_disk) as h:

        def ignore(chunk: LogChunk) -> None:
            pass

        async def echo_script() -> None:
            request = ScriptRequest("echo hi", isolation="none", wait=5.0)
            outcome = await execute_script(h.client, request, ignore)
            assert outcome.exit_code == 0

        async def raw_request() -> None:
            async with h.session.get(f"{h.raw_url}/noop") as response:
                await response.read()

        await echo_script()  # warm up
        script_ms = await p50_ms(echo_script, ROUND_TRIPS)
        spawn_ms = await p50_ms(spawn_echo, ROUND_TRIPS)
        request_ms = await p50_ms(raw_request, ROUND_TRIPS)

        scripts_per_s = await rate(echo_script, BATCH, CONCURRENCY)
        spawns_per_s = await rate(spawn_echo, BATCH, CONCURRENCY)

        received = 0

        def count(chunk: LogChunk) -> None:
            nonlocal received
            if chunk.source == "stdout":  # the bytes counted, as the raw side does
                received += len(chunk.text) + 1

        body = f"yes \"$(printf '%063d' 0)\" | head -c {OUTPUT_BYTES}"
        started = time.perf_counter()
        outcome = await execute_script(h.client, ScriptRequest(body, isolation="none"), count)
        output_rate = OUTPUT_BYTES / MIB / (time.perf_counter() - started)
        assert outcome.exit_code == 0, outcome
        assert received == OUTPUT_BYTES, received
        started = time.perf_counter()
        async with h.session.post(f"{h.raw_url}/sink", data=payload(OUTPUT_BYTES)) as response:
            assert (await response.json())["Length"] == OUTPUT_BYTES
        upload_rate = OUTPUT_BYTES / MIB / (time.perf_counter() - started)

    async with harness(polling=True, on_disk=on_disk) as h:

        async def polled_echo() -> None:
            request = ScriptRequest("echo hi", isolation="none", wait=5.0)
            outcome = await execute_script(h.client, request, ignore)
            assert outcome.exit_code == 0

        await polled_echo()  # warm up (and wait for the agent to connect)
        polled_ms = await p50_ms(polled_echo, ROUND_TRIPS)

    return Figures(script_ms, spawn_ms, request_ms, scripts_per_s, spawns_per_s,
                   output_rate, upload_rate, polled_ms)  # fmt: skip


def report(f: Figures) -> None:
    print(f"P1 echo hi p50: tentacle {f.script_ms:.2f} ms; raw spawn {f.spawn_ms:.2f} ms "
          f"+ raw mTLS request {f.request_ms:.2f} ms = {f.raw_ms:.2f} ms")  # fmt: skip
    print(f"P2 {CONCURRENCY} at a time: tentacle {f.scripts_per_s:.0f} scripts/s, "
          f"raw {f.spawns_per_s:.0f} bash spawns/s")  # fmt: skip
    print(f"P3 {OUTPUT_BYTES // MIB} MiB of output: tentacle {f.output_rate:.0f} MiB/s, "
          f"raw mTLS bulk upload {f.upload_rate:.0f} MiB/s")  # fmt: skip
    print(f"P1 over polling: tentacle {f.polled_ms:.2f} ms")


async def main(with_tmpfs: bool) -> None:
    disk = await measure(on_disk=True)
    print("agent home on disk:")
    report(disk)
    p1, polled, p2, p3 = disk.ratios()
    if with_tmpfs:
        memory = await measure(on_disk=False)
        print("agent home on tmpfs (for comparison, not held to the targets):")
        report(memory)
        m1, mpolled, m2, m3 = memory.ratios()
        print(f"tmpfs ratios: P1 {m1:.2f}, P1 over polling {mpolled:.2f}, P2 {m2:.2f}, P3 {m3:.2f}")
    print(f"RATIO P1 echo round trip tentacle/raw: {p1:.2f} (target <= 1.5)")
    print(f"RATIO P1 over polling tentacle/raw: {polled:.2f} (target <= 1.5)")
    print(f"RATIO P2 scripts/s tentacle/raw: {p2:.2f} (target >= 0.7)")
    print(f"RATIO P3 output rate tentacle/raw: {p3:.2f} (target >= 0.7)")


if __name__ == "__main__":
    asyncio.run(main(with_tmpfs="--tmpfs" in sys.argv[1:]))
