"""A start and a complete for a new ticket sent together on one connection.

The complete arrives while the start has just registered the ticket: it must
answer, and it must release the ticket for good (never run it, not even after
a restart), as the client asked. A script that was launched before the
complete arrived is stopped by it; one that was not yet launched never is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from agent.errors import ConnectionLost
from tests.helpers.agent import AgentProcess
from tests.helpers.eventually import eventually
from tests.integration.scripts.conftest import Scripts

TICKETS = 20
HANG = 30.0  # a bound for a hang: a passing test answers at once


async def start_and_complete(scripts: Scripts, ticket: str, marker: Path) -> None:
    """Both calls in flight together on the same connection, the complete right after the start."""
    start = scripts.start(f"echo ran > '{marker}'", ticket=ticket, Isolation="none")
    complete = scripts.client.call("scripts", "complete", {"ScriptTicket": ticket})
    try:
        await asyncio.wait_for(asyncio.gather(start, complete), HANG)
    except TimeoutError:
        failure = f"{ticket}: start and complete sent together did not both answer"
        raise AssertionError(failure) from None


async def assert_released(scripts: Scripts, tickets: list[str], when: str) -> None:
    for ticket in tickets:
        status = await scripts.status(ticket)
        assert (status["State"], status["ExitCode"]) == ("Complete", -45), f"{when}: {status}"


async def answers(scripts: Scripts) -> bool:
    """A round trip; False on a connection of the agent's previous run (polling) closing."""
    try:
        await scripts.status("probe")
    except ConnectionLost:
        return False
    return True


async def test_complete_sent_with_start_releases_the_ticket_for_good(
    agent: AgentProcess, tmp_path: Path
) -> None:
    tickets = [f"race-{n}" for n in range(TICKETS)]
    markers = [tmp_path / f"ran-{n}" for n in range(TICKETS)]
    async with agent.client() as client:
        scripts = Scripts(client)
        for ticket, marker in zip(tickets, markers, strict=True):
            await start_and_complete(scripts, ticket, marker)
        await assert_released(scripts, tickets, "after complete")
        for marker in markers:  # left by scripts launched before their complete stopped them
            marker.unlink(missing_ok=True)
        again = scripts.client.call("scripts", "complete", {"ScriptTicket": tickets[0]})
        assert await asyncio.wait_for(again, HANG) is None

    agent.stop()
    agent.start()  # recovery happens before the agent listens or polls
    async with agent.client() as client:
        await eventually(lambda: answers(Scripts(client)), "the restarted agent answers")
        await assert_released(Scripts(client), tickets, "after a restart")
    assert not [m.name for m in markers if m.exists()], "released scripts ran after their complete"


async def test_complete_during_the_start_s_upload_releases_the_ticket(
    agent: AgentProcess, tmp_path: Path
) -> None:
    marker, ticket, rest = tmp_path / "ran", "uploading", asyncio.Event()

    async def upload() -> AsyncIterator[bytes]:
        yield b"a"
        await rest.wait()  # the start stays inside the workspace's creation until then
        yield b"b"

    params = {"ScriptTicket": ticket, "ScriptBody": f"echo ran > '{marker}'",
              "Isolation": "none", "Files": [{"Name": "data", "Length": 2}]}  # fmt: skip
    async with agent.client() as client:
        channel = await client.connect()
        start = asyncio.ensure_future(channel.call("scripts", "start", params, upload=upload()))
        data = agent.home / "Work" / ticket / "data"
        await eventually(data.exists, "the start writes its file")
        complete = asyncio.ensure_future(
            channel.call("scripts", "complete", {"ScriptTicket": ticket})
        )
        # The calls of one connection are read in order: once this status has
        # answered, the agent has the complete, which arrived during the upload.
        await Scripts(client).status("probe")
        rest.set()
        try:
            await asyncio.wait_for(asyncio.gather(start, complete), HANG)
        except TimeoutError:
            raise AssertionError("start and complete during its upload did not answer") from None
        await assert_released(Scripts(client), [ticket], "after complete")
    assert not marker.exists(), "the released script ran"
