"""Registration at scale: N polling workers registered through POST /api/workers.

A hub (``tentacle hub serve``, a process of its own, SQLite in a temporary
folder on disk unless --tmpfs) and N distinct polling workers (each a
certificate of its own), registered C at a time over real TLS, as a crowd of
agents running ``register-worker`` at once would. Printed: the time for all
of them, how the hub answered (every one should be 201: a 500 is SQLite's
"database is locked"), and what a page of ``/api/workers`` then costs.

    python bench/bench_registration.py [--registrations N] [--concurrency C] [--tmpfs]
        [--profile FILE]

``--profile FILE``: the hub runs under cProfile while the registrations run
(bench/profiled.py), its statistics written to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench_hub import api_key, hub_process

from agent.certs import generate_identity
from agent.client.hub_api import HubApi, HubApiError
from agent.config.polling import new_subscription_id
from agent.hub.home import create_home

PAGES = 20  # page reads timed after the registrations


def bodies(count: int) -> list[dict[str, Any]]:
    """Distinct polling workers: a name, a certificate and a subscription each."""
    made = []
    for number in range(count):
        identity = generate_identity()
        made.append(
            {
                "Name": f"reg-{number:05d}",
                "Thumbprint": identity.thumbprint,
                "Certificate": identity.certificate_pem.decode("ascii"),
                "Endpoint": {
                    "CommunicationStyle": "TentacleActive",
                    "Uri": new_subscription_id(),
                },
                "WorkerPoolIds": ["WorkerPools-1"],
            }
        )
    return made


async def register(hub: HubApi, made: list[dict[str, Any]], concurrency: int) -> Counter[str]:
    """POST each body, ``concurrency`` at a time; how the hub answered, counted."""
    gate = asyncio.Semaphore(concurrency)
    answers: Counter[str] = Counter()

    async def one(body: dict[str, Any]) -> None:
        async with gate:
            try:
                await hub.request("POST", "/api/workers", body)
                answers["201"] += 1
            except HubApiError as error:
                answers[str(error.status or error)] += 1

    await asyncio.gather(*(one(body) for body in made))
    return answers


async def page_reads(hub: HubApi) -> tuple[float, float]:
    """Milliseconds for a page of 30 workers, and for one worker found by name."""
    started = time.monotonic()
    for _ in range(PAGES):
        await hub.get("/api/workers", skip="100", take="30")
    page = (time.monotonic() - started) / PAGES * 1000
    started = time.monotonic()
    for _ in range(PAGES):
        await hub.get("/api/workers", name="reg-00007")
    named = (time.monotonic() - started) / PAGES * 1000
    return page, named


async def drive(
    url: str, key: str, thumbprint: str, count: int, concurrency: int, hub_pid: int | None
) -> None:
    """Register, then read pages; ``hub_pid``: the hub to profile meanwhile, if any."""
    made = bodies(count)
    async with HubApi(url, key, thumbprint) as hub:
        if hub_pid is not None:
            os.kill(hub_pid, signal.SIGUSR1)  # the profiler on, for the registrations only
        started = time.monotonic()
        answers = await register(hub, made, concurrency)
        took = time.monotonic() - started
        if hub_pid is not None:
            os.kill(hub_pid, signal.SIGUSR1)
        listed = len(await hub.get("/api/workers/all"))
        page, named = await page_reads(hub)
    print(
        f"registration: {count} polling workers through POST /api/workers, {concurrency} at "
        f"a time: {took:.1f} s ({count / took:.0f}/s); answers {dict(answers)}; "
        f"{listed} listed after",
        flush=True,
    )
    print(
        f"registration: at {listed} workers, a page of 30 of /api/workers takes {page:.1f} ms, "
        f"one found by name {named:.1f} ms"
    )
    print(f"RATIO registration seconds for {count} registrations: {took:.2f}")
    if answers["201"] != count or listed != count:
        raise SystemExit(f"registration: not every registration succeeded: {dict(answers)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registrations", type=int, default=1000, metavar="N")
    parser.add_argument("--concurrency", type=int, default=50, metavar="C")
    parser.add_argument("--tmpfs", action="store_true", help="the database on /dev/shm")
    parser.add_argument("--profile", metavar="FILE", help="profile the hub to FILE")
    options = parser.parse_args()
    if options.profile:
        os.environ["P8_PROFILE"] = str(Path(options.profile).resolve())  # hub_process reads it
    where = "/dev/shm" if options.tmpfs else None
    with tempfile.TemporaryDirectory(prefix="tentacle-registration-", dir=where) as directory:
        work = Path(directory)
        home = create_home(work / "hub", None)
        key = asyncio.run(api_key(home.settings.database))
        thumbprint = home.identity().thumbprint
        with hub_process(home.path, work / "hub.log") as (process, url, _port):
            profiled = process.pid if options.profile else None
            try:
                asyncio.run(
                    drive(
                        url,
                        key,
                        thumbprint,
                        options.registrations,
                        options.concurrency,
                        profiled,
                    )
                )
            except BaseException:
                print((work / "hub.log").read_text()[-3000:])
                raise


if __name__ == "__main__":
    main()
