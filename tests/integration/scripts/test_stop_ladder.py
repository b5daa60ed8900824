"""The stop ladder's first rung with a script running: a graceful stop (systemd's
SIGTERM) leaves the script running, and the next start re-attaches to it and reports
its outcome. (A second signal cutting calls in flight off is
tests/integration/transport/test_daemon.py; a kill -9 is test_restart.py.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from agent.client import AgentClient, Endpoint
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.integration.scripts.conftest import Scripts

BODY = """
echo $$ > "$1.pid"
echo "before"
while [ ! -e "$1.release" ]; do sleep 0.05; done
echo "after"
exit 7
"""


def client_for(agent: AgentProcess) -> AgentClient:
    return AgentClient(Endpoint(agent.url, agent.thumbprint), agent.settings())


async def test_a_graceful_stop_leaves_a_script_running_for_the_next_start(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    marker = tmp_path / "script"
    agent = AgentProcess(tentacle).start()
    try:
        async with client_for(agent) as client:
            scripts = Scripts(client)
            await scripts.start(BODY, ticket="survivor", Isolation="none",
                                Arguments=[str(marker)])  # fmt: skip
            await scripts.wait_for_output("survivor")  # past its pid file, at its wait
        agent.signal(signal.SIGTERM)
        assert agent.wait_exit() == 0, agent.log()
        pid = int(Path(f"{marker}.pid").read_text())
        os.kill(pid, 0)  # the script outlived the agent: it still runs (else ProcessLookupError)

        agent.start()
        agent.wait_for_log("re-attached to script")
        Path(f"{marker}.release").touch()
        async with client_for(agent) as client:
            status = await Scripts(client).wait_complete("survivor")
    finally:
        Path(f"{marker}.release").touch()
        agent.stop()
    assert status["ExitCode"] == 7, status
    stdout = "\n".join(entry["Text"] for entry in status["Logs"] if entry["Source"] == "stdout")
    assert stdout.split("\n") == ["before", "after"], status
