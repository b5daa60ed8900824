from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from agent.client import AgentClient
from agent.client.scripts import LogChunk, ScriptRequest, execute_script
from tests.helpers.agent import AgentProcess
from tests.helpers.eventually import eventually


@dataclass(frozen=True)
class Line:
    sequence: int
    source: str
    text: str


def lines_of(chunks: list[LogChunk]) -> list[Line]:
    return [Line(chunk.first + offset, chunk.source, text)
            for chunk in chunks for offset, text in enumerate(chunk.lines)]  # fmt: skip


class Scripts:
    """Script calls to a real agent, low level (start/status/cancel) and whole runs."""

    def __init__(self, client: AgentClient) -> None:
        self.client = client

    async def start(self, body: str, ticket: str | None = None, **params: Any) -> dict[str, Any]:
        ticket = ticket or secrets.token_hex(8)
        result: dict[str, Any] = await self.client.call(
            "scripts", "start", {"ScriptTicket": ticket, "ScriptBody": body, **params}
        )
        return result

    async def status(self, ticket: str, last: int = 0) -> dict[str, Any]:
        result: dict[str, Any] = await self.client.call(
            "scripts", "status", {"ScriptTicket": ticket, "LastLogSequence": last}
        )
        return result

    async def cancel(self, ticket: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.client.call(
            "scripts", "cancel", {"ScriptTicket": ticket, "LastLogSequence": 0}
        )
        return result

    async def run(
        self, body: str, cancel: asyncio.Event | None = None, **fields: Any
    ) -> tuple[int, list[Line]]:
        chunks: list[LogChunk] = []
        outcome = await execute_script(self.client, ScriptRequest(body, **fields), chunks.append,
                                       cancel)  # fmt: skip
        return outcome.exit_code, lines_of(chunks)

    async def wait_complete(self, ticket: str) -> dict[str, Any]:
        """Poll until Complete (each status call is a round trip, not a timer)."""

        async def complete() -> dict[str, Any] | None:
            status = await self.status(ticket)
            return status if status["State"] == "Complete" else None

        return await eventually(complete, f"script {ticket} to complete")

    async def wait_for_output(self, ticket: str) -> dict[str, Any]:
        """Poll until the script has logged something (it has started); its status."""

        async def logged() -> dict[str, Any] | None:
            status = await self.status(ticket)
            return status if status["Logs"] else None

        return await eventually(logged, f"script {ticket} to log its first line")

    async def wait_for_state(self, ticket: str, state: str) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            status = await self.status(ticket)
            return status if status["State"] == state else None

        return await eventually(reached, f"script {ticket} to be {state}")


def texts(lines: list[Line], source: str = "stdout") -> list[str]:
    return [line.text for line in lines if line.source == source]


@pytest.fixture
def agent(any_agent: AgentProcess) -> AgentProcess:
    """Every script test runs against a listening agent and a polling one."""
    return any_agent


@pytest.fixture
async def scripts(agent: AgentProcess) -> AsyncIterator[Scripts]:
    async with agent.client() as client:
        yield Scripts(client)
