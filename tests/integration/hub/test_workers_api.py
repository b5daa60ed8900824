"""/api/workers through the API: both kinds of worker, filters, conflicts, validation,
and what a worker's pools and policy then refuse."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.certs import generate_identity
from tests.helpers.hub import RunningHub


@pytest.fixture(autouse=True)
async def no_checks(hub: RunningHub) -> None:
    """The API alone: the hub checks every new worker at once, and those checks (of
    workers that do not exist) would race these tests' reads of a worker's health."""
    assert hub.server.tasks is not None
    await hub.server.tasks.stop()


def listening(name: str, port: int = 10933, **extra: Any) -> dict[str, Any]:
    identity = generate_identity()
    return {
        "Name": name,
        "Thumbprint": identity.thumbprint,
        "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": f"https://127.0.0.1:{port}/"},
        "WorkerPoolIds": ["WorkerPools-1"],
        **extra,
    }


def polling(name: str, subscription: str = "abcdefghijkmnpqrstuv") -> dict[str, Any]:
    identity = generate_identity()
    return {
        "Name": name,
        "Thumbprint": identity.thumbprint,
        "Certificate": identity.certificate_pem.decode(),
        "Endpoint": {"CommunicationStyle": "TentacleActive", "Uri": f"poll://{subscription}/"},
        "WorkerPoolIds": ["WorkerPools-1"],
    }


async def add(hub: RunningHub, body: dict[str, Any], path: str = "/api/workers") -> dict[str, Any]:
    status, worker = await hub.api.request("POST", path, json=body)
    assert status == 201, worker
    return worker  # type: ignore[no-any-return]


@pytest.mark.parametrize("prefix", ["/api", "/api/Spaces-1"])
async def test_a_listening_worker_is_added_read_changed_and_deleted(
    hub: RunningHub, prefix: str
) -> None:
    worker = await add(hub, listening("web-1"), f"{prefix}/workers")
    assert worker["Id"].startswith("Workers-")
    assert worker["HealthStatus"] == "Unknown"
    assert worker["Status"] == "Unknown"
    assert worker["MachinePolicyId"] == "MachinePolicies-1"
    assert worker["Endpoint"]["CommunicationStyle"] == "TentaclePassive"
    assert await hub.api.get(f"{prefix}/workers/{worker['Id']}") == worker
    status, changed = await hub.api.request(
        "PUT", f"{prefix}/workers/{worker['Id']}", json={**worker, "IsDisabled": True}
    )
    assert status == 200
    assert (changed["IsDisabled"], changed["Status"]) == (True, "Disabled")
    connection = await hub.api.get(f"{prefix}/workers/{worker['Id']}/connection")
    assert (connection["MachineId"], connection["Status"]) == (worker["Id"], "Unknown")
    status, _ = await hub.api.request("DELETE", f"{prefix}/workers/{worker['Id']}")
    assert status == 200
    status, _ = await hub.api.request("GET", f"{prefix}/workers/{worker['Id']}")
    assert status == 404


async def test_a_polling_worker_needs_its_certificate(hub: RunningHub) -> None:
    body = polling("poller")
    worker = await add(hub, body)
    assert worker["HasCertificate"]
    assert worker["Uri"] == body["Endpoint"]["Uri"]
    without = {k: v for k, v in polling("bare").items() if k != "Certificate"}
    status, answer = await hub.api.request("POST", "/api/workers", json=without)
    assert status == 422
    assert any("Certificate" in e for e in answer["Errors"])


async def test_a_thumbprint_must_match_the_certificate(hub: RunningHub) -> None:
    body = {**polling("mismatch"), "Thumbprint": generate_identity().thumbprint}
    status, answer = await hub.api.request("POST", "/api/workers", json=body)
    assert status == 422
    assert any("is not the thumbprint of Certificate" in e for e in answer["Errors"])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"Name": None}, "Name is required"),
        ({"Endpoint": {"CommunicationStyle": "Carrier"}}, "CommunicationStyle must be one of"),
        ({"Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "ftp://x/"}}, "https://"),
        ({"Endpoint": "here"}, "Endpoint must be an object"),
        ({"WorkerPoolIds": []}, "at least one worker pool"),
        ({"WorkerPoolIds": ["WorkerPools-99"]}, "no worker pool 'WorkerPools-99'"),
        ({"MachinePolicyId": "MachinePolicies-42"}, "no machine policy"),
        ({"Thumbprint": "not hex"}, "Thumbprint"),
    ],
)
async def test_a_bad_worker_is_422_naming_the_field(
    hub: RunningHub, change: dict[str, Any], named: str
) -> None:
    status, answer = await hub.api.request(
        "POST", "/api/workers", json={**listening("w"), **change}
    )
    assert status == 422
    assert any(named in error for error in answer["Errors"]), answer


async def test_a_taken_name_or_thumbprint_is_a_conflict(hub: RunningHub) -> None:
    first = listening("same")
    await add(hub, first)
    status, answer = await hub.api.request("POST", "/api/workers", json=listening("same", 1))
    assert status == 409
    assert "named 'same' exists already" in answer["ErrorMessage"]
    status, answer = await hub.api.request("POST", "/api/workers", json={**first, "Name": "other"})
    assert status == 409
    assert "has the thumbprint" in answer["ErrorMessage"]


async def test_workers_are_filtered_as_octopus_filters_them(hub: RunningHub) -> None:
    status, pool = await hub.api.request("POST", "/api/workerpools", json={"Name": "Second"})
    assert status == 201
    one = await add(hub, listening("alpha", WorkerPoolIds=["WorkerPools-1", pool["Id"]]))
    two = await add(hub, polling("beta"))
    await add(hub, listening("gamma", IsDisabled=True))

    async def names(query: str) -> list[str]:
        return [w["Name"] for w in (await hub.api.get(f"/api/workers?{query}"))["Items"]]

    assert await names("") == ["alpha", "beta", "gamma"]
    assert await names(f"workerpoolIds={pool['Id']}") == ["alpha"]
    assert await names("commStyles=TentacleActive") == ["beta"]
    assert await names("isDisabled=true") == ["gamma"]
    assert await names(f"thumbprint={one['Thumbprint']}") == ["alpha"]
    assert await names("partialName=ET") == ["beta"]
    assert await names("name=alpha") == ["alpha"]
    assert await names("healthStatuses=Unknown,Healthy") == ["alpha", "beta", "gamma"]
    assert await names(f"ids={two['Id']}") == ["beta"]
    status, answer = await hub.api.request("GET", "/api/workers?healthStatuses=Fine")
    assert status == 400
    assert "healthStatuses" in answer["ErrorMessage"]
    members = await hub.api.get(f"/api/workerpools/{pool['Id']}/workers")
    assert [w["Name"] for w in members["Items"]] == ["alpha"]
    summary = await hub.api.get("/api/workerpools/summary")
    by_pool = {s["WorkerPool"]["Name"]: s for s in summary["WorkerPoolSummaries"]}
    assert by_pool["Default Worker Pool"]["TotalMachines"] == 3
    assert by_pool["Default Worker Pool"]["MachineHealthStatusSummaries"]["Unknown"] == 3
    assert by_pool["Second"]["TotalDisabledMachines"] == 0


async def test_a_pool_or_policy_in_use_cannot_be_deleted(hub: RunningHub) -> None:
    status, pool = await hub.api.request("POST", "/api/workerpools", json={"Name": "Busy"})
    template = await hub.api.get("/api/machinepolicies/template")
    status, policy = await hub.api.request(
        "POST", "/api/machinepolicies", json={**template, "Name": "Strict"}
    )
    assert status == 201
    worker = await add(
        hub, listening("member", WorkerPoolIds=[pool["Id"]], MachinePolicyId=policy["Id"])
    )
    status, answer = await hub.api.request("DELETE", f"/api/workerpools/{pool['Id']}")
    assert status == 409
    assert "still has 1 worker(s)" in answer["ErrorMessage"]
    status, answer = await hub.api.request("DELETE", f"/api/machinepolicies/{policy['Id']}")
    assert status == 409
    assert "is the policy of 1 worker(s)" in answer["ErrorMessage"]
    await hub.api.request("DELETE", f"/api/workers/{worker['Id']}")
    status, _ = await hub.api.request("DELETE", f"/api/workerpools/{pool['Id']}")
    assert status == 200


async def test_many_registrations_at_once_all_succeed(hub: RunningHub) -> None:
    """SQLite used to refuse concurrent writers ("database is locked", a 500)."""
    bodies = [listening(f"crowd-{n}", 20000 + n) for n in range(32)]
    answers = await asyncio.gather(
        *(hub.api.request("POST", "/api/workers", json=body) for body in bodies)
    )
    assert [status for status, _ in answers] == [201] * 32
    assert len(await hub.api.get("/api/workers/all")) == 32
