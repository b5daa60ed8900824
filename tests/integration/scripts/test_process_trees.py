"""A cgroup per script (issue 17, "Process trees"): a cancel reaches every process the
script started, daemons included; limits hold and are named when hit; a restarted
agent finds a script by its cgroup. CI runs as root, so these use real cgroups."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.client import AgentClient, Endpoint
from agent.errors import RemoteError
from agent.scripts import cgroups, runner
from agent.scripts.procstat import read_stat
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually
from tests.integration.scripts.conftest import Scripts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root (CI runs as root)")

# Starts a daemon that leaves the script's session (setsid) and its parent (a double
# fork: the middle shell exits at once), records the daemon's pid, and waits. With a
# second argument the daemon ignores SIGTERM (only the SIGKILL after the grace ends it).
DAEMON = """
pidfile=$1
[ -n "$2" ] && trap '' TERM  # an ignored signal stays ignored across exec
( setsid sh -c 'echo $$ >"$1.tmp"; mv "$1.tmp" "$1"; exec sleep 3600' _ "$pidfile" & )
while [ ! -e "$pidfile" ]; do sleep 0.01; done
echo "daemon started"
sleep 3600
"""


@pytest.fixture
def agent(listening_agent: AgentProcess) -> AgentProcess:
    """One listening agent: these tests are about processes, not the transport."""
    return listening_agent


def client_for(agent: AgentProcess) -> AgentClient:
    return AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings())


def configured(tentacle: TentacleCli, **settings: object) -> AgentProcess:
    """An agent (not started) whose instance has ``settings``."""
    agent = AgentProcess(tentacle)
    agent.instance = agent.instance.save(agent.instance.config.with_settings(**settings))
    return agent


class Daemon:
    """The daemon a script started, known by its pid and start time (a pid may be reused)."""

    def __init__(self, pidfile: Path) -> None:
        self.pid = int(pidfile.read_text())
        stat = read_stat(self.pid)
        assert stat is not None, "the daemon ended by itself"
        self.start_time, self.session = stat.start_time, stat.session

    def alive(self) -> bool:
        stat = read_stat(self.pid)
        return stat is not None and stat.start_time == self.start_time and not stat.is_zombie

    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)


async def started_daemon(
    client: AgentClient, agent: AgentProcess, ticket: str, pidfile: Path, *, stubborn: bool = False
) -> Daemon:
    """``stubborn``: the daemon ignores SIGTERM (and the script has a grace of 0.5 s)."""
    arguments = [str(pidfile), "stubborn"] if stubborn else [str(pidfile)]
    await Scripts(client).start(DAEMON, ticket=ticket, Arguments=arguments,
                                Grace=0.5 if stubborn else 10.0)  # fmt: skip
    await eventually(pidfile.exists, "the script's daemon to record its pid")
    daemon = Daemon(pidfile)
    wrapper = runner.recorded_wrapper(agent.home / "Work" / ticket)
    assert wrapper is not None
    assert daemon.session != wrapper.pid, "the daemon left the script's session"
    return daemon


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test saw: killed at the end whatever happened."""
    seen: list[Daemon] = []
    yield seen
    for daemon in seen:
        daemon.kill()


async def test_a_setsid_double_forked_daemon_dies_on_cancel(
    agent: AgentProcess, tmp_path: Path, daemons: list[Daemon]
) -> None:
    async with client_for(agent) as client:
        assert (await client.capabilities())["ProcessTree"] == "cgroup"
        scripts = Scripts(client)
        daemon = await started_daemon(client, agent, "daemon", tmp_path / "daemon.pid")
        daemons.append(daemon)
        group = cgroups.ProcessTrees(cgroups.detect(cgroups.instance_id(agent.home / "Work")))
        found = group.find("daemon")
        assert found is not None
        assert daemon.pid in found.members()
        await scripts.cancel("daemon")
        status = await scripts.wait_complete("daemon")
        assert status["ExitCode"] == 128 + signal.SIGTERM
        await eventually(lambda: not daemon.alive(), "the daemon to die with its script")
        assert group.find("daemon") is None, "the emptied cgroup is removed"
        log = "\n".join(entry["Text"] for entry in status["Logs"])
        assert "to every process in its cgroup" in log


