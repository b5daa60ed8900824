"""The isolation mutex and the running-script cap, on a real agent."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually
from tests.integration.scripts.conftest import Scripts

HOLD = (
    'echo holding; for i in $(seq 1200); do [ -e "{release}" ] && exit 0; sleep 0.05; done; exit 9'
)


async def wait_for_note(scripts: Scripts, ticket: str, text: str) -> str:
    """Poll the script's log until an agent note containing ``text`` shows up."""

    async def note() -> str | None:
        for entry in (await scripts.status(ticket))["Logs"]:
            if entry["Source"] == "debug" and text in entry["Text"]:
                return str(entry["Text"])
        return None

    return await eventually(note, f"a note {text!r} in the log of {ticket}")


async def holding(scripts: Scripts, release: Path, **params: object) -> str:
    """Start a script that holds its mutex until ``release`` exists; returns its ticket."""
    started = await scripts.start(HOLD.format(release=release), **params)
    await scripts.wait_for_output(started["Ticket"])
    return str(started["Ticket"])


async def test_full_isolation_is_exclusive_per_mutex_name(scripts: Scripts, tmp_path: Path) -> None:
    release = tmp_path / "release"
    holder = await holding(scripts, release, IsolationMutexName="deploy", TaskId="ServerTasks-1")
    waiting = await scripts.start("echo second", IsolationMutexName="deploy")
    note = await wait_for_note(scripts, waiting["Ticket"], "Waiting for the isolation mutex")
    assert f"'deploy', held by {holder} (task ServerTasks-1, since " in note
    assert (await scripts.status(waiting["Ticket"]))["State"] == "Pending"
    # another name does not wait, and neither does no isolation on yet another name
    other = await scripts.start("echo other", IsolationMutexName="other",
                                DurationToWaitForScriptToFinish=30)  # fmt: skip
    assert other["ExitCode"] == 0
    release.touch()
    assert (await scripts.wait_complete(holder))["ExitCode"] == 0
    assert (await scripts.wait_complete(waiting["Ticket"]))["ExitCode"] == 0


async def test_no_isolation_waits_for_a_full_holder_but_not_for_another_shared_one(
    scripts: Scripts, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    shared = await holding(scripts, release, Isolation="none")
    also_shared = await scripts.start("echo ok", Isolation="none",
                                      DurationToWaitForScriptToFinish=30)  # fmt: skip
    assert also_shared["ExitCode"] == 0
    exclusive = await scripts.start("echo exclusive")
    await wait_for_note(scripts, exclusive["Ticket"], "Waiting for the isolation mutex")
    release.touch()
    assert (await scripts.wait_complete(shared))["ExitCode"] == 0
    assert (await scripts.wait_complete(exclusive["Ticket"]))["ExitCode"] == 0


async def test_mutex_timeout_is_minus_44(scripts: Scripts, tmp_path: Path) -> None:
    release = tmp_path / "release"
    holder = await holding(scripts, release)
    timed_out = await scripts.start("echo never", IsolationMutexTimeout=0.2,
                                    DurationToWaitForScriptToFinish=30)  # fmt: skip
    assert (timed_out["State"], timed_out["ExitCode"]) == ("Complete", -44)
    release.touch()
    await scripts.wait_complete(holder)


async def test_cancel_while_waiting_for_the_mutex_is_minus_43(
    scripts: Scripts, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    holder = await holding(scripts, release)
    waiting = await scripts.start("echo never")
    await wait_for_note(scripts, waiting["Ticket"], "Waiting for the isolation mutex")
    await scripts.cancel(waiting["Ticket"])
    status = await scripts.wait_complete(waiting["Ticket"])
    assert status["ExitCode"] == -43
    release.touch()
    assert (await scripts.wait_complete(holder))["ExitCode"] == 0


async def test_capabilities_never_wait_for_the_mutex(scripts: Scripts, tmp_path: Path) -> None:
    release = tmp_path / "release"
    holder = await holding(scripts, release)
    await scripts.start("echo queued")
    assert (await scripts.client.capabilities())["SupportedCapabilities"]
    release.touch()
    await scripts.wait_complete(holder)


async def test_a_cap_on_running_scripts_queues_starts_in_order(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    from agent.client import AgentClient, Endpoint

    agent = AgentProcess(tentacle, env={"TENTACLE_MAX_RUNNING_SCRIPTS": "1"}).start()
    order = tmp_path / "order"
    release = tmp_path / "release"
    try:
        async with AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings()) as client:
            scripts = Scripts(client)
            first = await holding(scripts, release, Isolation="none")
            queued = [await scripts.start(f'echo {n} >> "{order}"', Isolation="none")
                      for n in range(3)]  # fmt: skip
            for status in queued:
                assert (await scripts.status(status["Ticket"]))["State"] == "Pending"
            release.touch()
            for status in queued:
                assert (await scripts.wait_complete(status["Ticket"]))["ExitCode"] == 0
            await scripts.wait_complete(first)
    finally:
        agent.stop()
    assert order.read_text().split() == ["0", "1", "2"]
