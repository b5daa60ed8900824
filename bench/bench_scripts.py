"""Benchmark scripts on a real agent against raw process spawns and raw mTLS, in one run.

P1  `echo hi` through the client (start, wait, complete) vs a raw
    `bash -c 'echo hi'` spawn plus a raw mTLS request. Target: ratio <= 2.
P2  trivial scripts per second, 32 at a time, vs raw concurrent bash spawns.
    Target: ratio >= 0.5.
P3  256 MiB of script output received by the client vs a raw mTLS bulk upload
    of 256 MiB. Target: ratio >= 0.5.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

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


async def measure() -> None:
    async with harness() as h:

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
            if chunk.source == "stdout":
                received += sum(map(len, chunk.lines)) + len(chunk.lines)

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

    async with harness(polling=True) as h:

        async def polled_echo() -> None:
            request = ScriptRequest("echo hi", isolation="none", wait=5.0)
            outcome = await execute_script(h.client, request, ignore)
            assert outcome.exit_code == 0

        await polled_echo()  # warm up (and wait for the agent to connect)
        polled_ms = await p50_ms(polled_echo, ROUND_TRIPS)

    raw_ms = spawn_ms + request_ms
    print(f"P1 echo hi p50: tentacle {script_ms:.2f} ms; raw spawn {spawn_ms:.2f} ms "
          f"+ raw mTLS request {request_ms:.2f} ms = {raw_ms:.2f} ms")  # fmt: skip
    print(f"P2 {CONCURRENCY} at a time: tentacle {scripts_per_s:.0f} scripts/s, "
          f"raw {spawns_per_s:.0f} bash spawns/s")  # fmt: skip
    print(f"P3 {OUTPUT_BYTES // MIB} MiB of output: tentacle {output_rate:.0f} MiB/s, "
          f"raw mTLS bulk upload {upload_rate:.0f} MiB/s")  # fmt: skip
    print(f"P1 over polling: tentacle {polled_ms:.2f} ms")
    print(f"RATIO P1 echo round trip tentacle/raw: {script_ms / raw_ms:.2f} (target <= 2)")
    print(f"RATIO P1 over polling tentacle/raw: {polled_ms / raw_ms:.2f} (target <= 2)")
    print(f"RATIO P2 scripts/s tentacle/raw: {scripts_per_s / spawns_per_s:.2f} (target >= 0.5)")
    print(f"RATIO P3 output rate tentacle/raw: {output_rate / upload_rate:.2f} (target >= 0.5)")


if __name__ == "__main__":
    asyncio.run(measure())
