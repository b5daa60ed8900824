from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from agent.client import (
    LogChunk,
    ScriptRequest,
    SshConnections,
    SshCredentials,
    SshTarget,
    SshWorker,
)
from tests.helpers.sshd import SshServer


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """One OpenSSH server (and its user) for the whole session's SSH tests."""
    server = SshServer().start()
    yield server
    server.close()


@pytest.fixture(params=["helper", "wrapper"])
async def connections(request: pytest.FixtureRequest) -> AsyncIterator[SshConnections]:
    """The test's own SshConnections (closed at its end): steps through the step
    helper where the target has python3, and again through the shell wrapper alone."""
    pool = SshConnections(step_helper=request.param == "helper")
    yield pool
    await pool.close()


def target_of(
    sshd: SshServer, *, without_python: bool = False, without_bash: bool = False,
    fingerprint: str = "",
) -> SshTarget:  # fmt: skip
    port = sshd.port_without_python if without_python else sshd.port
    port = sshd.port_without_bash if without_bash else port
    return SshTarget(sshd.host, port, fingerprint or sshd.fingerprint)


def key_login(sshd: SshServer) -> SshCredentials:
    assert sshd.key is not None
    return SshCredentials(sshd.user, private_key=sshd.key.private)


@pytest.fixture
def worker(sshd: SshServer, connections: SshConnections) -> SshWorker:
    """A worker on the test server, logging in with the plain key."""
    return connections.worker(target_of(sshd), key_login(sshd), "ssh-test")


class Output:
    """What a step printed, by source, with the sequence numbers it came with."""

    def __init__(self) -> None:
        self.chunks: list[LogChunk] = []
        self.seen = asyncio.Event()
        self.wanted = ""

    def __call__(self, chunk: LogChunk) -> None:
        self.chunks.append(chunk)
        if self.wanted and any(self.wanted in line for line in chunk.lines):
            self.seen.set()

    def lines(self, source: str = "stdout") -> list[str]:
        return [line for chunk in self.chunks if chunk.source == source for line in chunk.lines]

    async def wait_for(self, text: str) -> None:
        """Until a line containing ``text`` came (bounded by the test's timeout)."""
        self.wanted = text
        if any(text in line for line in self.lines() + self.lines("stderr")):
            return
        async with asyncio.timeout(60):
            await self.seen.wait()


def waits(sshd: SshServer, ticket: str, root: str = ".tentacle") -> bool:
    """Whether the step ``ticket`` waits for its isolation mutex: recorded as started
    (``.started``, on either way of running steps), its script not (no ``pgid``)."""
    started = sshd.home / root / "Work" / ticket / ".started"
    try:
        facts = started.read_text()
    except FileNotFoundError:
        return False
    return "lock " in facts and "pgid " not in facts


async def all_at_once(worker: SshWorker, steps: int, barrier: str) -> list[Output]:
    """Run ``steps`` steps on ``worker`` that each wait, in folder ``barrier`` on the
    target, until all have started (so they can only end if they run at once); each
    prints its number. Their outputs, after checking every one exited 0."""
    body = (
        f'mkdir -p {barrier}; touch {barrier}/"$1"; '
        f'while [ "$(ls {barrier} | wc -l)" -lt {steps} ]; do sleep 0.05; done; echo "$1"'
    )
    outputs = [Output() for _ in range(steps)]
    outcomes = await asyncio.gather(
        *(
            worker.execute(
                ScriptRequest(body=body, arguments=[str(n)], isolation="none"), outputs[n]
            )
            for n in range(steps)
        )
    )
    assert [o.exit_code for o in outcomes] == [0] * steps
    return outputs
