"""Registration at scale: a storm of concurrent registrations while health checks write,
on SQLite and on PostgreSQL (real POST /api/workers over real TLS)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from agent.certs import generate_identity
from agent.config.polling import new_subscription_id
from tests.helpers.eventually import eventually
from tests.helpers.hub import RunningHub

STORM = 200  # registrations
AT_ONCE = 50  # of them in flight at once
TARGETS = 10  # listening workers nobody answers for: each check fails at once, and writes


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def polling_body(number: int) -> dict[str, Any]:
    identity = generate_identity()  # an EC key: cheap
    return {
        "Name": f"storm-{number:03d}",
        "Thumbprint": identity.thumbprint,
        "Certificate": identity.certificate_pem.decode("ascii"),
        "Endpoint": {"CommunicationStyle": "TentacleActive", "Uri": new_subscription_id()},
        "WorkerPoolIds": ["WorkerPools-1"],
    }


async def health_rounds(hub: RunningHub, machines: list[str], over: asyncio.Event) -> int:
    """Health tasks of ``machines``, one after another until ``over``; how many ran.
    Each check is refused at once, so each round writes the workers' records."""
    rounds = 0
    while not over.is_set() or rounds == 0:
        body = {"Name": "Health", "Arguments": {"MachineIds": machines, "MachineTimeout": 10}}
        status, task = await hub.api.request("POST", "/api/tasks", json=body)
        assert status == 201, task

        async def finished(task_id: str = task["Id"]) -> bool:
            return bool((await hub.api.get(f"/api/tasks/{task_id}"))["IsCompleted"])

        await eventually(finished, f"health task {task['Id']} finished")
        rounds += 1
    return rounds


async def test_a_storm_of_registrations_is_answered_201_while_checks_write(
    hub: RunningHub,
) -> None:
    listener, runner = hub.server.listener, hub.server.tasks
    assert listener is not None
    assert runner is not None
    # every new worker's own check is claimed at once (each waits for its polling
    # agent, writing as it starts): the checks below do not queue behind them
    runner.cap = STORM + 20
    port = refused_port()
    targets = []
    for number in range(TARGETS):
        body = {
            "Name": f"gone-{number}",
            "Thumbprint": generate_identity().thumbprint,
            "Endpoint": {
                "CommunicationStyle": "TentaclePassive",
                "Uri": f"https://127.0.0.1:{port}/",
            },
            "WorkerPoolIds": ["WorkerPools-1"],
        }
        status, worker = await hub.api.request("POST", "/api/workers", json=body)
        assert status == 201, worker
        targets.append(worker["Id"])
    over = asyncio.Event()
    checking = asyncio.create_task(health_rounds(hub, targets, over))
    bodies = [polling_body(number) for number in range(STORM)]
    gate = asyncio.Semaphore(AT_ONCE)

    async def register(body: dict[str, Any]) -> tuple[int, Any]:
        async with gate:
            return await hub.api.request("POST", "/api/workers", json=body)

    try:
        answers = await asyncio.gather(*(register(body) for body in bodies))
    finally:
        over.set()
        rounds = await checking
    refused = [(status, answer) for status, answer in answers if status != 201]
    assert not refused, f"{len(refused)} of {STORM} not 201, the first: {refused[0]}"
    assert rounds >= 1
    workers = await hub.api.get("/api/workers/all", params={"partialName": "storm-"})
    assert sorted(w["Name"] for w in workers) == sorted(b["Name"] for b in bodies)
    assert len({w["Id"] for w in workers}) == STORM
    page = await hub.api.get("/api/workers", params={"take": "1"})
    assert page["TotalResults"] == STORM + TARGETS
    # the polling port trusts each, as soon as its registration was answered
    assert {b["Thumbprint"] for b in bodies} <= set(listener.trusted())
