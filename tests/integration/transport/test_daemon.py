"""The agent as a process: signals, the instance lock, ports, configurations that cannot run."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator

import pytest

from agent.client import AgentClient, Endpoint
from agent.errors import ConnectionLost
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli

# agent/cli/agent_cmd.py, README "Exit codes", docs/architecture.md "Stopping"
EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIGURATION = 1, 2, 3


async def _a_call_in_flight(agent: AgentProcess, hub: AgentClient) -> asyncio.Task[object]:
    """An upload that stays in flight until its task is cancelled."""

    async def never_ends() -> AsyncIterator[bytes]:
        yield b"first half "
        await asyncio.Event().wait()

    channel = await hub.connect()
    upload = asyncio.create_task(
        channel.call("files", "upload", {"Path": "slow.txt", "Length": 22},
                     upload=never_ends())  # type: ignore[arg-type]
    )  # fmt: skip
    await hub.capabilities()  # the upload's call has reached the agent before this answer
    return upload


@pytest.mark.parametrize(
    ("second", "code"), [(signal.SIGTERM, 128 + 15), (signal.SIGINT, 128 + 2)], ids=str
)
async def test_a_second_signal_cuts_calls_in_flight_off_with_128_plus_its_number(
    tentacle: TentacleCli, second: signal.Signals, code: int
) -> None:
    agent = AgentProcess(tentacle, args=("--grace", "600")).start()
    try:
        async with AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings()) as hub:
            upload = await _a_call_in_flight(agent, hub)
            agent.signal(signal.SIGTERM)
            agent.wait_for_log("stopping: no new connections")  # draining, for 600 s
            agent.signal(second)
            exited = await asyncio.to_thread(agent.wait_exit)
            with pytest.raises(ConnectionLost):
                await upload  # cut off, not finished: that is what a second signal asks for
    finally:
        agent.stop()
    assert exited == code, agent.log()
    assert "stopping at once" in agent.log()
    assert "agent stopped at once" in agent.log()


def test_two_sigterms_at_once_stop_an_idle_agent_gracefully(tentacle: TentacleCli) -> None:
    agent = AgentProcess(tentacle).start()
    assert agent.process is not None
    os.kill(agent.process.pid, signal.SIGTERM)
    os.kill(agent.process.pid, signal.SIGTERM)  # the kernel may merge the two: either way
    assert agent.wait_exit() == 0, agent.log()  # nothing was in flight, so nothing was cut


@pytest.mark.parametrize("gap", [0.005, 0.01, 0.02, 0.03])
def test_a_second_sigterm_while_an_idle_agent_stops_does_not_kill_it(
    tentacle: TentacleCli, gap: float
) -> None:
    """The issue's reproduction: the gap is the scenario, not a synchronisation; any
    gap must give exit 0 (an idle agent has nothing in flight to cut off)."""
    agent = AgentProcess(tentacle).start()
    agent.signal(signal.SIGTERM)
    time.sleep(gap)
    agent.signal(signal.SIGTERM)  # a no-op if it has gone already
    assert agent.wait_exit() == 0, agent.log()  # not -15: killed by the signal


def test_a_second_sigterm_after_the_stop_finished_does_not_kill_the_agent(
    tentacle: TentacleCli,
) -> None:
    agent = AgentProcess(tentacle).start()
    agent.signal(signal.SIGTERM)
    agent.wait_for_log("agent stopped")  # run_agent is over; the process is on its way out
    agent.signal(signal.SIGTERM)  # a no-op if it has gone already
    assert agent.wait_exit() == 0, agent.log()  # not -15: killed by the signal


@pytest.mark.parametrize("mode", ["listening", "polling"])
async def test_a_second_agent_for_one_instance_refuses_to_start_and_names_the_first(
    tentacle: TentacleCli, mode: str
) -> None:
    first = AgentProcess(tentacle)
    if mode == "polling":
        await first.poll_a_listener()
    first.start()
    try:
        second = tentacle.fails("agent", "--instance", "agent", code=EXIT_FAILURE)
        assert first.process is not None
        assert f"another agent (pid {first.process.pid}) is already running" in second.err
        async with first.client() as hub:  # the first is undisturbed
            assert (await hub.capabilities())["SupportedCapabilities"]
        first.signal(signal.SIGKILL)  # the kernel releases the lock of a dead agent
        first.wait_exit()
        first.start()
        async with first.client() as hub:
            assert (await hub.capabilities())["SupportedCapabilities"]
    finally:
        first.stop()
        if first.listener is not None:
            await first.listener.stop()


async def test_port_0_on_every_address_is_one_port_for_both_families(
    tentacle: TentacleCli,
) -> None:
    agent = AgentProcess(tentacle)
    agent.instance = agent.instance.save(agent.instance.config.with_settings(listen_ip=None))
    agent.start()
    try:
        agent.wait_for_output("Agent listening on: wss://[::]:")
        ready = [line for line in agent.stdout().splitlines() if "Agent listening on" in line]
        ports = {line.rsplit(":", 1)[1].strip("/") for line in ready}
        assert ready[0].startswith("Agent listening on: wss://0.0.0.0:"), ready
        assert len(ready) == 2, ready
        assert len(ports) == 1, ready
        [port] = ports
        for host in ("127.0.0.1", "[::1]"):
            endpoint = Endpoint(f"https://{host}:{port}/", agent.thumbprint)
            async with AgentClient(endpoint, agent.settings()) as hub:
                assert (await hub.capabilities())["SupportedCapabilities"]
    finally:
        agent.stop()


def test_an_agent_that_would_neither_listen_nor_poll_is_warned_of_and_refuses_to_start(
    tentacle: TentacleCli,
) -> None:
    AgentProcess(tentacle)
    configured = tentacle.ok("configure", "--instance", "agent", "--noListen", "true")
    assert "warning: with NoListen true and no polling servers" in configured.err
    assert "tentacle server-comms" in configured.err
    result = tentacle.fails("agent", "--instance", "agent", code=EXIT_CONFIGURATION)
    assert "neither listens" in result.err
    assert "server-comms" in result.err


def test_a_graceful_stop_exits_0(tentacle: TentacleCli) -> None:
    agent = AgentProcess(tentacle).start()
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit() == 0, agent.log()
    assert "agent stopped" in agent.log()


def test_a_port_another_process_holds_is_an_unexpected_failure(tentacle: TentacleCli) -> None:
    agent = AgentProcess(tentacle)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        agent.instance.save(agent.instance.config.with_settings(port=port))
        result = tentacle.fails("agent", "--instance", "agent", code=EXIT_FAILURE)
    assert "address already in use" in result.err.lower(), result.err


@pytest.mark.parametrize("args", [["--bogus"], ["--grace", "-1"], ["--instance"]], ids=" ".join)
def test_a_usage_error_exits_2(tentacle: TentacleCli, args: list[str]) -> None:
    AgentProcess(tentacle)
    tentacle.fails("agent", *args, code=EXIT_USAGE)


@pytest.mark.parametrize("problem", ["file", "environment", "instance", "identity"])
def test_a_configuration_error_exits_3_so_a_supervisor_stops_restarting(
    tentacle: TentacleCli, problem: str
) -> None:
    agent = AgentProcess(tentacle)
    config_file = agent.instance.config_path
    env, name = {}, "agent"
    if problem == "file":
        config_file.write_text(config_file.read_text().replace("port: 0", "port: ten"))
        expected = "port: expected a port number"
    elif problem == "environment":
        env, expected = {"TENTACLE_SERVICE_PORT": "99999"}, "TENTACLE_SERVICE_PORT"
    elif problem == "instance":
        name, expected = "nobody", "nobody"
    else:
        agent.instance.config.identity_path.write_text("not a certificate\n")
        expected = "identity.pem"
    result = tentacle.fails("agent", "--instance", name, code=EXIT_CONFIGURATION, env=env)
    assert expected in result.err, result.err
