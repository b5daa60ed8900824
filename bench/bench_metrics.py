"""What --metrics costs: P1-like script round trips on an agent with and without it.

P1's `echo hi` (start, wait, complete; isolation none, home on the disk) against
an agent started without --metrics, and against one with --metrics that is
scraped every SCRAPE_EVERY seconds meanwhile (Prometheus's default is 15 s: this
scrapes far more often). Rounds alternate between the two agents so that the
machine's drift falls on both. Target: ratio metered/plain <= 1.05.

On a machine shared by busy neighbours the end-to-end ratio swings by +-25 %
from run to run, so the bench also measures what the instrumentation adds
to one script directly: the counter and histogram updates a P1 script causes,
timed in this process (CPU time per script, a lower bound on its cost), and
that as a share of P1's plain p50.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from harness import free_port, harness, p50_ms

from agent.client.scripts import LogChunk, ScriptRequest, execute_script
from agent.observability.metrics import AgentMetrics, exit_class

ROUNDS = 3
ROUND_TRIPS = 150
SCRAPE_EVERY = 1.0


def ignore(chunk: LogChunk) -> None:
    pass


async def scrape_forever(url: str, scraped: list[int]) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(url) as response:
                assert response.status == 200
                scraped.append(len(await response.read()))
            await asyncio.sleep(SCRAPE_EVERY)  # a schedule: a scraper's interval


async def round_trips(metered: bool) -> tuple[float, int]:
    """P1's p50 in ms on a fresh agent, and how many scrapes ran meanwhile."""
    port = free_port()
    args = ("--metrics", f"127.0.0.1:{port}") if metered else ()
    async with harness(on_disk=True, agent_args=args) as h:

        async def echo_script() -> None:
            request = ScriptRequest("echo hi", isolation="none", wait=5.0)
            outcome = await execute_script(h.client, request, ignore)
            assert outcome.exit_code == 0

        await echo_script()  # warm up
        scraped: list[int] = []
        scraper = None
        if metered:
            url = f"http://127.0.0.1:{port}/metrics"
            scraper = asyncio.create_task(scrape_forever(url, scraped))
        try:
            return await p50_ms(echo_script, ROUND_TRIPS), len(scraped)
        finally:
            if scraper is not None:
                scraper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scraper


def updates_per_script_us(count: int = 20_000) -> float:
    """CPU microseconds of the metric updates one P1 script makes: started, running
    up and down, finished by class, and three timed calls (start, status, complete)."""
    with tempfile.TemporaryDirectory() as folder:
        metrics = AgentMetrics(Path(folder), Path(folder))
        calls = [metrics.call_seconds.labels("scripts", m) for m in ("start", "status", "complete")]
        started = time.process_time()
        for _ in range(count):
            metrics.scripts_started.inc()
            metrics.scripts_running.inc()
            metrics.scripts_running.dec()
            metrics.scripts_finished.labels(exit_class(0)).inc()
            for call in calls:
                begun = time.perf_counter()
                call.observe(time.perf_counter() - begun)
        return (time.process_time() - started) / count * 1e6


async def main() -> None:
    plain, metered, scrapes = [], [], 0
    for _ in range(ROUNDS):
        plain.append((await round_trips(False))[0])
        p50, count = await round_trips(True)
        metered.append(p50)
        scrapes += count
    print(
        "rounds (plain, metered):",
        [(round(a, 2), round(b, 2)) for a, b in zip(plain, metered, strict=True)],
    )
    p, m = statistics.median(plain), statistics.median(metered)
    print(f"P1 echo hi p50: plain {p:.2f} ms, with --metrics {m:.2f} ms "
          f"({ROUNDS} rounds of {ROUND_TRIPS}; {scrapes} scrapes meanwhile)")  # fmt: skip
    cost = updates_per_script_us()
    print(f"metric updates per P1 script: {cost:.1f} us of CPU, {cost / 10 / p:.3f} % of P1's "
          f"plain p50")  # fmt: skip
    print(f"RATIO P1 with --metrics/without: {m / p:.3f} (target <= 1.05; noisy when shared)")
    print(f"RATIO P1 with its metric updates/without: {1 + cost / 1000 / p:.4f} (target <= 1.05)")


if __name__ == "__main__":
    asyncio.run(main())
