"""The agent and the hub under a Type=notify unit, seen from the manager's side: a real
datagram socket the test binds and passes as NOTIFY_SOCKET, and the journal stream."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.client import AgentClient, Endpoint
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.notify import NotifySocket
from tests.integration.scripts.conftest import Scripts

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> NotifySocket:
    socket = NotifySocket(tmp_path / "notify" if request.param == "path" else None)
    yield socket  # type: ignore[misc]
    socket.close()


def test_the_agent_says_ready_feeds_the_watchdog_and_says_stopping(
    tentacle: TentacleCli, manager: NotifySocket
) -> None:
    env = {"NOTIFY_SOCKET": manager.variable, "WATCHDOG_USEC": "100000"}  # fed every 50 ms
    agent = AgentProcess(tentacle, env=env).start()
    try:
        ready = manager.wait_for("READY")
        assert ready["STATUS"] == f"listening on wss://127.0.0.1:{agent.port}/"
        manager.wait_for_count("WATCHDOG", "1", 3)
        assert manager.count("STOPPING") == 0
        agent.signal(signal.SIGTERM)
        stopping = manager.wait_for("STOPPING")
        assert stopping["STATUS"].startswith("stopping: up to 30 s for calls in flight")
        assert agent.wait_exit() == 0, agent.log()
    finally:
        agent.stop()
    order = [next(iter(m)) for m in manager.messages if "WATCHDOG" not in m]
    assert order == ["READY", "STOPPING"], manager.messages


async def test_a_polling_agent_is_ready_once_it_polls(
    tentacle: TentacleCli, manager: NotifySocket
) -> None:
    agent = AgentProcess(tentacle, env={"NOTIFY_SOCKET": manager.variable})
    await agent.poll_a_listener()
    agent.start()
    try:
        ready = await asyncio.to_thread(manager.wait_for, "READY")
        assert ready["STATUS"] == "polling 1 server"
    finally:
        await agent.stopped()
        assert agent.listener is not None
        await agent.listener.stop()


def test_a_watchdog_meant_for_another_process_is_left_alone(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    manager = NotifySocket(tmp_path / "notify")
    env = {"NOTIFY_SOCKET": manager.variable, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}
    agent = AgentProcess(tentacle, env=env).start()
    try:
        manager.wait_for("READY")
        agent.signal(signal.SIGTERM)
        manager.wait_for("STOPPING")
        assert agent.wait_exit() == 0
    finally:
        agent.stop()
        manager.close()
    assert manager.count("WATCHDOG") == 0, manager.messages


@pytest.mark.parametrize(
    ("variable", "value"), [("NOTIFY_SOCKET", "relative/sock"), ("WATCHDOG_USEC", "soon")]
)
def test_values_systemd_would_never_set_are_a_configuration_error(
    tentacle: TentacleCli, tmp_path: Path, variable: str, value: str
) -> None:
    AgentProcess(tentacle)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), variable: value}
    result = tentacle.fails("agent", "--instance", "agent", code=3, env=env)
    assert f"{variable}={value!r}" in result.err


def test_a_manager_that_went_away_is_one_warning_and_the_agent_serves_on(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}
    agent = AgentProcess(tentacle, env=env).start()  # started: the readiness line came
    try:
        agent.wait_for_log("cannot notify systemd")
        agent.signal(signal.SIGTERM)
        assert agent.wait_exit() == 0, agent.log()
    finally:
        agent.stop()
    assert agent.log().count("cannot notify systemd") == 1, agent.log()


async def test_scripts_do_not_inherit_the_services_variables(
    tentacle: TentacleCli, manager: NotifySocket
) -> None:
    env = {"NOTIFY_SOCKET": manager.variable, "WATCHDOG_USEC": "60000000",
           "JOURNAL_STREAM": "1:2"}  # fmt: skip
    agent = AgentProcess(tentacle, env=env).start()
    try:
        async with AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings()) as c:
            scripts = Scripts(c)
            body = 'echo "[${NOTIFY_SOCKET-}][${WATCHDOG_USEC-}][${JOURNAL_STREAM-}]"'
            await scripts.start(body, ticket="env-check", Isolation="none")
            status = await scripts.wait_complete("env-check")
    finally:
        agent.stop()
    assert status["ExitCode"] == 0, status
    assert [entry["Text"] for entry in status["Logs"]] == ["[][][]"], status


def _journal_run(tentacle: TentacleCli, tmp_path: Path, on_journal: bool) -> list[str]:
    """The agent's log lines with stderr a file, JOURNAL_STREAM naming that file or not."""
    AgentProcess(tentacle)
    log_path = tmp_path / "stderr"
    with open(log_path, "w") as stderr:
        info = os.fstat(stderr.fileno())
        stream = f"{info.st_dev}:{info.st_ino}" if on_journal else f"{info.st_dev}:1"
        process = subprocess.Popen(
            [sys.executable, "-m", "agent", "agent", "--instance", "agent"],
            env={**tentacle.env, "JOURNAL_STREAM": stream}, stdout=subprocess.PIPE,
            stderr=stderr, text=True,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        assert "Agent listening on" in process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return log_path.read_text().splitlines()


def test_under_journald_lines_have_a_priority_and_no_time(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    lines = _journal_run(tentacle, tmp_path, on_journal=True)
    assert any(line.startswith("<6>INFO    instance agent, thumbprint") for line in lines), lines
    assert all(re.match(r"<[2-7]>[A-Z]+ ", line) for line in lines), lines
    assert not any(TIMESTAMP.search(line) for line in lines), lines


def test_a_journal_stream_that_is_not_stderr_keeps_the_time(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    lines = _journal_run(tentacle, tmp_path, on_journal=False)
    assert lines, "the agent logged nothing"
    assert all(TIMESTAMP.match(line) for line in lines), lines


def test_hub_serve_says_ready_and_stopping(
    tentacle: TentacleCli, tmp_path: Path, manager: NotifySocket
) -> None:
    home = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home))
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "hub", "serve", "--home", str(home), "--listen",
         "127.0.0.1:0", "--polling-port", "0", "--log-format", "json"],
        env={**tentacle.env, "NOTIFY_SOCKET": manager.variable, "WATCHDOG_USEC": "100000"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = manager.wait_for("READY")
        assert process.stdout is not None
        listening = process.stdout.readline().split("Hub listening on: ", 1)[1].strip()
        assert ready["STATUS"].startswith(f"listening on {listening}; polling port ")
        manager.wait_for_count("WATCHDOG", "1", 3)
        process.send_signal(signal.SIGTERM)
        assert manager.wait_for("STOPPING")["STATUS"] == "stopping"
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    assert "Traceback" not in process.stderr.read()
