"""The API's conventions, end to end over real TLS: the root document, spaces, both
route forms, paging, keys and permissions, Octopus's errors."""

from __future__ import annotations

import pytest

from agent.hub.keys import Permission
from tests.helpers.hub import RunningHub


async def test_the_root_document_is_served_without_a_key(hub: RunningHub) -> None:
    status, root = await hub.api.request("GET", "/api", key="")
    assert status == 200
    assert root["Application"] == "Tentacle Hub"
    assert {"Version", "ApiVersion", "InstallationId"} <= set(root)
    assert {"Spaces", "Workers", "WorkerPools", "MachinePolicies", "Tasks"} <= set(root["Links"])


async def test_a_client_finds_the_default_space_by_name(hub: RunningHub) -> None:
    page = await hub.api.get("/api/spaces?partialName=Def&skip=0&take=5")
    assert page["ItemType"] == "Space"
    assert page["TotalResults"] == 1
    [space] = page["Items"]
    assert (space["Id"], space["Name"], space["IsDefault"]) == ("Spaces-1", "Default", True)
    assert await hub.api.get("/api/spaces/Spaces-1") == space
    assert await hub.api.get("/api/spaces/all") == [space]
    assert (await hub.api.get("/api/spaces?partialName=nothing"))["Items"] == []


async def test_paging_envelope_follows_octopus(hub: RunningHub) -> None:
    page = await hub.api.get("/api/spaces?skip=0&take=1")
    assert page["ItemsPerPage"] == 1
    assert page["NumberOfPages"] == 1
    assert page["LastPageNumber"] == 0
    assert set(page["Links"]) == {"Self", "Template", "Page.All", "Page.Current", "Page.Last"}
    status, body = await hub.api.request("GET", "/api/spaces?take=lots")
    assert status == 400
    assert "take must be a whole number" in body["ErrorMessage"]


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        ("", 401, "no API key"),
        ("hunter2", 401, "not an API key"),
        ("API-" + "Z" * 32, 401, "not valid for this hub"),
    ],
)
async def test_a_missing_or_wrong_key_is_401(
    hub: RunningHub, key: str, status: int, message: str
) -> None:
    got, body = await hub.api.request("GET", "/api/spaces", key=key)
    assert got == status
    assert message in body["ErrorMessage"]
    assert body["Errors"]


async def test_a_key_in_the_query_string_is_refused(hub: RunningHub) -> None:
    status, body = await hub.api.request("GET", f"/api/spaces?apikey={hub.api.key}", key="")
    assert status == 401
    assert "X-Octopus-ApiKey" in body["ErrorMessage"]


async def test_a_bearer_key_is_accepted_as_octopus_clients_send_it(hub: RunningHub) -> None:
    headers = {"Authorization": f"Bearer {hub.api.key}"}
    status, _ = await hub.api.request("GET", "/api/spaces", key="", headers=headers)
    assert status == 200


async def test_an_unknown_route_or_space_is_404_in_octopus_shape(hub: RunningHub) -> None:
    status, body = await hub.api.request("GET", "/api/nonsense")
    assert status == 404
    assert body["ErrorMessage"].startswith("no such resource")
    status, body = await hub.api.request("GET", "/api/spaces/Spaces-9")
    assert status == 404
    assert "Spaces-9" in body["ErrorMessage"]


async def test_a_read_only_key_reads_but_cannot_change(hub: RunningHub) -> None:
    reader = await hub.key("auditor", Permission.READ_ONLY)
    status, _ = await hub.api.request("GET", "/api/spaces", key=reader)
    assert status == 200
    status, body = await hub.api.request("POST", "/api/workerpools", key=reader, json={})
    assert status == 403
    assert "ConfigureServer" in body["ErrorMessage"]
