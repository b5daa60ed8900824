"""The script service (scripts/1): the RPC face of agent.scripts.ScriptManager.

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
from agent.scripts.manager import ScriptManager
from agent.scripts.outputlog import INDEX_FILE, RAW_FILES
from agent.scripts.runner import OWN_FILES
from agent.scripts.state import DEFAULT_MUTEX, STATE_FILE, SYNTAXES, ScriptSpec
from agent.services.paths import resolve_within
from agent.services.router import param

ISOLATIONS = ("full", "none")
RESERVED_NAMES = frozenset({*OWN_FILES, *RAW_FILES.values(), INDEX_FILE, STATE_FILE})


class ScriptService:
    def __init__(self, manager: ScriptManager) -> None:
        self.manager = manager

    def methods(self) -> dict[str, Callable[[IncomingCall], Any]]:
        return {"start": self.start, "status": self.status, "cancel": self.cancel,
                "complete": self.complete}  # fmt: skip

    async def start(self, call: IncomingCall) -> Reply:
        spec = _spec(call)
        files = _files(call)
        if files and call.stream is None:
            raise CallError(BAD_PARAMS, "scripts.start: Files need their bytes on the stream")

        async def write_files(workspace: Path) -> None:
            if files and call.stream is not None:
                await _write_files(call.stream, files, workspace)

        wait = _seconds(call, "DurationToWaitForScriptToFinish") or 0.0
        body = param(call, "ScriptBody", str)
        status = await self.manager.start(spec, body, write_files, wait)
        return Reply(status.as_json())

    async def status(self, call: IncomingCall) -> Reply:
        """With ``StreamLogs``, the log lines travel as bytes on the result's stream."""
        ticket, last = _ticket_and_sequence(call)
        streamed = bool(param(call, "StreamLogs", bool, required=False))
        status = self.manager.status(ticket, last, raw_logs=streamed)
        if status.log_data is None:
            return Reply(status.as_json())
        return Reply(status.as_json(), _each(status.log_data))

    async def cancel(self, call: IncomingCall) -> Reply:
        ticket, last = _ticket_and_sequence(call)
        return Reply((await self.manager.cancel(ticket, last)).as_json())

    async def complete(self, call: IncomingCall) -> Reply:
        await self.manager.complete(param(call, "ScriptTicket", str))
        return Reply(None)


async def _each(chunks: list[bytes | memoryview]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk  # type: ignore[misc]  # a memoryview is sent without a copy


def _spec(call: IncomingCall) -> ScriptSpec:
    syntax = param(call, "Syntax", str, required=False) or "bash"
    if syntax not in SYNTAXES:
        raise CallError(BAD_PARAMS, f"Syntax must be one of {', '.join(SYNTAXES)}, not {syntax!r}")
    isolation = param(call, "Isolation", str, required=False) or "full"
    if isolation not in ISOLATIONS:
        raise CallError(BAD_PARAMS, f"Isolation must be full or none, not {isolation!r}")
    arguments = param(call, "Arguments", list, required=False) or []
    if not all(isinstance(argument, str) for argument in arguments):
        raise CallError(BAD_PARAMS, "Arguments must be a list of strings")
    grace = _seconds(call, "Grace")
    return ScriptSpec(
        ticket=param(call, "ScriptTicket", str),
        syntax=syntax,
        arguments=tuple(arguments),
        isolation=isolation,
        mutex_name=param(call, "IsolationMutexName", str, required=False) or DEFAULT_MUTEX,
        mutex_timeout=_seconds(call, "IsolationMutexTimeout"),
        task_id=param(call, "TaskId", str, required=False) or "",
        grace=10.0 if grace is None else grace,
    )


def _seconds(call: IncomingCall, name: str) -> float | None:
    value = call.params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise CallError(BAD_PARAMS, f"{name} must be a number of seconds, not {value!r}")
    return float(value)


def _ticket_and_sequence(call: IncomingCall) -> tuple[str, int]:
    """ScriptTicket and LastLogSequence, both required (0 asks for the log from line 1)."""
    ticket = param(call, "ScriptTicket", str)
    last = param(call, "LastLogSequence", int)
    if last < 0:
        raise CallError(
            BAD_PARAMS, f"LastLogSequence must be 0 or a line's sequence number, not {last}"
        )
    return ticket, last


def _files(call: IncomingCall) -> list[tuple[str, int]]:
    files = param(call, "Files", list, required=False) or []
    parsed = []
    for item in files:
        name, length = (item.get("Name"), item.get("Length")) if isinstance(item, dict) else (0, 0)
        if not isinstance(name, str) or not isinstance(length, int) or length < 0:
            raise CallError(BAD_PARAMS, "each of Files needs Name (text) and Length (bytes)")
        parsed.append((_file_name(name), length))
    return parsed


def _file_name(name: str) -> str:
    """``name`` as a safe relative path in the workspace; raises CallError(bad_params)."""
    text = name.replace("\\", "/")
    parts = text.split("/")
    if (
        not text
        or text.startswith("/")
        or "\x00" in text
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise CallError(
            BAD_PARAMS,
            f"file name {name!r}: expected a relative path of non-empty parts separated by '/', "
            "without '.' or '..'",
        )
    if len(parts) == 1 and text in RESERVED_NAMES:
        raise CallError(
            BAD_PARAMS,
            f"file name {name!r} is one of the workspace's own files "
            f"({', '.join(sorted(RESERVED_NAMES))}); put it in a subfolder",
        )
    return text


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
