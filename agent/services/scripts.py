"""The script service (scripts/2, which serves scripts/1 too): the RPC face of
agent.scripts.ScriptManager.

A start's ``Environment`` goes to the manager, which keeps it in memory only.

Parameters follow Tentacle's ScriptServiceV2 names. Files sent alongside a
script travel on the StartScript call's stream, one after another, each as
long as its ``Length`` in ``Files``. A file's ``Name`` is relative to the
workspace; ``/`` (or ``\\``) makes subfolders; absolute names, ``.`` or ``..``
parts and the workspace's own files are refused (bad_params).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Any

from agent.errors import CallError
from agent.protocol.calls import IncomingCall, Reply
from agent.protocol.messages import BAD_PARAMS, REFUSED
from agent.protocol.services import (
    CancelScriptRequest,
    CompleteScriptRequest,
    LogRun,
    ScriptLimits,
    ScriptStatus,
    ScriptStatusRequest,
    StartScriptRequest,
)
from agent.scripts.cgroups import Limits
from agent.scripts.manager import ScriptManager, Status
from agent.scripts.paths import resolve_within, workspace_file_name
from agent.scripts.state import ScriptSpec


class ScriptService:
    """Each call's parameters are parsed (and so validated) by its type in
    agent.protocol.services; each status is answered in ScriptStatus's wire form."""

    def __init__(self, manager: ScriptManager) -> None:
        self.manager = manager

    def methods(self) -> dict[str, Callable[[IncomingCall], Any]]:
        return {"start": self.start, "status": self.status, "cancel": self.cancel,
                "complete": self.complete}  # fmt: skip

    async def start(self, call: IncomingCall) -> Reply:
        request = StartScriptRequest.parse(call.params)
        files = [(workspace_file_name(file.name), file.length) for file in request.files]
        if files and call.stream is None:
            raise CallError(BAD_PARAMS, "scripts.start: Files need their bytes on the stream")

        async def write_files(workspace: Path) -> None:
            if files and call.stream is not None:
                await _write_files(call.stream, files, workspace)

        status = await self.manager.start(
            _spec(request), request.body, write_files, request.wait, dict(request.environment)
        )
        return Reply(wire_status(status))

    async def status(self, call: IncomingCall) -> Reply:
        """With ``StreamLogs``, the log lines travel as bytes on the result's stream."""
        request = ScriptStatusRequest.parse(call.params)
        status = self.manager.status(
            request.ticket, request.last_sequence, raw_logs=request.stream_logs
        )
        if status.log_data is None:
            return Reply(wire_status(status))
        return Reply(wire_status(status), _each(status.log_data))

    async def cancel(self, call: IncomingCall) -> Reply:
        request = CancelScriptRequest.parse(call.params)
        return Reply(wire_status(await self.manager.cancel(request.ticket, request.last_sequence)))

    async def complete(self, call: IncomingCall) -> Reply:
        await self.manager.complete(CompleteScriptRequest.parse(call.params).ticket)
        return Reply(None)


def wire_status(status: Status) -> dict[str, Any]:
    """The wire form of a manager's status (ScriptStatus.to_wire)."""
    return ScriptStatus(
        ticket=status.ticket,
        state=status.state,
        exit_code=status.exit_code,
        logs=tuple(LogRun.parse(run) for run in status.logs),
        next_sequence=status.next_sequence,
        more_logs=status.more_logs,
    ).to_wire()


async def _each(chunks: list[bytes | memoryview]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk  # type: ignore[misc]  # a memoryview is sent without a copy


def _spec(request: StartScriptRequest) -> ScriptSpec:
    return ScriptSpec(
        ticket=request.ticket,
        syntax=request.syntax,
        arguments=request.arguments,
        isolation=request.isolation,
        mutex_name=request.mutex_name,
        mutex_timeout=request.mutex_timeout,
        task_id=request.task_id,
        grace=request.grace,
        limits=_limits(request.limits),
        isolation_group=request.isolation_group,
    )


def _limits(limits: ScriptLimits | None) -> Limits:
    if limits is None:
        return Limits()
    return Limits(limits.memory_bytes, limits.pids, limits.cpu_weight)


async def _write_files(
    stream: AsyncIterable[bytes], files: list[tuple[str, int]], workspace: Path
) -> None:
    """Split the stream into the listed files inside ``workspace``."""
    chunks = aiter(stream)
    pending = b""
    for name, length in files:
        target = resolve_within(name, workspace, ())
        if target == workspace.resolve():
            raise CallError(REFUSED, f"file name {name!r} names the workspace itself")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            file = target.open("xb")
        except FileExistsError:
            raise CallError(
                BAD_PARAMS, f"file {name!r} is given twice or clashes with the script"
            ) from None
        with file:
            remaining = length
            while remaining:
                if not pending:
                    pending = await _next(chunks, name)
                piece, pending = pending[:remaining], pending[remaining:]
                file.write(piece)
                remaining -= len(piece)


async def _next(chunks: AsyncIterator[bytes], name: str) -> bytes:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        raise CallError(BAD_PARAMS, f"the stream ended inside file {name!r}") from None
