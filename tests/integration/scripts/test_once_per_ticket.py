"""At most once per ticket: a start for a ticket that ran and was completed
answers the remembered outcome and runs nothing, also after an agent restart,
until the cleaner's retention has passed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from agent.client import AgentClient, Endpoint
from agent.scripts import tombstones
from agent.scripts.state import COMPLETE
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.integration.scripts.conftest import Scripts


def counting(counter: Path, code: int) -> str:
    return f'echo run >> "{counter}"; echo "line 1"; echo "line 2"; exit {code}'


async def test_a_completed_ticket_is_not_run_again(
    scripts: Scripts, agent: AgentProcess, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    first = await scripts.start(
        counting(counter, 3), ticket="Once", DurationToWaitForScriptToFinish=30
    )
    assert (first["State"], first["ExitCode"], first["NextLogSequence"]) == (COMPLETE, 3, 2)
    await scripts.client.call("scripts", "complete", {"ScriptTicket": "once"})
    assert not (agent.home / "Work" / "once").exists()
    for _ in range(2):  # a late start, a retried one: the same answer, nothing run
        late = await scripts.start(
            counting(counter, 0), ticket="ONCE", DurationToWaitForScriptToFinish=30
        )
        assert late == {"Ticket": "Once", "State": COMPLETE, "ExitCode": 3, "Logs": [],
                        "NextLogSequence": 2, "MoreLogs": False}  # fmt: skip
    assert counter.read_text() == "run\n"
    assert not (agent.home / "Work" / "once").exists()


async def test_a_completed_ticket_is_remembered_across_a_restart(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    agent = AgentProcess(tentacle).start()
    try:
        async with agent.client() as client:
            scripts = Scripts(client)
            await scripts.start(
                counting(counter, 5), ticket="t-1", DurationToWaitForScriptToFinish=30
            )
            await client.call("scripts", "complete", {"ScriptTicket": "t-1"})
        agent.stop()
        agent.start()
        async with agent.client() as client:
            late = await Scripts(client).start(counting(counter, 0), ticket="t-1")
        assert (late["State"], late["ExitCode"], late["Logs"]) == (COMPLETE, 5, [])
        assert counter.read_text() == "run\n"
    finally:
        agent.stop()


async def test_the_cleaner_forgets_completed_tickets_after_the_retention(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    agent = AgentProcess(tentacle, env={"TENTACLE_WORKSPACE_CLEANER_DELETE_OLDER_THAN": "0"})
    agent.start()
    try:
        async with agent.client() as client:
            await Scripts(client).start(
                counting(counter, 0), ticket="old", DurationToWaitForScriptToFinish=30
            )
            await client.call("scripts", "complete", {"ScriptTicket": "old"})
        assert "old" in tombstones.load_all(agent.home / "Work")
        agent.stop()
        agent.start()  # the sweep at start-up applies the retention (0 s here)
        assert "old" not in tombstones.load_all(agent.home / "Work")
        async with agent.client() as client:
            again = await Scripts(client).start(counting(counter, 0), ticket="old",
                                                DurationToWaitForScriptToFinish=30)  # fmt: skip
        assert (again["State"], again["ExitCode"]) == (COMPLETE, 0)
        assert counter.read_text() == "run\nrun\n"  # the retention is the promise's span
    finally:
        agent.stop()


async def test_tombstones_of_an_earlier_version_are_honoured_and_pruned(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    """Before one journal, each tombstone was a file of its own: an upgraded agent reads them."""
    counter = tmp_path / "runs"
    agent = AgentProcess(tentacle)
    (agent.home / "Work" / ".completed").mkdir(parents=True)
    stones = {"recent": "2999-01-01T00:00:00.000+00:00", "ancient": "2000-01-01T00:00:00.000+00:00"}
    for ticket, completed in stones.items():
        record = {"ticket": ticket, "exit_code": 6, "completed": completed, "next_sequence": 1}
        (agent.home / "Work" / ".completed" / ticket).write_text(json.dumps(record))
    agent.start()  # the start-up sweep prunes what is older than the retention (24 h)
    try:
        async with agent.client() as client:
            recent = await Scripts(client).start(counting(counter, 0), ticket="recent")
            ancient = await Scripts(client).start(counting(counter, 0), ticket="ancient",
                                                  DurationToWaitForScriptToFinish=30)  # fmt: skip
        assert (recent["State"], recent["ExitCode"], recent["NextLogSequence"]) == (COMPLETE, 6, 1)
        assert (ancient["State"], ancient["ExitCode"]) == (COMPLETE, 0)  # forgotten: it ran
        assert counter.read_text() == "run\n"
        assert not (agent.home / "Work" / ".completed" / "ancient").exists()
    finally:
        agent.stop()


def test_run_script_with_a_finished_ticket_does_not_run_it_again(
    listening_agent: AgentProcess, tmp_path: Path
) -> None:
    agent, counter = listening_agent, tmp_path / "runs"
    script = tmp_path / "count.sh"
    script.write_text(counting(counter, 4) + "\n")
    command = ["client", "--instance", "hub", "run-script", "--endpoint", agent.url,
               "--thumbprint", agent.thumbprint, "--ticket", "cli-once", str(script)]  # fmt: skip
    first = agent.cli.run(*command)
    assert (first.code, first.out) == (4, "line 1\nline 2\n"), first.err
    again = agent.cli.run(*command)  # the same outcome, without its output: nothing ran
    assert (again.code, again.out) == (4, ""), again.err
    assert counter.read_text() == "run\n"

    async def status() -> object:
        async with AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings()) as c:
            return (await Scripts(c).status("cli-once"))["ExitCode"]

    assert asyncio.run(status()) == -45  # its workspace was released by run-script's complete
