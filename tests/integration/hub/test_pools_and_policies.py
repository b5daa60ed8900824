"""Worker pools and machine policies through the API: CRUD, defaults, conflicts,
validation, both route forms, and the events each change leaves."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.hub import RunningHub


async def created(hub: RunningHub, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, resource = await hub.api.request("POST", path, json=body)
    assert status == 201, resource
    return resource  # type: ignore[no-any-return]


@pytest.mark.parametrize("prefix", ["/api", "/api/Spaces-1"])
async def test_a_pool_is_created_read_changed_and_deleted(hub: RunningHub, prefix: str) -> None:
    pool = await created(
        hub,
        f"{prefix}/workerpools",
        {"Name": "Linux", "Description": "x64", "spaceName": "ignored extra"},
    )
    assert pool["Id"].startswith("WorkerPools-")
    assert (pool["Name"], pool["IsDefault"], pool["WorkerPoolType"]) == (
        "Linux",
        False,
        "StaticWorkerPool",
    )
    assert await hub.api.get(f"{prefix}/workerpools/{pool['Id']}") == pool
    status, changed = await hub.api.request(
        "PUT", f"{prefix}/workerpools/{pool['Id']}", json={**pool, "Description": "arm64"}
    )
    assert status == 200
    assert changed["Description"] == "arm64"
    names = [p["Name"] for p in (await hub.api.get(f"{prefix}/workerpools"))["Items"]]
    assert names == ["Default Worker Pool", "Linux"]
    status, _ = await hub.api.request("DELETE", f"{prefix}/workerpools/{pool['Id']}")
    assert status == 200
    status, body = await hub.api.request("GET", f"{prefix}/workerpools/{pool['Id']}")
    assert status == 404
    assert pool["Id"] in body["ErrorMessage"]


async def test_there_is_always_exactly_one_default_pool(hub: RunningHub) -> None:
    [default] = await hub.api.get("/api/workerpools/all")
    status, body = await hub.api.request("DELETE", f"/api/workerpools/{default['Id']}")
    assert status == 409
    assert "default worker pool" in body["ErrorMessage"]
    status, body = await hub.api.request(
        "PUT", f"/api/workerpools/{default['Id']}", json={**default, "IsDefault": False}
    )
    assert status == 409
    other = await created(hub, "/api/workerpools", {"Name": "Other", "IsDefault": True})
    pools = {p["Name"]: p["IsDefault"] for p in await hub.api.get("/api/workerpools/all")}
    assert pools == {"Default Worker Pool": False, "Other": True}
    status, _ = await hub.api.request("DELETE", f"/api/workerpools/{default['Id']}")
    assert status == 200
    assert other["IsDefault"]


async def test_a_duplicate_pool_name_is_a_conflict(hub: RunningHub) -> None:
    await created(hub, "/api/workerpools", {"Name": "Twice"})
    status, body = await hub.api.request("POST", "/api/workerpools", json={"Name": "Twice"})
    assert status == 409
    assert "Twice" in body["ErrorMessage"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "Name is required"),
        ({"Name": ""}, "Name is required"),
        ({"Name": 7}, "Name must be a string"),
        ({"Name": "P", "SortOrder": "first"}, "SortOrder must be a whole number"),
        ({"Name": "P", "WorkerPoolType": "DynamicWorkerPool"}, "WorkerPoolType must be one of"),
        ({"Name": "P", "SortOrder": 3_000_000_000}, "SortOrder must be a whole number from"),
        ({"Name": "P", "SortOrder": 10**30}, "SortOrder must be a whole number from"),
        ({"Name": "a\u0000b"}, "Name must not contain NUL characters"),
        ({"Name": "x" * 201}, "Name must be at most 200 characters"),
    ],
)
async def test_a_bad_pool_is_422_naming_the_field(
    hub: RunningHub, body: dict[str, Any], named: str
) -> None:
    status, answer = await hub.api.request("POST", "/api/workerpools", json=body)
    assert status == 422
    assert any(named in error for error in answer["Errors"]), answer


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b"[" * 100_000 + b"]" * 100_000, b'{"Name": ' + b"[" * 100_000]
)
async def test_a_body_that_is_not_a_json_object_is_400(hub: RunningHub, raw: bytes) -> None:
    status, answer = await hub.api.request(
        "POST", "/api/workerpools", data=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert "JSON" in answer["ErrorMessage"]


async def test_paging_and_ids_filter_pools(hub: RunningHub) -> None:
    for name in ("A", "B", "C"):
        await created(hub, "/api/workerpools", {"Name": name, "SortOrder": 10})
    page = await hub.api.get("/api/workerpools?skip=1&take=2")
    assert page["TotalResults"] == 4
    assert page["NumberOfPages"] == 2
    assert [p["Name"] for p in page["Items"]] == ["A", "B"]
    ids = ",".join(p["Id"] for p in page["Items"])
    assert [p["Name"] for p in (await hub.api.get(f"/api/workerpools?ids={ids}"))["Items"]] == [
        "A",
        "B",
    ]
    assert (await hub.api.get("/api/workerpools?partialName=c"))["TotalResults"] == 1


async def test_a_policy_is_made_from_the_template(hub: RunningHub) -> None:
    policy = await hub.api.get("/api/machinepolicies/template")
    assert policy["Id"] is None
    assert policy["MachineHealthCheckPolicy"]["HealthCheckType"] == "RunScript"
    policy["Name"] = "Fast"
    policy["MachineHealthCheckPolicy"]["HealthCheckInterval"] = "00:05:00"
    policy["MachineHealthCheckPolicy"]["HealthCheckType"] = "OnlyConnectivity"
    made = await created(hub, "/api/Spaces-1/machinepolicies", policy)
    assert made["Id"].startswith("MachinePolicies-")
    assert made["MachineHealthCheckPolicy"]["HealthCheckInterval"] == "00:05:00"
    assert await hub.api.get(f"/api/machinepolicies/{made['Id']}") == made
    status, _ = await hub.api.request("DELETE", f"/api/machinepolicies/{made['Id']}")
    assert status == 200


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"MachineHealthCheckPolicy": {"HealthCheckInterval": "soon"}}, "HealthCheckInterval"),
        ({"MachineHealthCheckPolicy": {"HealthCheckInterval": "00:00:05"}}, "at least"),
        ({"MachineHealthCheckPolicy": {"HealthCheckType": "Ping"}}, "HealthCheckType"),
        ({"MachineCleanupPolicy": {"DeleteMachinesBehavior": "Sometimes"}}, "DeleteMachines"),
        ({"MachineCleanupPolicy": "never"}, "MachineCleanupPolicy must be an object"),
        ({"FreeDiskSpaceWarningMegabytes": -1}, "FreeDiskSpaceWarningMegabytes"),
        ({"FreeDiskSpaceWarningMegabytes": 10**23}, "FreeDiskSpaceWarningMegabytes"),
        (
            {"MachineHealthCheckPolicy": {"HealthCheckInterval": "9999999999.00:00:00"}},
            "HealthCheckInterval",
        ),
        (
            {"MachineHealthCheckPolicy": {"HealthCheckInterval": "99999999.00:00:00"}},
            "longer than a time span can be",
        ),
        (
            {"MachineHealthCheckPolicy": {"HealthCheckInterval": "\u0660\u0661:00:00"}},
            "HealthCheckInterval",
        ),
        (
            {"MachineHealthCheckPolicy": {"HealthCheckInterval": "01:00:00\n"}},
            "HealthCheckInterval",
        ),
    ],
)
async def test_a_bad_policy_is_422_naming_the_field(
    hub: RunningHub, change: dict[str, Any], named: str
) -> None:
    status, answer = await hub.api.request(
        "POST", "/api/machinepolicies", json={"Name": "Bad", **change}
    )
    assert status == 422
    assert any(named in error for error in answer["Errors"]), answer


async def test_the_default_policy_cannot_be_deleted(hub: RunningHub) -> None:
    [default] = await hub.api.get("/api/machinepolicies/all")
    assert default["IsDefault"]
    status, body = await hub.api.request("DELETE", f"/api/machinepolicies/{default['Id']}")
    assert status == 409
    assert "cannot be deleted" in body["ErrorMessage"]


async def test_every_change_is_an_event_naming_who_made_it(hub: RunningHub) -> None:
    pool = await created(hub, "/api/workerpools", {"Name": "Audited"})
    await hub.api.request("DELETE", f"/api/workerpools/{pool['Id']}")
    events = (await hub.api.get(f"/api/events?regarding={pool['Id']}"))["Items"]
    assert [(e["Category"], e["Username"]) for e in events] == [
        ("Deleted", "admin"),
        ("Created", "admin"),
    ]
    assert events[1]["Message"] == "Worker pool Audited created"
