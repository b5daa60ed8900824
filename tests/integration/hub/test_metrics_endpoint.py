"""`tentacle hub serve --metrics`: a real hub (real TLS, a real database) scraped over
HTTP, its text parsed with prometheus-client's parser; /livez, /readyz with the store
gone; bad --metrics values."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import pytest

from agent import __version__
from agent.hub.home import create_home
from agent.hub.server import HubServer
from agent.observability.endpoint import EndpointError
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually
from tests.helpers.hub import RunningHub, running_hub
from tests.helpers.postgres import PostgresServer, fresh_database
from tests.helpers.scrape import METRICS_LINE, get, scrape, value
from tests.integration.hub.tasks_helpers import add_worker, finished


def observed_hub(
    folder: Path, database: str | None = None
) -> AbstractAsyncContextManager[RunningHub]:
    """A hub (no built-in worker) serving its metrics on a free loopback port."""
    return running_hub(
        folder, database, builtin_worker=False, task_cap=3, metrics_at=("127.0.0.1", 0)
    )


def metrics_of(hub: RunningHub) -> str:
    assert hub.server.endpoint is not None
    return hub.server.endpoint.url


async def test_workers_by_health_and_tasks_by_state(tmp_path: Path) -> None:
    async with observed_hub(tmp_path) as hub:
        url = metrics_of(hub)
        before = await scrape(url)
        assert value(before, "tentacle_hub_task_cap") == 3
        assert value(before, "tentacle_hub_workers", status="Healthy") == 0
        agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "w1")
        try:
            status, task = await hub.api.request("POST", "/api/tasks", json={"Name": "Health"})
            assert status == 201, task
            assert (await finished(hub.api, task))["State"] == "Success"
            after = await scrape(url)
            text = (await get(url + "metrics"))[1]
        finally:
            agent.stop()
    assert value(after, "tentacle_hub_workers", status="Healthy") == 1
    assert value(after, "tentacle_hub_workers", status="Unknown") == 0
    succeeded = value(after, "tentacle_hub_tasks", state="Success")
    assert succeeded - value(before, "tentacle_hub_tasks", state="Success") >= 1
    assert value(after, "tentacle_hub_tasks", state="Queued") == 0
    assert value(after, "tentacle_hub_task_queue_length") == 0
    checks = value(after, "tentacle_hub_health_check_duration_seconds_count")
    assert checks - value(before, "tentacle_hub_health_check_duration_seconds_count") >= 1
    assert "w1" not in text  # never a worker's name as a label value


async def test_a_queued_task_is_counted_in_the_queue(tmp_path: Path) -> None:
    async with observed_hub(tmp_path) as hub:
        url = metrics_of(hub)
        assert hub.server.tasks is not None
        await hub.server.tasks.stop()  # nothing claims tasks now: what is queued stays so
        for _ in range(2):
            status, task = await hub.api.request("POST", "/api/tasks", json={"Name": "Health"})
            assert status == 201, task
        samples = await scrape(url)
        assert value(samples, "tentacle_hub_tasks", state="Queued") == 2
        assert value(samples, "tentacle_hub_task_queue_length") == 2


async def test_livez_and_readyz_of_a_hub(tmp_path: Path) -> None:
    async with observed_hub(tmp_path) as hub:
        url = metrics_of(hub)
        status, text = await get(url + "livez")
        assert status == 200, text
        assert await get(url + "readyz") == (200, "ready\n")
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(url + "livez")  # stopped with the hub


async def test_readyz_fails_while_the_store_is_gone(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    database = await fresh_database(postgres, "observed_readyz")
    async with observed_hub(tmp_path, database) as hub:
        url = metrics_of(hub)
        assert (await get(url + "readyz"))[0] == 200
        postgres.pause()
        try:
            status, text = await get(url + "readyz")
            live = await get(url + "livez")
            scraped = await get(url + "metrics")  # the rest is still served
        finally:
            postgres.resume()
        assert status == 503, text
        assert "not ready: the store is not reachable" in text
        assert live[0] == 200
        assert scraped[0] == 200
        await eventually(lambda: _ready(url), "the hub to be ready again with its store back")


async def _ready(url: str) -> bool:
    return (await get(url + "readyz"))[0] == 200


async def test_a_taken_metrics_port_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    home = create_home(tmp_path / "hub").with_settings(builtin_worker=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HubServer(home, __version__, metrics_at=("127.0.0.1", port))
        with pytest.raises(EndpointError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            await server.start("127.0.0.1:0", polling_port=0)
    assert server.store is None  # everything it had started was stopped
    again = HubServer(home, __version__)  # the home's lock was let go
    await again.start("127.0.0.1:0", polling_port=0)
    await again.stop()


@pytest.mark.parametrize("address", ["0.0.0.0", "127.0.0.1:70000", ":9100"])
def test_hub_serve_refuses_a_bad_metrics_address(
    tentacle: TentacleCli, tmp_path: Path, address: str
) -> None:
    result = tentacle.fails("hub", "serve", "--home", str(tmp_path / "none"), "--metrics",
                            address, code=2)  # fmt: skip
    assert "HOST:PORT" in result.err, result.err


async def test_hub_serve_with_metrics(tentacle: TentacleCli, tmp_path: Path) -> None:
    home = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home))
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "hub", "serve", "--home", str(home), "--listen",
         "127.0.0.1:0", "--polling-port", "0", "--no-builtin-worker",
         "--metrics", "127.0.0.1:0"],
        env=tentacle.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        match = METRICS_LINE.search(lines[-1])
        assert match, lines
        samples = await scrape(match.group(1))
        assert value(samples, "tentacle_hub_ready") == 1
        assert value(samples, "tentacle_hub_build_info", version=__version__) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
