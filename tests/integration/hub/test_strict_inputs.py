"""What the tester's attack on the API found it accepted: listening URIs the hub could
never dial, paging numbers Python's int() reads but Octopus's do not, ids in another
case, duplicates, endless descriptions and names with control characters."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from agent.certs import generate_identity
from tests.helpers.hub import RunningHub


@pytest.fixture(autouse=True)
async def no_checks(hub: RunningHub) -> None:
    """The API alone: no health check of workers that do not exist."""
    assert hub.server.tasks is not None
    await hub.server.tasks.stop()


def listening(name: str, uri: str = "https://127.0.0.1:10933/") -> dict[str, Any]:
    return {
        "Name": name,
        "Thumbprint": generate_identity().thumbprint,
        "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": uri},
        "WorkerPoolIds": ["WorkerPools-1"],
    }


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("https://127.0.0.1:0/", "the port must be from 1 to 65535, not '0'"),
        ("https://127.0.0.1:99999/", "the port must be from 1 to 65535, not '99999'"),
        ("https://[::1/", "'[::1' is not an IPv6 address in brackets: no ']'"),
        ("https://127.0.0.1:99:18934/", "'127.0.0.1:99' is not a host: it has a port"),
        ("https://user@127.0.0.1:1/x", "no user, path, query or fragment"),
    ],
)
async def test_a_listening_uri_the_hub_cannot_dial_is_422_naming_uri_and_the_form(
    hub: RunningHub, uri: str, why: str
) -> None:
    status, answer = await hub.api.request("POST", "/api/workers", json=listening("w", uri))
    assert status == 422, answer
    [error] = answer["Errors"]
    assert error.startswith("Endpoint.Uri must be https://HOST:PORT/ (HOST a DNS name"), error
    assert why in error, error
    assert await hub.api.get("/api/workers/all") == []


async def test_a_put_cannot_change_a_listening_uri_to_a_bad_one(hub: RunningHub) -> None:
    status, worker = await hub.api.request("POST", "/api/workers", json=listening("w"))
    assert status == 201, worker
    changed = {**worker, "Endpoint": {**worker["Endpoint"], "Uri": "https://127.0.0.1:0/"}}
    status, answer = await hub.api.request("PUT", f"/api/workers/{worker['Id']}", json=changed)
    assert status == 422, answer
    assert "Endpoint.Uri must be https://HOST:PORT/" in answer["Errors"][0]
    assert (await hub.api.get(f"/api/workers/{worker['Id']}"))["Uri"] == "https://127.0.0.1:10933/"


@pytest.mark.parametrize("value", ["\uff11", "1_000", "+1", "1\n", "99999999999999999999999"])
@pytest.mark.parametrize("name", ["take", "skip"])
@pytest.mark.parametrize("collection", ["workers", "tasks"])
async def test_paging_takes_plain_digits_up_to_a_32_bit_int_or_is_400_naming_it(
    hub: RunningHub, collection: str, name: str, value: str
) -> None:
    status, answer = await hub.api.request("GET", f"/api/{collection}?{name}={quote(value)}")
    assert status == 400, answer
    assert answer["ErrorMessage"].startswith(f"{name} must be "), answer
    page = await hub.api.get(f"/api/{collection}?{name}=2147483647")
    assert page["ItemsPerPage"] == (2147483647 if name == "take" else 30)


async def _health_check(hub: RunningHub, **body: Any) -> tuple[int, Any]:
    return await hub.api.request("POST", "/api/tasks", json={"Name": "Health", **body})


async def test_a_task_takes_worker_ids_in_octopus_form_once_each(hub: RunningHub) -> None:
    status, worker = await hub.api.request("POST", "/api/workers", json=listening("w"))
    assert status == 201, worker
    assert worker["Id"] == "Workers-1"
    # the routes agree: only the exact form names a worker
    status, _ = await hub.api.request("GET", "/api/workers/workers-1")
    assert status == 404
    tasks_before = (await hub.api.get("/api/tasks"))["TotalResults"]  # the new worker's check
    cases = [
        (["workers-1"], "'workers-1' is not a worker id (Workers-N)"),
        (["WORKERS-1"], "'WORKERS-1' is not a worker id (Workers-N)"),
        (["Workers-1", "Workers-1"], "'Workers-1' is given more than once"),
    ]
    for machines, said in cases:
        status, answer = await _health_check(hub, Arguments={"MachineIds": machines})
        assert status == 422, (machines, answer)
        assert answer["Errors"] == [f"Arguments.MachineIds: {said}"], answer
    status, answer = await _health_check(hub, Arguments={"WorkerpoolId": "workerpools-1"})
    assert status == 422, answer
    assert "Arguments.WorkerpoolId must be a worker pool id (WorkerPools-N)" in answer["Errors"][0]
    assert (await hub.api.get("/api/tasks"))["TotalResults"] == tasks_before
    status, task = await _health_check(hub, Arguments={"MachineIds": ["Workers-1"]})
    assert status == 201, task


async def test_a_task_description_is_at_most_1000_characters(hub: RunningHub) -> None:
    status, answer = await _health_check(hub, Description="d" * 100_000)
    assert status == 422, answer
    assert answer["Errors"] == ["Description must be at most 1000 characters, not 100000"]
    status, task = await _health_check(hub, Description="d" * 1000)
    assert status == 201, task
    assert task["Description"] == "d" * 1000


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("a\nb", "a newline (U+000A) at character 2"),
        ("a\rb", "a carriage return (U+000D) at character 2"),
        ("\x1b[31mred", "U+001B at character 1"),
        ("a\u2028b", "U+2028 at character 2"),
        ("tab\there", "a tab (U+0009) at character 4"),
    ],
)
@pytest.mark.parametrize("collection", ["workers", "workerpools", "machinepolicies"])
async def test_a_name_with_a_control_character_is_422(
    hub: RunningHub, collection: str, name: str, said: str
) -> None:
    body = listening(name) if collection == "workers" else {"Name": name}
    status, answer = await hub.api.request("POST", f"/api/{collection}", json=body)
    assert status == 422, answer
    assert answer["Errors"] == [f"Name must not contain control characters: {said}"], answer
