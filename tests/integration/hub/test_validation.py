"""Input the API must refuse clearly, over real TLS on SQLite and PostgreSQL: workers it
cannot reach, filters it does not know, health checks with malformed arguments, API
keys in URLs (refused, and masked in the log), URLs and headers over the limits."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from agent.certs import generate_identity
from agent.hub.api.redact import MASK
from agent.hub.store import tables as t
from tests.helpers.eventually import eventually
from tests.helpers.hub import RunningHub


@pytest.fixture(autouse=True)
async def no_checks(hub: RunningHub) -> None:
    """The API alone: nothing picks the queued health checks up."""
    assert hub.server.tasks is not None
    await hub.server.tasks.stop()


def worker(name: str, style: str = "TentaclePassive", **extra: Any) -> dict[str, Any]:
    return {
        "Name": name,
        "Thumbprint": generate_identity().thumbprint,
        "Endpoint": {"CommunicationStyle": style, "Uri": "https://127.0.0.1:10933/"},
        "WorkerPoolIds": ["WorkerPools-1"],
        **extra,
    }


def named(answer: dict[str, Any], *parts: str) -> bool:
    """Whether one of the error's lines names every one of ``parts``."""
    lines = [answer["ErrorMessage"], *answer["Errors"]]
    return any(all(part in line for part in parts) for line in lines)


# --- SSH endpoints: what each field must be -------------------------------------------------


@pytest.mark.parametrize("style", ["Ssh", "ssh"])
async def test_an_ssh_worker_without_its_endpoint_is_refused_naming_each_field(
    hub: RunningHub, style: str
) -> None:
    body = {**worker("s"), "Endpoint": {"CommunicationStyle": style}}
    status, answer = await hub.api.request("POST", "/api/workers", json=body)
    assert status == 422, answer
    if style == "ssh":  # the style is spelled as Octopus spells it
        assert named(answer, "Endpoint.CommunicationStyle", "Ssh", "'ssh'")
    else:
        assert named(answer, "Endpoint.Host is required")
        assert named(answer, "Endpoint.Fingerprint", "SHA256: followed by 43 base64")
        assert named(answer, "Endpoint.AccountId is required", "Accounts-N")
    assert (await hub.api.get("/api/workers"))["TotalResults"] == 0


async def test_a_worker_changed_into_an_ssh_worker_needs_the_ssh_fields(hub: RunningHub) -> None:
    status, created = await hub.api.request("POST", "/api/workers", json=worker("w"))
    assert status == 201, created
    changed = {
        **created,
        "Endpoint": {"CommunicationStyle": "Ssh", "Host": "no such", "Port": 0,
                     "Fingerprint": "SHA256:short", "AccountId": "Accounts-99"},
    }  # fmt: skip
    status, answer = await hub.api.request("PUT", f"/api/workers/{created['Id']}", json=changed)
    assert status == 422, answer
    assert named(answer, "Endpoint.Host: expected a host name or an IP address", "'no such'")
    assert named(answer, "Endpoint.Port must be a port number from 1 to 65535, not 0")
    assert named(answer, "Endpoint.Fingerprint", "'SHA256:short'")
    assert named(answer, "Endpoint.AccountId: there is no account 'Accounts-99'")
    status, answer = await hub.api.request("POST", "/api/workers", json=worker("x", "Kubernetes"))
    assert status == 422, answer
    assert named(answer, "Endpoint.CommunicationStyle", "TentaclePassive", "Ssh", "'Kubernetes'")


# --- filters the hub does not know -----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "parameter", "value", "accepted"),
    [
        ("/api/workers?commStyles=Bogus", "commStyles", "'Bogus'", "TentacleActive"),
        ("/api/workers?commStyles=TentacleActive,Bogus", "commStyles", "'Bogus'", "Ssh"),
        ("/api/workers?healthStatuses=Bogus", "healthStatuses", "'Bogus'", "HasWarnings"),
        ("/api/workers?isDisabled=maybe", "isDisabled", "'maybe'", "true or false"),
        ("/api/workers?workerpoolIds=WorkerPools-x", "workerpoolIds", "'WorkerPools-x'", "-N"),
        ("/api/workers/all?commStyles=Bogus", "commStyles", "'Bogus'", "TentaclePassive"),
        ("/api/Spaces-1/workers?healthStatuses=Fine", "healthStatuses", "'Fine'", "Unknown"),
        ("/api/workerpools/WorkerPools-1/workers?isDisabled=1", "isDisabled", "'1'", "true"),
        ("/api/machinepolicies/MachinePolicies-1/workers?commStyles=x", "commStyles", "'x'", "Ssh"),
        ("/api/tasks?states=Bogus", "states", "'Bogus'", "Queued"),
        ("/api/tasks/all?states=Bogus", "states", "'Bogus'", "TimedOut"),
        ("/api/tasks?name=Backup", "name", "'Backup'", "Health"),
    ],
)
async def test_an_unknown_filter_value_is_400_naming_it(
    hub: RunningHub, query: str, parameter: str, value: str, accepted: str
) -> None:
    status, answer = await hub.api.request("GET", query)
    assert status == 400, answer
    assert named(answer, parameter, value, accepted), answer


async def test_known_filter_values_are_read_in_any_case(hub: RunningHub) -> None:
    status, created = await hub.api.request("POST", "/api/workers", json=worker("w"))
    assert status == 201, created
    for query in (
        "commStyles=tentaclepassive",
        "healthStatuses=unknown,HEALTHY",
        "isDisabled=False",
        "workerpoolIds=workerpools-1",
    ):
        page = await hub.api.get(f"/api/workers?{query}")
        assert [w["Name"] for w in page["Items"]] == ["w"], query
    assert (await hub.api.get("/api/workers?workerpoolIds=WorkerPools-99"))["Items"] == []
    assert (await hub.api.get("/api/tasks?states=queued&name=health"))["TotalResults"] == 1