async def test_with_process_tree_session_the_same_daemon_survives_a_cancel(
    tentacle: TentacleCli, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """The fallback (configure --script-cgroups false, as without cgroups): today's
    session-based cancel, which a setsid daemon escapes, as documented; limits asked
    for are said not to be enforced."""
    agent = configured(tentacle, script_cgroups=False).start()
    try:
        async with client_for(agent) as client:
            assert (await client.capabilities())["ProcessTree"] == "session"
            scripts = Scripts(client)
            daemon = await started_daemon(client, agent, "daemon", tmp_path / "daemon.pid")
            daemons.append(daemon)
            await scripts.cancel("daemon")
            status = await scripts.wait_complete("daemon")
            assert status["ExitCode"] == 128 + signal.SIGTERM
            assert daemon.alive(), "a session-based cancel cannot reach a setsid daemon"
            limited = await scripts.start("true", Limits={"MemoryBytes": 1 << 30},
                                          DurationToWaitForScriptToFinish=30)  # fmt: skip
            log = "\n".join(entry["Text"] for entry in limited["Logs"])
            assert "are not enforced: this agent runs scripts without cgroups" in log
        assert "scripts run without cgroups (configure --script-cgroups false)" in agent.log()
    finally:
        agent.stop()


# Allocates up to 1 GiB, a MiB at a time, touching every page; prints how far it got.
HOG = """
import sys
chunks = []
for n in range(1024):
    chunks.append(bytearray(1 << 20))
    if n % 16 == 0:
        print(n, flush=True)
print("allocated 1 GiB", flush=True)
"""


async def test_a_memory_limit_kills_a_script_with_a_clear_message(agent: AgentProcess) -> None:
    async with client_for(agent) as client:
        status = await Scripts(client).start(
            HOG, Syntax="python", Limits={"MemoryBytes": 64 << 20},
            DurationToWaitForScriptToFinish=60,
        )  # fmt: skip
        status = await Scripts(client).wait_complete(status["Ticket"])
    log = "\n".join(entry["Text"] for entry in status["Logs"])
    assert "allocated 1 GiB" not in log
    assert status["ExitCode"] == -47, log
    assert "Limits: memory 67108864 bytes" in log
    assert "Out of memory: the kernel killed 1 process(es) of the script" in log
    assert "(its exit code was 137)" in log


# Forks up to 64 children that wait on a pipe; counts the forks refused, then ends them.
FORKS = """
import os, signal
children, refused = [], 0
r, w = os.pipe()
for _ in range(64):
    try:
        pid = os.fork()
    except BlockingIOError:
        refused += 1
        continue
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    children.append(pid)
print(f"forked {len(children)}, refused {refused}", flush=True)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""


async def test_a_configured_pids_limit_bounds_a_fork_bomb(tentacle: TentacleCli) -> None:
    agent = configured(tentacle, script_pids_max=8).start()
    try:
        async with client_for(agent) as client:
            scripts = Scripts(client)
            status = await scripts.start(FORKS, Syntax="python",
                                         DurationToWaitForScriptToFinish=60)  # fmt: skip
            status = await scripts.wait_complete(status["Ticket"])
        log = "\n".join(entry["Text"] for entry in status["Logs"])
        assert status["ExitCode"] == 0, log
        assert "Limits: 8 processes" in log
        found = re.search(r"forked (\d+), refused (\d+)", log)
        assert found is not None, log
        forked, refused = int(found[1]), int(found[2])
        assert forked < 8
        assert forked + refused == 64
        assert f"The process limit refused {refused} fork(s) (pids.max)" in log
    finally:
        agent.stop()


async def test_a_call_asks_for_less_than_configured_never_more(tentacle: TentacleCli) -> None:
    agent = configured(tentacle, script_memory_max="256M", script_pids_max=100).start()
    try:
        async with client_for(agent) as client:
            status = await Scripts(client).start(
                "true", Limits={"MemoryBytes": 1 << 40, "Pids": 50, "CpuWeight": 20},
                DurationToWaitForScriptToFinish=30,
            )  # fmt: skip
        log = "\n".join(entry["Text"] for entry in status["Logs"])
        assert "Limits: memory 268435456 bytes, 50 processes, CPU weight 20" in log
    finally:
        agent.stop()


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"MemoryBytes": 0}, "needs 'MemoryBytes' from 1 to"),
        ({"CpuWeight": 10001}, "needs 'CpuWeight' from 1 to 10000, got 10001"),
        ({"Pids": "8"}, "needs 'Pids' as int"),
        ("64M", "needs 'Limits' as ScriptLimits"),
    ],
)
async def test_bad_limits_are_refused_naming_what_was_expected(
    agent: AgentProcess, limits: object, message: str
) -> None:
    async with client_for(agent) as client:
        with pytest.raises(RemoteError) as refused:
            await Scripts(client).start("true", Limits=limits)
        assert refused.value.kind == "bad_params"
        assert message in str(refused.value)
        status = await Scripts(client).start("echo still up", DurationToWaitForScriptToFinish=30)
        assert status["ExitCode"] == 0


async def test_after_a_kill_9_the_restarted_agent_cancels_the_whole_tree(
    agent: AgentProcess, tmp_path: Path, daemons: list[Daemon]
) -> None:
    async with client_for(agent) as client:
        daemon = await started_daemon(client, agent, "daemon", tmp_path / "d.pid", stubborn=True)
        daemons.append(daemon)
    agent.signal(signal.SIGKILL)
    assert agent.process is not None
    agent.process.wait()
    agent.start()
    assert "cgroup" in agent.wait_for_log("re-attached to script daemon")
    async with client_for(agent) as client:
        scripts = Scripts(client)
        await scripts.cancel("daemon")
        status = await scripts.wait_complete("daemon")
    assert status["ExitCode"] == 128 + signal.SIGKILL  # it ignored SIGTERM too
    await eventually(lambda: not daemon.alive(), "the daemon to die with its script")


async def test_a_rewritten_wrapper_pid_outside_the_scripts_cgroup_is_not_followed(
    agent: AgentProcess, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """A script may rewrite its wrapper.pid: after a restart, the process it names is
    followed (and would be killed on a cancel) only if it is in the script's cgroup."""
    async with client_for(agent) as client:
        daemon = await started_daemon(client, agent, "forger", tmp_path / "d.pid")
        daemons.append(daemon)
    agent.signal(signal.SIGKILL)
    assert agent.process is not None
    agent.process.wait()
    bystander = subprocess.Popen(["sleep", "3600"])  # not the script's: root's, like the agent
    try:
        stat = read_stat(bystander.pid)
        assert stat is not None
        (agent.home / "Work" / "forger" / runner.PID_FILE).write_text(
            f"{bystander.pid} {stat.start_time}\n"
        )
        agent.start()
        async with client_for(agent) as client:
            status = await Scripts(client).wait_complete("forger")
        log = "\n".join(entry["Text"] for entry in status["Logs"])
        assert status["ExitCode"] == -46
        assert "not in the script's cgroup: not followed" in log
        assert bystander.poll() is None, "the bystander was left alone"
        await eventually(lambda: not daemon.alive(), "the script's own processes to be killed")
    finally:
        bystander.kill()
        bystander.wait()
