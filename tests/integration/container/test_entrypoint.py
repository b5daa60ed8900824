"""The container's entrypoint (`tentacle container-start`) as a plain process against a
real hub: no container engine runs here, so the "container" is a process whose
environment holds the image's (the Containerfile's ENV) and Tentacle's container
variables, and whose volume is a folder."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli.container_cmd import RECORD_NAME
from agent.config.index import InstanceIndex
from agent.config.instances import open_instance
from agent.config.model import InstanceConfig
from agent.hub.keys import Permission
from tests.helpers.agent import _Lines
from tests.helpers.containerfile import image_environment
from tests.helpers.eventually import eventually
from tests.helpers.hub import HubApi, RunningHub, running_hub

POOL = "Default Worker Pool"
BASE = {"ServerUrl": "https://hub/", "ServerApiKey": "API-X", "TargetWorkerPool": "P"}


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path, builtin_worker=False) as running:
        yield running


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Container:
    """One start of the entrypoint with ``variables``, its volume at ``volume``."""

    def __init__(self, volume: Path, variables: dict[str, str]) -> None:
        self.volume = volume
        base = {k: v for k, v in os.environ.items() if not k.startswith("TENTACLE_")}
        image = {**image_environment(), "TENTACLE_CONFIG_HOME": str(volume)}
        self.env = {**base, **image, **variables}
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Container:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "container-start"],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.out, self.err = _Lines(self.process.stdout), _Lines(self.process.stderr)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def output(self, text: str) -> str:
        return await asyncio.to_thread(self.out.wait_for, text)

    async def exit_code(self) -> int:
        assert self.process is not None
        return await asyncio.to_thread(self.process.wait, 60)

    async def terminate(self) -> int:
        """SIGTERM, as a container engine stops a container; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await self.exit_code()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def text(self) -> str:
        return "".join(self.out.lines) + "".join(self.err.lines)

    def config(self) -> InstanceConfig:
        index = InstanceIndex(self.volume / "instances")
        return open_instance(index, "Tentacle").config

    def record(self) -> dict[str, Any]:
        return json.loads((self.config().home / RECORD_NAME).read_text())  # type: ignore[no-any-return]


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    """Every container a test starts, killed at the end if a failure left it running."""
    started: list[Container] = []
    yield started
    for container in started:
        container.kill()


def hub_variables(hub: RunningHub, name: str) -> dict[str, str]:
    return {
        "ServerUrl": hub.api.url,
        "ServerApiKey": str(hub.api.key),
        "ServerThumbprint": hub.home.identity().thumbprint,
        "TargetWorkerPool": POOL,
        "TargetName": name,
    }


def listening_variables(hub: RunningHub, name: str, port: int) -> dict[str, str]:
    """A listening worker on loopback: the agent's own port (TENTACLE_SERVICE_PORT)
    is the one the hub dials (ListeningPort), as with a container's port published
    on the same number."""
    return {
        **hub_variables(hub, name),
        "ListeningPort": str(port),
        "PublicHostNameConfiguration": "Custom",
        "CustomPublicHostName": "127.0.0.1",
        "TENTACLE_SERVICE_PORT": str(port),
        "TENTACLE_LISTEN_IP": "127.0.0.1",
    }


def polling_variables(hub: RunningHub, name: str) -> dict[str, str]:
    return {**hub_variables(hub, name), "ServerPort": str(hub.server.polling_port)}


async def workers_named(api: HubApi, name: str) -> list[dict[str, Any]]:
    return await api.get(f"/api/workers/all?name={name}")  # type: ignore[no-any-return]