# --- health checks with malformed arguments --------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "parts"),
    [
        ([], ("Arguments must be an object", "[]")),
        ("Workers-1", ("Arguments must be an object", '"Workers-1"')),
        ({"MachineIds": "Workers-1"}, ("Arguments.MachineIds must be a list of worker ids",)),
        ({"MachineIds": ["Workers-1", 7]}, ("Arguments.MachineIds", "7")),
        ({"MachineIds": ["Machines-1"]}, ("Arguments.MachineIds", "'Machines-1'", "Workers-N")),
        ({"MachineIds": ["Workers-77"]}, ("Arguments.MachineIds", "no worker 'Workers-77'")),
        ({"WorkerpoolId": "WorkerPools-9"}, ("Arguments.WorkerpoolId", "'WorkerPools-9'")),
        ({"WorkerpoolId": ["WorkerPools-1"]}, ("Arguments.WorkerpoolId", "WorkerPools-N")),
        ({"WorkerPoolId": 1}, ("Arguments.WorkerPoolId", "WorkerPools-N")),
        (
            {"WorkerPoolId": None, "WorkerpoolId": "Pools-1"},
            ("Arguments.WorkerpoolId", "WorkerPools-N"),
        ),
        ({"MachineTimeout": True}, ("Arguments.MachineTimeout", "true")),
    ],
)
async def test_a_health_check_with_bad_arguments_is_422_naming_the_field(
    hub: RunningHub, arguments: Any, parts: tuple[str, ...]
) -> None:
    body = {"Name": "Health", "Arguments": arguments}
    status, answer = await hub.api.request("POST", "/api/tasks", json=body)
    assert status == 422, answer
    assert named(answer, *parts), answer
    assert (await hub.api.get("/api/tasks"))["TotalResults"] == 0


async def test_a_health_check_cannot_name_another_space_s_pool(hub: RunningHub) -> None:
    """Ids are numbers of one table for every space: the space must be checked too."""
    assert hub.server.store is not None
    now = datetime.now(UTC)
    stamp = {"modified_on": now, "modified_by": "test"}
    async with hub.server.store.transaction() as conn:
        space = await conn.execute(
            sa.insert(t.spaces).values(name="Other", **stamp).returning(t.spaces.c.id)
        )
        pool = await conn.execute(
            sa.insert(t.worker_pools)
            .values(space_id=space.scalar_one(), name="Theirs", **stamp)
            .returning(t.worker_pools.c.id)
        )
        pool_id = f"WorkerPools-{pool.scalar_one()}"
    body = {"Name": "Health", "Arguments": {"WorkerpoolId": pool_id}}
    status, answer = await hub.api.request("POST", "/api/tasks", json=body)
    assert status == 422, answer
    assert named(answer, "Arguments.WorkerpoolId", repr(pool_id), "in this space")


async def test_a_health_check_of_everything_may_leave_its_arguments_empty(
    hub: RunningHub,
) -> None:
    for arguments in (None, {}, {"MachineIds": [], "WorkerpoolId": None}, {"WorkerpoolId": ""}):
        body = {"Name": "Health", "Arguments": arguments}
        status, task = await hub.api.request("POST", "/api/tasks", json=body)
        assert status == 201, (arguments, task)
        assert task["Description"] == "Check health of every worker"


# --- API keys in URLs: refused, and never logged ---------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api?apikey={key}",
        "/api/?ApiKey={key}",
        "/api/workers?apikey={key}",
        "/api/Spaces-1/workers?take=5&APIKEY={key}",
        "/api/tasks?X-Octopus-ApiKey={key}",
    ],
)
async def test_a_key_in_the_url_is_401_and_masked_in_the_access_log(
    hub: RunningHub, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    key = hub.api.key
    assert key is not None
    status, answer = await hub.api.request("GET", path.format(key=key), key="")
    assert status == 401, answer
    assert named(answer, "X-Octopus-ApiKey header")
    line = await eventually(
        lambda: next((r.getMessage() for r in caplog.records if " 401 " in r.getMessage()), None),
        "the request's access log line",
    )
    assert key not in caplog.text
    assert "********" in line, line


async def test_a_key_shaped_path_is_masked_in_the_access_log(
    hub: RunningHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    secret = "API-" + "Q7" * 13
    status, answer = await hub.api.request("GET", f"/api/{secret}?note={secret.lower()}")
    assert status == 404, answer
    assert secret not in answer["ErrorMessage"]
    line = await eventually(
        lambda: next((r.getMessage() for r in caplog.records if " 404 " in r.getMessage()), None),
        "the request's access log line",
    )
    assert secret.lower() not in caplog.text.lower()
    assert f"/api/{MASK}?note={MASK}" in line, line


# --- URLs and headers over the limits --------------------------------------------------------


async def test_a_url_over_the_limit_is_414_in_octopus_shape(hub: RunningHub) -> None:
    status, answer = await hub.api.request("GET", "/api/workers?partialName=" + "x" * 9000)
    assert status == 414, answer
    assert named(answer, "request line is too long", "8190")
    assert answer["Errors"]
    status, _ = await hub.api.request("GET", "/api/workers?partialName=" + "x" * 8000)
    assert status == 200  # under the limit: answered


async def test_a_header_over_the_limit_is_431_in_octopus_shape(hub: RunningHub) -> None:
    headers = {"X-Note": "y" * 9000}
    status, answer = await hub.api.request("GET", "/api/workers", headers=headers)
    assert status == 431, answer
    assert named(answer, "'X-Note'", "too long", "8190")
