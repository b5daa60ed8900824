"""Shared parts of the task tests: real agents registered with a hub, scripts that
count how many of them run at once (marker files under flock), task waits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent.certs import Identity
from agent.config import TrustedPeer
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.eventually import eventually
from tests.helpers.hub import HubApi


async def add_worker(
    api: HubApi,
    identity: Identity,
    folder: Path,
    name: str,
    polling_port: int | None = None,
    pool: str = "WorkerPools-1",
    port: int = 0,
    also_trusts: Identity | None = None,
    script_uids: tuple[int, int] | None = None,
) -> AgentProcess:
    """A real agent (listening, on ``port`` if given, or polling the hub at
    ``polling_port``) trusting the hub, added to ``pool`` through the API and checked
    until Healthy. ``script_uids``: its scripts run as their groups' uids from that
    range (root, and ``folder`` open to other users), not as the agent's user."""
    cli = TentacleCli(folder / name)
    if script_uids is not None:
        cli.env["TENTACLE_SCRIPT_USERS"] = "on"
        cli.env["TENTACLE_SCRIPT_UID_RANGE"] = f"{script_uids[0]}-{script_uids[1]}"
    agent = AgentProcess(cli, caller=identity)
    if script_uids is not None:
        cli.config_home.chmod(0o711)  # the instance's home is below it
    if also_trusts is not None:  # another hub node
        config = agent.instance.config
        extra = TrustedPeer.from_certificate(also_trusts.certificate)
        agent.instance = agent.instance.save(config.with_trusted((*config.trusted, extra)))
    if port:
        agent.instance = agent.instance.save(agent.instance.config.with_settings(port=port))
    if polling_port is not None:
        agent.poll("127.0.0.1", polling_port, identity.thumbprint)
    await asyncio.to_thread(agent.start)
    polling = polling_port is not None
    uri = agent.subscription if polling else agent.url
    style = "TentacleActive" if polling else "TentaclePassive"
    status, worker = await api.request(
        "POST",
        "/api/workers",
        json={
            "Name": name,
            "Thumbprint": agent.thumbprint,
            "WorkerPoolIds": [pool],
            "Endpoint": {"CommunicationStyle": style, "Uri": uri},
            "Certificate": agent.identity.certificate_pem.decode(),
        },
    )
    assert status == 201, worker

    async def healthy() -> bool:
        record = await api.get(f"/api/workers/{worker['Id']}")
        if record["HealthStatus"] == "Healthy":
            return True
        tasks = await api.get("/api/tasks/all?states=Queued,Executing&name=Health")
        if not tasks:  # the last check found it not yet connected: check again
            await api.request(
                "POST", "/api/tasks", json={"Name": "Health", "Arguments": {
                    "MachineIds": [worker["Id"]]}}
            )  # fmt: skip
        return False

    await eventually(healthy, f"{name} became Healthy", interval=0.2)
    return agent


def counting_script(shared: Path) -> str:
    """A script that records its start (``started``: one line ``$1`` a start), counts
    how many run at once (``max``), then waits for ``release-$1`` or ``release-all``."""
    return f"""D={shared}
( flock 9; n=$(( $(cat $D/count 2>/dev/null || echo 0) + 1 )); echo $n > $D/count
  m=$(cat $D/max 2>/dev/null || echo 0); [ $n -gt $m ] && echo $n > $D/max
  echo "$1" >> $D/started ) 9>$D/lock
i=0
until [ -e $D/release-$1 ] || [ -e $D/release-all ]; do
  i=$((i+1)); [ $i -gt 3000 ] && exit 9; sleep 0.05
done
( flock 9; echo $(( $(cat $D/count) - 1 )) > $D/count ) 9>$D/lock
echo "done $1"
touch $D/done-$1
"""


def started(shared: Path) -> list[str]:
    path = shared / "started"
    return path.read_text().split() if path.exists() else []


def most_at_once(shared: Path) -> int:
    return int((shared / "max").read_text())


async def submit(api: HubApi, **arguments: Any) -> dict[str, Any]:
    status, task = await api.request(
        "POST", "/api/tasks", json={"Name": "AdHocScript", "Arguments": arguments}
    )
    assert status == 201, task
    return task  # type: ignore[no-any-return]


async def finished(api: HubApi, task: dict[str, Any]) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        now = await api.get(f"/api/tasks/{task['Id']}")
        return now if now["IsCompleted"] else None

    return await eventually(done, f"{task['Id']} finished", timeout=120)  # type: ignore[no-any-return]


async def state_of(api: HubApi, task: dict[str, Any]) -> str:
    return str((await api.get(f"/api/tasks/{task['Id']}"))["State"])