async def healthy(api: HubApi, name: str) -> dict[str, Any]:
    """The worker ``name`` once a health check found it Healthy (checks are asked for
    while none is queued: the first may have run before the agent was up)."""

    async def check() -> dict[str, Any] | None:
        [worker] = await workers_named(api, name)
        if worker["HealthStatus"] == "Healthy":
            return worker
        if not await api.get("/api/tasks/all?states=Queued,Executing&name=Health"):
            arguments = {"MachineIds": [worker["Id"]]}
            await api.request("POST", "/api/tasks", json={"Name": "Health", "Arguments": arguments})
        return None

    return await eventually(check, f"{name} became Healthy", interval=0.2)


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (entry.partition(b"=") for entry in raw.split(b"\0") if entry)
    return {key.decode(): value.decode(errors="replace") for key, _, value in pairs}


def command_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")


async def test_a_listening_container_registers_turns_healthy_and_restarts_without_a_duplicate(
    hub: RunningHub, tmp_path: Path, containers: list[Container]
) -> None:
    variables = listening_variables(hub, "box-1", free_port())
    first = Container(tmp_path / "volume", variables).start()
    containers.append(first)
    registered = await first.output("Registered box-1 as ")
    await first.output("Agent listening on")
    worker = await healthy(hub.api, "box-1")
    assert worker["Id"] in registered
    assert worker["Endpoint"]["CommunicationStyle"] == "TentaclePassive"
    # the entrypoint became the agent (same pid, so the engine's SIGTERM reaches it)...
    assert command_of(first.pid)[-3:] == ["agent", "--instance", "Tentacle"]
    # ...without the key that registered it
    environment = environment_of(first.pid)
    assert "ServerApiKey" not in environment
    assert str(hub.api.key) not in "\0".join(environment.values())
    assert environment["ServerUrl"] == hub.api.url  # the rest is kept
    assert await first.terminate() == 0

    second = Container(tmp_path / "volume", variables).start()
    containers.append(second)
    line = await second.output("Registered already as ")
    assert worker["Id"] in line
    await second.output("Agent listening on")
    assert [w["Id"] for w in await workers_named(hub.api, "box-1")] == [worker["Id"]]
    assert len(await hub.api.get("/api/workers/all")) == 1
    assert "Registered box-1" not in second.text()
    assert await second.terminate() == 0


async def test_a_polling_container_registers_and_turns_healthy(
    hub: RunningHub, tmp_path: Path, containers: list[Container]
) -> None:
    container = Container(tmp_path / "volume", polling_variables(hub, "poller-1")).start()
    containers.append(container)
    await container.output("Registered poller-1 as ")
    await container.output("Agent will not listen")
    worker = await healthy(hub.api, "poller-1")
    assert worker["Endpoint"]["CommunicationStyle"] == "TentacleActive"
    config = container.config()
    assert config.no_listen
    port = hub.server.polling_port
    assert [s.address for s in config.polling_servers] == [f"https://127.0.0.1:{port}/"]
    assert "ServerApiKey" not in environment_of(container.pid)
    assert await container.terminate() == 0


async def test_a_container_whose_worker_was_deleted_registers_again_on_restart(
    hub: RunningHub, tmp_path: Path, containers: list[Container]
) -> None:
    """A policy may delete a worker while its container is stopped: the next start
    brings it back (the volume's record alone would leave it unknown to the hub)."""
    variables = polling_variables(hub, "poller-2")
    first = Container(tmp_path / "volume", variables).start()
    containers.append(first)
    await first.output("Agent will not listen")
    [worker] = await workers_named(hub.api, "poller-2")
    assert await first.terminate() == 0
    status, _ = await hub.api.request("DELETE", f"/api/workers/{worker['Id']}")
    assert status == 200

    second = Container(tmp_path / "volume", variables).start()
    containers.append(second)
    await second.output("is no longer on the hub: registering again")
    await second.output("Registered poller-2 as ")
    again = await healthy(hub.api, "poller-2")
    assert again["Id"] != worker["Id"]
    assert again["Thumbprint"] == worker["Thumbprint"]  # the volume's certificate
    assert await second.terminate() == 0


