"""A task cancelled around a hub restart: its Running steps are followed again, their
scripts cancelled on the worker, and the task is Canceled only with their real ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent import __version__
from agent.hub.api.context import utc_now
from agent.hub.server import HubServer
from agent.hub.store import open_store
from agent.hub.store import tasks as store_tasks
from tests.helpers.eventually import eventually
from tests.helpers.hub import RunningHub
from tests.integration.hub.tasks_helpers import add_worker, finished, submit


def trapping_script(shared: Path) -> str:
    """Ticks until TERM; on TERM prints ``got TERM``, touches ``termed``, waits for
    ``release`` (bounded, within the agent's grace), prints ``bye`` and exits 3."""
    return f"""D={shared}
on_term() {{
  echo got TERM; touch $D/termed
  i=0; until [ -e $D/release ]; do i=$((i+1)); [ $i -gt 150 ] && exit 9; sleep 0.05; done
  echo bye; exit 3
}}
trap on_term TERM
touch $D/started
i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo tick $i; sleep 0.05; done
"""


async def _state(hub: RunningHub, task: dict[str, Any]) -> str:
    return str((await hub.api.get(f"/api/tasks/{task['Id']}"))["State"])


async def _restarted(hub: RunningHub) -> HubServer:
    restarted = HubServer(hub.home, __version__)
    port = int(hub.api.url.rstrip("/").rsplit(":", 1)[1])
    await restarted.start(f"127.0.0.1:{port}", polling_port=0)
    return restarted


async def _ends_with_the_script(hub: RunningHub, task: dict[str, Any], shared: Path) -> None:
    """The restarted hub: the script got TERM and waits; the task is not Canceled
    until it is released, then is, with every line of the script stored."""
    await eventually((shared / "termed").exists, "the script got TERM")
    assert await _state(hub, task) == "Cancelling"  # the script still runs
    (shared / "release").touch()
    done = await finished(hub.api, task)
    assert done["State"] == "Canceled", done
    details = await hub.api.get(f"/api/tasks/{task['Id']}/details")
    [step] = details["ActivityLogs"][0]["Children"]
    assert step["Status"] == "Canceled"
    texts = [e["MessageText"] for e in step["LogElements"]]
    assert "got TERM" in texts, texts[-5:]
    assert "bye" in texts, texts[-5:]


async def test_a_cancel_sent_before_a_restart_ends_the_task_with_its_script(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        task = await submit(hub.api, ScriptBody=trapping_script(shared))
        await eventually((shared / "started").exists, "the step started")
        status, body = await hub.api.request("POST", f"/api/tasks/{task['Id']}/cancel")
        assert status == 200, body
        await eventually((shared / "termed").exists, "the cancel reached the script")
        await hub.server.stop()
        restarted = await _restarted(hub)
        try:
            await _ends_with_the_script(hub, task, shared)
        finally:
            await restarted.stop()
    finally:
        agent.stop()


async def test_a_cancel_written_while_the_hub_was_stopped_reaches_the_script(
    hub: RunningHub, tmp_path: Path
) -> None:
    agent = await add_worker(hub.api, hub.home.identity(), tmp_path, "web-1")
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        task = await submit(hub.api, ScriptBody=trapping_script(shared))
        await eventually((shared / "started").exists, "the step started")
        await hub.server.stop()
        number = int(task["Id"].removeprefix("ServerTasks-"))
        other = await open_store(hub.home.settings.database)
        try:
            async with other.transaction() as conn:
                assert await store_tasks.request_cancel(conn, number, utc_now()) == "Cancelling"
        finally:
            await other.close()
        restarted = await _restarted(hub)
        try:
            await _ends_with_the_script(hub, task, shared)
        finally:
            await restarted.stop()
    finally:
        agent.stop()
