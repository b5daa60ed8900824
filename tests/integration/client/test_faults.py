"""A bad network between hub and agent: connections cut or frozen in the middle of a call.

Each test breaks every connection just as the agent answers one kind of call,
and proves the client still completes: no script started twice, no log line
lost or repeated, no half-written file. Listening and polling alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.client import AgentClient, Endpoint, PollingListener
from agent.client.scripts import LogChunk, ScriptOutcome, ScriptRequest, execute_script
from agent.transport.channel import Channel
from agent.transport.dialer import dial
from agent.transport.settings import ChannelSettings
from tests.helpers.agent import AgentProcess
from tests.helpers.cli import TentacleCli
from tests.helpers.forwarder import Fault, Forwarder

HEARTBEAT = 0.5  # both sides: a frozen connection is noticed after three silent beats
pytestmark = pytest.mark.parametrize("fault", ["cut", "freeze"])


@dataclass
class BadNetwork:
    """An agent reached only through a forwarder that breaks on cue."""

    agent: AgentProcess
    forwarder: Forwarder
    listener: PollingListener | None
    forwarder_port: int
    channels: list[Channel] = field(default_factory=list)

    def client(self, fault: Fault, service: str, method: str) -> AgentClient:
        """A hub client whose first ``service.method`` call meets ``fault``."""
        armed = False
        url = (
            self.agent.subscription
            if self.listener
            else f"https://127.0.0.1:{self.forwarder_port}/"
        )
        endpoint = Endpoint(url, self.agent.thumbprint)

        def arm(called: tuple[str, str]) -> None:
            nonlocal armed
            if called == (service, method) and not armed:
                armed = True
                self.forwarder.arm(fault)

        async def connect() -> Channel:
            if self.listener is not None:
                channel = await self.listener.channel(
                    self.agent.subscription, self.agent.thumbprint
                )
            else:
                channel = await dial(endpoint.url, self.agent.thumbprint, self._settings)
                self.channels.append(channel)  # the client leaves a connector's channels open
            return _Arming(channel, arm)  # type: ignore[return-value]

        return AgentClient(endpoint, self._settings, connector=connect, background_grace=120)

    @property
    def _settings(self) -> ChannelSettings:
        return self.agent.settings(heartbeat=HEARTBEAT)


class _Arming:
    """A channel that tells the test which call it is about to send."""

    def __init__(self, channel: Channel, before_call: Callable[[tuple[str, str]], None]) -> None:
        self._channel = channel
        self._before_call = before_call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    async def call(self, service: str, method: str, *args: Any, **kwargs: Any) -> Any:
        self._before_call((service, method))
        return await self._channel.call(service, method, *args, **kwargs)


@pytest.fixture(params=["listening", "polling"])
async def network(
    request: pytest.FixtureRequest, tentacle: TentacleCli
) -> AsyncIterator[BadNetwork]:
    agent = AgentProcess(tentacle)
    agent.instance = agent.instance.save(
        agent.instance.config.with_settings(heartbeat_interval=HEARTBEAT)
    )
    listener = None
    if request.param == "polling":
        listener = PollingListener(agent.settings(heartbeat=HEARTBEAT),
                                   [agent.identity.certificate_pem.decode()])  # fmt: skip
        [(_, port), *_] = await listener.start("127.0.0.1", 0)
        forwarder = Forwarder(port, agent_dials=True)
        agent.poll("127.0.0.1", await forwarder.start(), agent.caller.thumbprint).start()
    else:
        agent.start()
        forwarder = Forwarder(agent.port, agent_dials=False)
    network = BadNetwork(agent, forwarder, listener, await forwarder.start())
    try:
        yield network
    finally:
        try:
            await forwarder.stop()
            for channel in network.channels:
                await channel.close()
        finally:  # the agent is a process of its own: never leave it behind
            await agent.stopped()
            if listener is not None:
                await listener.stop()


async def run(
    client: AgentClient, request: ScriptRequest, **kwargs: Any
) -> tuple[ScriptOutcome, list[str]]:
    chunks: list[LogChunk] = []
    outcome = await execute_script(client, request, chunks.append, **kwargs)
    return outcome, [line for chunk in chunks for line in chunk.lines]


@contextmanager
def gate(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None]]]:
    """A FIFO a script blocks on (``read < FIFO``) until the test opens the gate."""
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    descriptor = os.open(fifo, os.O_RDWR)  # never blocks, and keeps the data for the reader
    try:
        yield fifo, lambda: os.write(descriptor, b"go\n") and None
    finally:
        os.close(descriptor)


async def test_capabilities(network: BadNetwork, fault: Fault) -> None:
    async with network.client(fault, "capabilities", "get") as hub:
        assert "scripts/1" in (await hub.capabilities())["SupportedCapabilities"]
    assert network.forwarder.faults == 1


async def test_upload(network: BadNetwork, fault: Fault, tmp_path: Path) -> None:
    local = tmp_path / "package.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024))
    async with network.client(fault, "files", "upload") as hub:
        uploaded = await hub.upload(local, "Files/package.bin")
    assert network.forwarder.faults == 1
    assert uploaded["Sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
    assert sorted(path.name for path in (network.agent.home / "Files").iterdir()) == ["package.bin"]


async def test_download(network: BadNetwork, fault: Fault, tmp_path: Path) -> None:
    remote = network.agent.home / "Files" / "report.bin"
    remote.parent.mkdir(exist_ok=True)
    remote.write_bytes(os.urandom(3 * 1024 * 1024))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    async with network.client(fault, "files", "download") as hub:
        await hub.download("Files/report.bin", downloads / "report.bin")
    assert network.forwarder.faults == 1
    assert (downloads / "report.bin").read_bytes() == remote.read_bytes()
    assert [path.name for path in downloads.iterdir()] == ["report.bin"]


async def test_start_runs_the_script_once(
    network: BadNetwork, fault: Fault, tmp_path: Path
) -> None:
    starts = tmp_path / "starts"
    body = f"echo started >> {starts}; seq 1 500"
    async with network.client(fault, "scripts", "start") as hub:
        outcome, lines = await run(hub, ScriptRequest(body))
    assert network.forwarder.faults == 1
    assert starts.read_text() == "started\n"
    assert (outcome.exit_code, lines) == (0, [str(n) for n in range(1, 501)])


async def test_status_loses_no_line(network: BadNetwork, fault: Fault, tmp_path: Path) -> None:
    with gate(tmp_path) as (fifo, open_gate):
        body = f"seq 1 500; read go < {fifo}; seq 501 1000; exit 4"
        async with network.client(fault, "scripts", "status") as hub:
            network.forwarder.fired.clear()
            opener = asyncio.ensure_future(_after(network.forwarder.fired, open_gate))
            outcome, lines = await run(hub, ScriptRequest(body, wait=0))
            await opener
    assert network.forwarder.faults == 1
    assert (outcome.exit_code, lines) == (4, [str(n) for n in range(1, 1001)])


async def test_cancel_is_repeated_until_the_script_stops(network: BadNetwork, fault: Fault) -> None:
    cancel = asyncio.Event()

    def on_output(chunk: LogChunk) -> None:
        chunks.append(chunk)
        cancel.set()

    chunks: list[LogChunk] = []
    async with network.client(fault, "scripts", "cancel") as hub:
        outcome = await execute_script(hub, ScriptRequest("echo begun; exec sleep 600"),
                                       on_output, cancel)  # fmt: skip
    assert network.forwarder.faults == 1
    assert outcome.cancelled
    assert outcome.exit_code != 0
    [begun, cancelling] = [line for chunk in chunks for line in chunk.lines]
    assert (begun, cancelling.split(":")[0]) == ("begun", "Cancelling")


async def test_complete_still_releases_the_workspace(network: BadNetwork, fault: Fault) -> None:
    request = ScriptRequest("echo done", ticket="released")
    async with network.client(fault, "scripts", "complete") as hub:
        outcome, lines = await run(hub, request)
        assert (network.agent.home / "Work" / "released").is_dir()
    # leaving the block waited for the complete call, retried through the fault
    assert network.forwarder.faults == 1
    assert (outcome.exit_code, lines) == (0, ["done"])
    assert not (network.agent.home / "Work" / "released").exists()


async def _after(event: asyncio.Event, action: Callable[[], None]) -> None:
    await event.wait()
    action()