async def test_changed_variables_update_the_one_worker(
    hub: RunningHub, tmp_path: Path, containers: list[Container]
) -> None:
    variables = polling_variables(hub, "poller-3")
    first = Container(tmp_path / "volume", variables).start()
    containers.append(first)
    await first.output("Agent will not listen")
    assert await first.terminate() == 0
    status, pool = await hub.api.request("POST", "/api/workerpools", json={"Name": "Builders"})
    assert status == 201, pool

    changed = {**variables, "TargetWorkerPool": f"{POOL}, Builders"}
    second = Container(tmp_path / "volume", changed).start()
    containers.append(second)
    await second.output("Updated the registration of poller-3")
    await second.output("Agent will not listen")
    [worker] = await workers_named(hub.api, "poller-3")
    assert pool["Id"] in worker["WorkerPoolIds"]
    assert second.record()["Asked"]["WorkerPools"] == [POOL, "Builders"]
    assert await second.terminate() == 0


async def test_a_hub_that_is_down_at_the_first_start_leaves_no_registration(
    hub: RunningHub, tmp_path: Path
) -> None:
    """The start fails with one clear line (exit 1, so the engine restarts it), and
    the volume holds no record and no trust of a hub: the next start registers."""
    down = f"https://127.0.0.1:{free_port()}/"
    variables = {**polling_variables(hub, "poller-4"), "ServerUrl": down}
    container = Container(tmp_path / "volume", variables).start()
    assert await container.exit_code() == 1
    errors = [line for line in container.err.lines if line.startswith("error:")]
    assert len(errors) == 1, container.text()
    assert f"could not register with the hub at {down}" in errors[0]
    assert "nothing was registered" in errors[0]
    assert "Traceback" not in container.text()
    config = container.config()
    assert not (config.home / RECORD_NAME).exists()
    assert config.trusted == ()
    assert config.polling_servers == ()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"TargetWorkerPool": "No Such Pool"}, "the hub has no worker pool 'No Such Pool'"),
        ({"Space": "Elsewhere"}, "Space: the hub has no space 'Elsewhere'"),
        ({"MachinePolicy": "Strict"}, "the hub has no machine policy 'Strict'"),
    ],
)
async def test_what_the_hub_refuses_exits_3_and_registers_nothing(
    hub: RunningHub, tmp_path: Path, change: dict[str, str], expected: str
) -> None:
    variables = {**polling_variables(hub, "poller-5"), **change}
    container = Container(tmp_path / "volume", variables).start()
    assert await container.exit_code() == 3
    assert expected in container.text()
    assert await hub.api.get("/api/workers/all") == []
    assert not (container.config().home / RECORD_NAME).exists()


async def test_a_key_that_may_not_register_exits_3(hub: RunningHub, tmp_path: Path) -> None:
    reader = await hub.key("reader", Permission.READ_ONLY)
    variables = {**polling_variables(hub, "poller-6"), "ServerApiKey": reader}
    container = Container(tmp_path / "volume", variables).start()
    assert await container.exit_code() == 3
    assert "could not register with the hub" in container.text()
    assert reader not in container.text()
    assert await hub.api.get("/api/workers/all") == []


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "ServerUrl: not set"),
        ({"ServerUrl": "hub:8065"}, "ServerUrl: 'hub:8065' is not an http(s) URL"),
        ({"ServerUrl": "https://hub/", "TargetWorkerPool": "P"}, "ServerApiKey: not set"),
        (
            {"ServerUrl": "https://hub/", "ServerApiKey": "API-X"},
            "TargetWorkerPool: not set",
        ),
        (
            {**BASE, "ListeningPort": "99999"},
            "ListeningPort: '99999' is not a port",
        ),
    ],
)
def test_bad_variables_exit_3_with_one_line_naming_the_variable(
    tmp_path: Path, variables: dict[str, str], expected: str
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TENTACLE_")}
    completed = subprocess.run(
        [sys.executable, "-m", "agent", "container-start"],
        env={**base, "TENTACLE_CONFIG_HOME": str(tmp_path / "volume"), **variables},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 3, completed
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"error: {expected}"), completed.stderr
    assert not (tmp_path / "volume").exists()  # nothing is created before the variables hold
