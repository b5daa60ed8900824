"""execute_script: run a script on an agent to the end, streaming its log.

Start (idempotent per ticket) -> status with backoff, resuming from the last
log sequence after a dropped connection -> complete. A cancel request is sent
again until the script reports Complete, so the caller always learns the
outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.client.agent_client import AgentClient, retrying

FIRST_POLL = 0.05
MAX_POLL = 2.0
POLL_GROWTH = 1.5


@dataclass(frozen=True)
class ScriptRequest:
    body: str
    syntax: str = "bash"
    arguments: Sequence[str] = ()
    files: Sequence[tuple[str, Path]] = ()
    isolation: str = "full"
    mutex_name: str | None = None
    mutex_timeout: float | None = None
    grace: float | None = None
    task_id: str = ""
    ticket: str = field(default_factory=lambda: secrets.token_hex(16))
    wait: float = 1.0


@dataclass(frozen=True)
class LogChunk:
    """Consecutive log lines of one source: ``first`` is the first line's sequence number.

    Delivered in chunks, not line by line, so that a script printing a
    gigabyte costs the caller a few thousand calls, not millions.
    """

    source: str
    first: int
    lines: list[str]
    occurred: datetime.datetime

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class ScriptOutcome:
    ticket: str
    exit_code: int
    cancelled: bool


async def execute_script(
    client: AgentClient,
    request: ScriptRequest,
    on_output: Callable[[LogChunk], None],
    cancel: asyncio.Event | None = None,
) -> ScriptOutcome:
    """Run ``request`` to completion, passing every log line to ``on_output`` once, in order.

    Setting ``cancel`` cancels the script; the outcome then still carries its
    real exit code. Raises ConnectionLost only once the client's retry policy
    gives up on reaching the agent (``client.retry``'s deadline).
    """
    cancel = cancel or asyncio.Event()
    status = await _resilient(client, lambda: _start(client, request))  # idempotent per ticket
    last = 0
    delay = FIRST_POLL
    cancel_sent = False
    while True:
        finished = status["State"] == "Complete" and not status.get(
            "MoreLogs", bool(status["Logs"])
        )
        # While output flows, ask for the next lines before handing these over,
        # so that the agent reads while the caller writes.
        upcoming = None
        if status["Logs"] and not finished and not cancel.is_set():
            following = int(status["NextLogSequence"])
            upcoming = asyncio.ensure_future(
                _resilient(client, _poll(client, "status", request.ticket, following))
            )
        try:
            last = _deliver(status, last, on_output)
        except BaseException:
            if upcoming is not None:
                upcoming.cancel()
            raise
        if finished:
            break
        if upcoming is not None:
            status = await upcoming
            delay = FIRST_POLL
            continue
        await _pause(delay, cancel, cancel_sent)
        delay = min(delay * POLL_GROWTH, MAX_POLL)
        method = "cancel" if cancel.is_set() and status["State"] != "Complete" else "status"
        cancel_sent |= method == "cancel"
        status = await _resilient(client, _poll(client, method, request.ticket, last))
    # Releasing the workspace needs no answer (Tentacle's clients do not retry it)
    client.send("scripts", "complete", {"ScriptTicket": request.ticket})
    return ScriptOutcome(request.ticket, int(status["ExitCode"]), cancel.is_set())


def _poll(client: AgentClient, method: str, ticket: str, last: int) -> Callable[[], Awaitable[Any]]:
    """A status (or cancel) call; status logs come as bytes on a stream, for speed."""

    async def call() -> Any:
        params: dict[str, Any] = {"ScriptTicket": ticket, "LastLogSequence": last}
        if method == "cancel":
            return await client.call("scripts", method, params)
        channel = await client.connect()
        result = await channel.call("scripts", method, {**params, "StreamLogs": True})
        data = b"".join([chunk async for chunk in result.stream]) if result.stream else b""
        return {**result.value, "Data": data}

    return call


async def _start(client: AgentClient, request: ScriptRequest) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ScriptTicket": request.ticket,
        "ScriptBody": request.body,
        "Syntax": request.syntax,
        "Arguments": list(request.arguments),
        "Isolation": request.isolation,
        "IsolationMutexName": request.mutex_name,
        "IsolationMutexTimeout": request.mutex_timeout,
        "Grace": request.grace,
        "TaskId": request.task_id,
        "DurationToWaitForScriptToFinish": request.wait,
        "Files": [{"Name": name, "Length": path.stat().st_size} for name, path in request.files],
    }
    channel = await client.connect()
    upload = _concatenated([path for _, path in request.files]) if request.files else None
    result = await channel.call("scripts", "start", params, upload=upload)
    value: dict[str, Any] = result.value
    return value


async def _concatenated(paths: list[Path]) -> AsyncIterator[bytes]:
    for path in paths:
        with path.open("rb") as file:
            while chunk := file.read(256 * 1024):
                yield chunk


def _deliver(status: dict[str, Any], last: int, on_output: Callable[[LogChunk], None]) -> int:
    """Hand the status's new lines to ``on_output``; returns the last sequence seen."""
    data, offset = status.get("Data", b""), 0
    for entry in status["Logs"]:
        if "Text" in entry:
            text = entry["Text"]
        else:
            length = int(entry["Length"])
            text = str(memoryview(data)[offset : offset + length], "utf-8", "replace")
            offset += length
        first = int(entry["Sequence"])
        lines = text.split("\n")[max(0, last + 1 - first) :]
        if lines:
            first = max(first, last + 1)
            occurred = datetime.datetime.fromisoformat(entry["Occurred"])
            on_output(LogChunk(entry["Source"], first, lines, occurred))
            last = first + len(lines) - 1
    return max(last, int(status["NextLogSequence"]))


async def _pause(delay: float, cancel: asyncio.Event, cancel_sent: bool) -> None:
    """Wait before the next status call; a new cancel request cuts the wait short."""
    if cancel_sent:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cancel.wait(), delay)


async def _resilient(client: AgentClient, call: Callable[[], Any]) -> dict[str, Any]:
    """Repeat an idempotent call through dropped connections, under ``client.retry``."""
    result: dict[str, Any] = await retrying(client.retry, call)
    return result
