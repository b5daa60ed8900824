"""A script owns its workspace, so it may replace the agent's files there with a FIFO:
the agent must neither block on one (its whole event loop, every group) nor follow a link.

A real root agent running scripts as their group's uid (the fixtures of
test_script_users); the bounds below catch a frozen agent, they time nothing.
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from tests.helpers.agent import AgentProcess
from tests.helpers.eventually import eventually
from tests.integration.scripts.conftest import Scripts
from tests.integration.scripts.test_script_users import (  # noqa: F401 (fixtures)
    isolated,
    needs_root,
    reachable,
    run,
    uid_range,
)

FROZEN = 30.0  # a bound on an answer a working agent gives at once

# The agent appends to log.index when it numbers this output and to debug.raw when it
# notes the cancel: both opens of a FIFO without a reader would wait for ever
PLANT_FIFOS = """\
rm -f log.index debug.raw
mkfifo log.index debug.raw
echo "output to number"
exec sleep 600
"""


def planted(home: Path) -> bool:
    """True once some workspace of the agent holds a FIFO named log.index."""
    return any(stat.S_ISFIFO(path.lstat().st_mode) for path in home.rglob("log.index"))


@needs_root
async def test_fifos_planted_in_a_workspace_block_neither_that_script_nor_other_groups(
    isolated: AgentProcess,  # noqa: F811 (the fixture imported above)
) -> None:
    async with isolated.client() as client:
        scripts = Scripts(client)
        ticket = (await scripts.start(PLANT_FIFOS, IsolationGroup="evil"))["Ticket"]
        await eventually(lambda: planted(isolated.home), "the script to plant its FIFOs")
        async with asyncio.timeout(FROZEN):  # numbering the output appends to log.index
            status = await scripts.status(ticket)
        assert status["State"] != "Complete", status
        async with asyncio.timeout(FROZEN):  # the cancel's note goes to debug.raw
            await scripts.cancel(ticket)
            assert (await scripts.wait_complete(ticket))["ExitCode"] != 0
        async with asyncio.timeout(FROZEN):
            assert await run(scripts, "echo hi", "victim") == (0, "hi")
