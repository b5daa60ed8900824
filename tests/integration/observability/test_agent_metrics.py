"""`tentacle agent --metrics`: a real agent scraped over HTTP, its text parsed with
prometheus-client's parser; /livez, /readyz; `tentacle livez`."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.client import PollingListener
from agent.client.scripts import ScriptRequest, execute_script
from agent.errors import RemoteError
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually
from tests.helpers.forwarder import Forwarder
from tests.helpers.scrape import METRICS_LINE, get, moved, scrape, value

HEARTBEAT = 0.5  # the agent's channel heartbeat where a test freezes a connection


def metrics_url(agent: AgentProcess) -> str:
    match = METRICS_LINE.search(agent.wait_for_output("Metrics on:"))
    assert match, agent.stdout()
    return match.group(1)


@pytest.fixture
def observed(tentacle: TentacleCli) -> Iterator[tuple[AgentProcess, str]]:
    """A listening agent serving its metrics on a free loopback port, and their URL."""
    agent = AgentProcess(tentacle, args=("--metrics", "127.0.0.1:0")).start()
    try:
        yield agent, metrics_url(agent)
    finally:
        agent.stop()


async def test_a_script_and_a_failing_one_move_the_counters_by_exactly_that(
    observed: tuple[AgentProcess, str],
) -> None:
    agent, url = observed
    before = await scrape(url)
    tickets = [secrets.token_hex(8), secrets.token_hex(8)]
    async with agent.client() as client:
        ok = await execute_script(client, ScriptRequest("echo fine", ticket=tickets[0]), print)
        failed = await execute_script(client, ScriptRequest("exit 3", ticket=tickets[1]), print)
    assert (ok.exit_code, failed.exit_code) == (0, 3)
    after = await scrape(url)
    scripts = {k: v for k, v in moved(before, after).items() if "_scripts_" in k[0]}
    assert scripts == {
        ("tentacle_agent_scripts_started_total", ()): 2.0,
        ("tentacle_agent_scripts_finished_total", (("exit_class", "success"),)): 1.0,
        ("tentacle_agent_scripts_finished_total", (("exit_class", "failure"),)): 1.0,
    }
    assert value(after, "tentacle_agent_scripts_running") == 0
    starts = value(after, "tentacle_agent_call_duration_seconds_count",
                   service="scripts", method="start")  # fmt: skip
    assert starts >= 2  # a start may be repeated by the client; each is timed
    opened = value(after, "tentacle_agent_connections_opened_total", kind="listening")
    assert opened - value(before, "tentacle_agent_connections_opened_total", kind="listening") >= 1
    text = (await get(url + "metrics"))[1]
    assert not any(ticket in text for ticket in tickets)  # never a ticket as a label value


async def test_a_running_script_is_counted_while_it_runs(
    observed: tuple[AgentProcess, str], tmp_path: Path
) -> None:
    agent, url = observed
    release = tmp_path / "release"
    body = f"echo started; while [ ! -e {release} ]; do sleep 0.05; done"
    async with agent.client() as client:
        ticket = secrets.token_hex(8)
        params = {"ScriptTicket": ticket, "ScriptBody": body}
        await client.call("scripts", "start", params)
        # its workspace is on disk from the start's answer on: the first scrape sees it
        assert value(await scrape(url), "tentacle_agent_workspace_bytes") > len(body)

        async def running() -> bool:
            return value(await scrape(url), "tentacle_agent_scripts_running") == 1

        await eventually(running, "the running script to be counted")
        release.touch()

        async def finished() -> bool:
            samples = await scrape(url)
            running = value(samples, "tentacle_agent_scripts_running")
            done = value(samples, "tentacle_agent_scripts_finished_total", exit_class="success")
            return (running, done) == (0, 1)

        await eventually(finished, "the script to be counted as finished")


async def test_a_wait_for_the_isolation_mutex_is_counted(
    observed: tuple[AgentProcess, str], tmp_path: Path
) -> None:
    agent, url = observed
    release = tmp_path / "release"
    hold = f"while [ ! -e {release} ]; do sleep 0.05; done"
    async with agent.client() as client:
        first, second = secrets.token_hex(8), secrets.token_hex(8)
        # full isolation (the default) on the default mutex: the second waits for the first
        await client.call("scripts", "start", {"ScriptTicket": first, "ScriptBody": hold})
        await client.call("scripts", "start", {"ScriptTicket": second, "ScriptBody": "true"})

        async def waiting() -> bool:
            return value(await scrape(url), "tentacle_agent_mutex_waiting_scripts") == 1

        await eventually(waiting, "the second script to wait for the mutex")
        release.touch()

        async def waited() -> dict | None:  # type: ignore[type-arg]
            samples = await scrape(url)
            done = value(samples, "tentacle_agent_mutex_waiting_scripts") == 0 and value(
                samples, "tentacle_agent_mutex_wait_seconds_count") == 1  # fmt: skip
            return samples if done else None

        samples = await eventually(waited, "the wait to end and be observed")
    assert value(samples, "tentacle_agent_mutex_waits_total") == 1
    assert value(samples, "tentacle_agent_mutex_wait_seconds_sum") > 0


async def test_bytes_uploaded_and_downloaded_are_counted(
    observed: tuple[AgentProcess, str], tmp_path: Path
) -> None:
    agent, url = observed
    local = tmp_path / "payload"
    local.write_bytes(os.urandom(300_000))
    async with agent.client() as client:
        await client.upload(local, str(agent.home / "payload"))
        await client.download(str(agent.home / "payload"), tmp_path / "back")
    samples = await scrape(url)
    assert value(samples, "tentacle_agent_file_transfer_bytes_total", direction="upload") == 300_000
    assert value(samples, "tentacle_agent_file_transfer_bytes_total",
                 direction="download") == 300_000  # fmt: skip
    upload = value(samples, "tentacle_agent_call_duration_seconds_count",
                   service="files", method="upload")  # fmt: skip
    assert upload == 1
    assert value(samples, "tentacle_agent_disk_free_bytes") > 0
    assert value(samples, "tentacle_agent_workspace_scan_truncated") == 0


async def test_the_heartbeat_file_is_one_of_the_instances_own(
    observed: tuple[AgentProcess, str], tmp_path: Path
) -> None:
    agent, _ = observed
    async with agent.client() as client:
        with pytest.raises(RemoteError, match="heartbeat"):
            await client.download(str(agent.home / "tentacle.heartbeat"), tmp_path / "x")


async def test_livez_and_readyz_of_a_listening_agent(observed: tuple[AgentProcess, str]) -> None:
    _, url = observed
    status, text = await get(url + "livez")
    assert (status, text.split(":")[0]) == (200, "live"), text
    assert await get(url + "readyz") == (200, "ready\n")
    assert value(await scrape(url), "tentacle_agent_ready") == 1
    assert (await get(url + "other"))[0] == 404  # nothing else is served


def polling_agent(tentacle: TentacleCli) -> tuple[AgentProcess, PollingListener]:
    """An agent (with --metrics and a short heartbeat) and a polling listener trusting it."""
    agent = AgentProcess(tentacle, args=("--metrics", "127.0.0.1:0"))
    agent.instance = agent.instance.save(
        agent.instance.config.with_settings(
            heartbeat_interval=HEARTBEAT, polling_connection_count=1
        )
    )
    # the test's side beats slowly: a frozen connection is the agent's to notice first
    listener = PollingListener(agent.settings(heartbeat=60.0),
                               [agent.identity.certificate_pem.decode()])  # fmt: skip
    agent.listener = listener  # agent.client() calls through it
    return agent, listener


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_polling_agent_is_ready_only_once_it_holds_a_connection(
    tentacle: TentacleCli,
) -> None:
    agent, listener = polling_agent(tentacle)
    port = free_port()  # nothing listens there yet: the agent cannot poll
    agent.poll("127.0.0.1", port, agent.caller.thumbprint).start()
    try:
        url = metrics_url(agent)
        status, text = await get(url + "readyz")
        assert status == 503, text
        assert "no polling connection" in text
        assert value(await scrape(url), "tentacle_agent_ready") == 0
        await listener.start("127.0.0.1", port)
        await eventually(lambda: _ready(url), "the polling agent to turn ready")
        samples = await scrape(url)
        assert value(samples, "tentacle_agent_connections", kind="polling") == 1
        assert value(samples, "tentacle_agent_polling_reconnects_total") >= 1  # the failed dials
    finally:
        agent.stop()
        await listener.stop()


async def test_a_silent_polling_connection_is_a_heartbeat_miss_then_a_reconnect(
    tentacle: TentacleCli,
) -> None:
    agent, listener = polling_agent(tentacle)
    [(_, port), *_] = await listener.start("127.0.0.1", 0)
    forwarder = Forwarder(port, agent_dials=True)
    agent.poll("127.0.0.1", await forwarder.start(), agent.caller.thumbprint).start()
    try:
        url = metrics_url(agent)
        async with agent.client() as client:
            await client.call("capabilities", "get", {})
            before = await scrape(url)
            forwarder.arm("freeze")  # the agent's answer to the next call is held forever
            call = asyncio.ensure_future(client.call("capabilities", "get", {}))

            async def reconnected() -> bool:
                samples = await scrape(url)
                missed = value(samples, "tentacle_agent_heartbeat_misses_total", kind="polling")
                opened = value(samples, "tentacle_agent_connections_opened_total", kind="polling")
                return (missed, opened) == (1, 2)

            await eventually(reconnected, "the agent to drop the silent connection and redial")
            call.cancel()
        after = await scrape(url)
        assert value(before, "tentacle_agent_heartbeat_misses_total", kind="polling") == 0
        assert value(before, "tentacle_agent_connections_opened_total", kind="polling") == 1
        assert value(after, "tentacle_agent_connections", kind="polling") == 1
        reconnects = value(after, "tentacle_agent_polling_reconnects_total")
        assert reconnects - value(before, "tentacle_agent_polling_reconnects_total") == 1
    finally:
        agent.stop()
        await forwarder.stop()
        await listener.stop()


async def _ready(url: str) -> bool:
    return (await get(url + "readyz"))[0] == 200


def test_tentacle_livez_says_live_hung_or_stopped(tentacle: TentacleCli) -> None:
    agent = AgentProcess(tentacle).start()  # no --metrics: livez needs no port
    try:
        live = tentacle.ok("livez", "--instance", "agent")
        assert live.out.startswith("live: the agent (pid "), live.out
        assert agent.process is not None
        agent.signal(signal.SIGSTOP)  # hung: its loop no longer turns
        try:
            past = time.time() - 3600
            os.utime(agent.home / "tentacle.heartbeat", (past, past))
            hung = tentacle.run("livez", "--instance", "agent", "--max-age", "60")
        finally:
            agent.signal(signal.SIGCONT)
        assert hung.code == 1, hung
        assert "hung: its last heartbeat was 36" in hung.out, hung.out
        assert "--max-age 60 s" in hung.out
    finally:
        agent.stop()
    stopped = tentacle.run("livez", "--instance", "agent")
    assert stopped.code == 1, stopped
    assert "no agent is running for this instance" in stopped.out


def test_livez_of_an_agent_that_never_ran_and_bad_max_age(tentacle: TentacleCli) -> None:
    AgentProcess(tentacle)  # the instance exists; no agent ever ran
    never = tentacle.run("livez", "--instance", "agent")
    assert (never.code, never.out.split(":")[0]) == (1, "not live"), never
    bad = tentacle.fails("livez", "--instance", "agent", "--max-age", "0", code=2)
    assert "--max-age" in bad.err


@pytest.mark.parametrize(
    "address", ["nonsense", "127.0.0.1", "127.0.0.1:99999", ":9100", "127.0.0.1:port"]
)
def test_a_bad_metrics_address_is_a_usage_error_naming_host_port(
    tentacle: TentacleCli, address: str
) -> None:
    agent = AgentProcess(tentacle)
    result = tentacle.fails("agent", "--instance", "agent", "--metrics", address, code=2)
    assert "HOST:PORT" in result.err, result.err
    assert repr(address) in result.err
    assert not (agent.home / "tentacle.heartbeat").exists()  # it did not start


def test_a_taken_metrics_port_is_a_clear_error(tentacle: TentacleCli) -> None:
    AgentProcess(tentacle)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = tentacle.fails("agent", "--instance", "agent", "--metrics", f"127.0.0.1:{port}")
    assert f"cannot serve metrics on 127.0.0.1:{port} (--metrics)" in result.err, result.err
    assert "in use" in result.err
