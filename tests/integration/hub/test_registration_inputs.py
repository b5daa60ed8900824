"""register-worker's inputs: a public host refused before the hub is contacted, pool
and policy names in any case, and a name clash reported with the hub's spelling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.certs import generate_identity
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.hub import RunningHub, hub_args, running_hub
from tests.integration.hub.test_registration import tentacle_fails, tentacle_ok


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path) as running:
        yield running


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.1:99", "--publicHostName: '127.0.0.1:99' is not a host: it has a port"),
        ("worker 1", "--publicHostName: 'worker 1' is not a host name"),
        ("[::1", "--publicHostName: '[::1' is not an IPv6 address"),
        ("300.1.1.1", "--publicHostName: '300.1.1.1' is not an IPv4 address"),
    ],
)
async def test_a_public_host_that_is_not_a_host_is_one_line_before_the_hub_is_contacted(
    tentacle: TentacleCli, host: str, message: str
) -> None:
    AgentProcess(tentacle)
    # nothing listens on port 1: had the hub been contacted, the error would say so
    nowhere = ["--server", "https://127.0.0.1:1/", "--apikey", "API-" + "Q" * 32]
    args = ["--workerpool", "Default Worker Pool", "--publicHostName", host]
    result = await tentacle_fails(
        tentacle, "register-worker", "--instance", "agent", *nowhere, *args
    )
    assert message in result.err, result.err
    assert "--tentacle-comms-port" in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


async def test_an_ipv6_public_host_is_put_in_brackets(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    AgentProcess(tentacle)
    args = ["--workerpool", "Default Worker Pool", "--publicHostName", "::1", "--name", "six",
            "--tentacle-comms-port", "10933"]  # fmt: skip
    await tentacle_ok(tentacle, "register-worker", "--instance", "agent", *hub_args(hub), *args)
    [worker] = await hub.api.get("/api/workers/all")
    assert worker["Uri"] == "https://[::1]:10933/"


async def test_pool_and_policy_names_are_found_in_any_case(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    AgentProcess(tentacle)
    args = ["--workerpool", "default worker pool", "--policy", "DEFAULT MACHINE POLICY",
            "--publicHostName", "127.0.0.1", "--name", "w",
            "--tentacle-comms-port", "10933"]  # fmt: skip
    await tentacle_ok(tentacle, "register-worker", "--instance", "agent", *hub_args(hub), *args)
    [worker] = await hub.api.get("/api/workers/all")
    assert worker["WorkerPoolIds"] == ["WorkerPools-1"]
    assert worker["MachinePolicyId"] == "MachinePolicies-1"


async def test_a_name_clash_names_the_worker_as_the_hub_has_it(
    hub: RunningHub, tentacle: TentacleCli
) -> None:
    other = {
        "Name": "web-1",
        "Thumbprint": generate_identity().thumbprint,
        "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "https://127.0.0.1:1/"},
        "WorkerPoolIds": ["WorkerPools-1"],
    }
    status, _ = await hub.api.request("POST", "/api/workers", json=other)
    assert status == 201
    AgentProcess(tentacle)
    args = ["--workerpool", "Default Worker Pool", "--publicHostName", "127.0.0.1",
            "--name", "WEB-1"]  # fmt: skip
    result = await tentacle_fails(
        tentacle, "register-worker", "--instance", "agent", *hub_args(hub), *args
    )
    assert "a worker named 'web-1' exists already (Workers-1" in result.err, result.err


async def test_a_worker_name_with_a_control_character_is_one_line_before_the_hub(
    tentacle: TentacleCli,
) -> None:
    AgentProcess(tentacle)
    nowhere = ["--server", "https://127.0.0.1:1/", "--apikey", "API-" + "Q" * 32]
    args = ["--workerpool", "Default Worker Pool", "--publicHostName", "h", "--name", "a\nb"]
    result = await tentacle_fails(
        tentacle, "register-worker", "--instance", "agent", *nowhere, *args
    )
    assert result.err.strip() == (
        "error: --name must not contain control characters: a newline (U+000A) at character 2"
    )


def test_an_api_key_name_with_a_control_character_is_one_line(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    home = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home))
    refused = tentacle.fails("hub", "create-api-key", "--home", str(home), "--name", "a\nb")
    assert refused.err.strip() == (
        "error: --name must not contain control characters: a newline (U+000A) at character 2"
    )
    assert refused.out == ""  # no key was made
