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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from agent.client.agent_client import AgentClient, _forget, retrying
from agent.errors import ProtocolError, UnsupportedFeature
from agent.protocol.services import (
    DEFAULT_GRACE,
    DEFAULT_MUTEX,
    ENVIRONMENT_SERVICE,
    CancelScriptRequest,
    CompleteScriptRequest,
    Isolation,
    ScriptFile,
    ScriptStatus,
    ScriptStatusRequest,
    StartScriptRequest,
    State,
    Syntax,
)

FIRST_POLL = 0.05
MAX_POLL = 2.0
POLL_GROWTH = 1.5


@dataclass(frozen=True)
class ScriptRequest:
    """A script to run; ``files`` are (name in the workspace, local file) pairs.

    ``environment`` is added to the script's process environment (names
    ``[A-Za-z_][A-Za-z0-9_]*``, not the agent's own ``Tentacle*`` variables, values
    without NUL, bounded: agent.protocol.services.MAX_ENVIRONMENT_*). Executing a
    request with one on an agent that does not list ``scripts/2`` raises
    UnsupportedFeature before anything is sent: an older agent would ignore it."""

    body: str
    syntax: str = "bash"
    arguments: Sequence[str] = ()
    files: Sequence[tuple[str, Path]] = ()
    isolation: str = "full"
    mutex_name: str | None = None
    mutex_timeout: float | None = None
    grace: float | None = None
    task_id: str = ""
    isolation_group: str | None = None  # whose uid it runs as; None: the default group
    ticket: str = field(default_factory=lambda: secrets.token_hex(16))
    wait: float = 1.0
    # Variables for the script's process only (a deployment's one-time password, say):
    # the agent never writes them to disk; sent only to an agent that takes them
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)

    def to_start(self) -> StartScriptRequest:
        """The scripts.start request (the files' lengths read now); raises
        CallError(bad_params), as the agent would, for a value the contract does not
        allow (a Syntax or Isolation it does not know, a negative Grace...)."""
        # The texts become a Syntax and an Isolation (or a bad_params) in checked().
        return StartScriptRequest(
            ticket=self.ticket,
            body=self.body,
            syntax=cast(Syntax, self.syntax),
            arguments=tuple(self.arguments),
            files=tuple(ScriptFile(name, path.stat().st_size) for name, path in self.files),
            isolation=cast(Isolation, self.isolation),
            mutex_name=self.mutex_name or DEFAULT_MUTEX,
            mutex_timeout=self.mutex_timeout,
            task_id=self.task_id,
            isolation_group=self.isolation_group,
            grace=DEFAULT_GRACE if self.grace is None else self.grace,
            wait=self.wait,
            environment=tuple(sorted(dict(self.environment).items())),
        ).checked()


class LogChunk:
    """Consecutive log lines of one source: ``first`` is the first line's sequence number.

    Delivered in chunks, not line by line, so that a script printing a
    gigabyte costs the caller a few thousand calls, not millions. The lines are
    there as ``lines`` and as ``text`` (joined by newlines), each made from the
    other only when first asked for: splitting 4 MiB of short lines costs more than
    receiving them, and a caller that writes the text out needs no list of lines.
    Read-only: neither is to be changed in place.
    """

    __slots__ = ("_lines", "_text", "first", "occurred", "source")

    def __init__(
        self, source: str, first: int, lines: list[str], occurred: datetime.datetime
    ) -> None:
        self.source = source
        self.first = first
        self.occurred = occurred
        self._lines: list[str] | None = lines
        self._text: str | None = None

    @classmethod
    def of_text(cls, source: str, first: int, text: str, occurred: datetime.datetime) -> LogChunk:
        """The chunk of the lines ``text`` holds, split at newlines (none at its end)."""
        chunk = cls(source, first, [], occurred)
        chunk._lines, chunk._text = None, text
        return chunk

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = cast(str, self._text).split("\n")
        return self._lines

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = "\n".join(cast(list[str], self._lines))
        return self._text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogChunk):
            return NotImplemented
        return (self.source, self.first, self.lines, self.occurred) == (
            other.source, other.first, other.lines, other.occurred,
        )  # fmt: skip

    def __hash__(self) -> int:
        return hash((self.source, self.first, self.occurred))

    def __repr__(self) -> str:
        return f"LogChunk({self.source!r}, {self.first}, {self.lines!r}, {self.occurred!r})"


@dataclass(frozen=True)
class ScriptOutcome:
    """``already_finished``: the ticket had run and been completed before this call, so
    only its exit code came back (its log went with its workspace)."""

    ticket: str
    exit_code: int
    cancelled: bool
    already_finished: bool = False


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
    # A completed ticket answers its start with its outcome and no logs, though it had
    # some (NextLogSequence > 0); a script that just ran comes with its lines. (One that
    # printed nothing looks the same either way: nothing is lost by not telling them apart.)
    already_finished = (
        status.reply.finished and not status.reply.logs and status.reply.next_sequence > 0
    )
    last = 0
    delay = FIRST_POLL
    cancel_sent = False
    while True:
        finished = status.reply.finished
        # While output flows, ask for the next lines before handing these over,
        # so that the agent reads while the caller writes.
        upcoming = None
        if status.reply.logs and not finished and not cancel.is_set():
            following = status.reply.next_sequence
            upcoming = asyncio.ensure_future(
                _resilient(client, _poll(client, "status", request.ticket, following))
            )
        try:
            if upcoming is not None:
                await _sent_ahead()
            last = _deliver(status, last, on_output)
            await _drained(on_output)
        except BaseException:
            if upcoming is not None:
                upcoming.cancel()
                upcoming.add_done_callback(_forget)  # it may have failed already
            raise
        if finished:
            break
        if upcoming is not None:
            status = await upcoming
            delay = FIRST_POLL
            continue
        await _pause(delay, cancel, cancel_sent)
        delay = min(delay * POLL_GROWTH, MAX_POLL)
        state = status.reply.state
        method = "cancel" if cancel.is_set() and state != State.COMPLETE else "status"
        cancel_sent |= method == "cancel"
        status = await _resilient(client, _poll(client, method, request.ticket, last))
    # Releasing the workspace needs no answer (Tentacle's clients do not retry it)
    complete = CompleteScriptRequest(request.ticket)
    client.send("scripts", "complete", complete.to_wire())
    exit_code = status.reply.exit_code
    if exit_code is None:
        raise ProtocolError(f"script {request.ticket} is Complete without an ExitCode")
    return ScriptOutcome(request.ticket, exit_code, cancel.is_set(), already_finished)


@dataclass(frozen=True)
class _Answer:
    """A status reply, and the log bytes that came on its stream (StreamLogs)."""

    reply: ScriptStatus
    data: bytes = b""


def _poll(client: AgentClient, method: str, ticket: str, last: int) -> Callable[[], Awaitable[Any]]:
    """A status (or cancel) call; status logs come as bytes on a stream, for speed."""

    async def call() -> _Answer:
        if method == "cancel":
            params = CancelScriptRequest(ticket, last).to_wire()
            return _Answer(ScriptStatus.parse_reply(await client.call("scripts", method, params)))
        channel = await client.connect()
        request = ScriptStatusRequest(ticket, last, stream_logs=True)
        result = await channel.call("scripts", method, request.to_wire())
        data = b"".join([chunk async for chunk in result.stream]) if result.stream else b""
        return _Answer(ScriptStatus.parse_reply(result.value), data)

    return call


async def _start(client: AgentClient, request: ScriptRequest) -> _Answer:
    params = request.to_start().to_wire()
    channel = await client.connect()
    if request.environment:
        check_takes_environment(channel.peer_services, channel.peer_name)
    upload = _concatenated([path for _, path in request.files]) if request.files else None
    result = await channel.call("scripts", "start", params, upload=upload)
    return _Answer(ScriptStatus.parse_reply(result.value))


def takes_environment(services: Sequence[str]) -> bool:
    """Whether a peer listing ``services`` (hello's, or SupportedCapabilities) passes a
    start's Environment to the script, rather than ignoring it as scripts/1 does."""
    return ENVIRONMENT_SERVICE in services


def check_takes_environment(services: Sequence[str], who: str) -> None:
    """UnsupportedFeature unless the peer takes a start's Environment."""
    if not takes_environment(services):
        served = ", ".join(s for s in services if s.startswith("scripts/")) or "no scripts service"
        raise UnsupportedFeature(
            f"the agent {who} does not take a script's Environment (it serves {served}; "
            f"{ENVIRONMENT_SERVICE} is needed): not started, since an older agent would run "
            "the script without it; upgrade the agent"
        )


async def _concatenated(paths: list[Path]) -> AsyncIterator[bytes]:
    for path in paths:
        with path.open("rb") as file:
            while chunk := file.read(256 * 1024):
                yield chunk


def _deliver(status: _Answer, last: int, on_output: Callable[[LogChunk], None]) -> int:
    """Hand the status's new lines to ``on_output``; returns the last sequence seen."""
    data, offset = status.data, 0
    for run in status.reply.logs:
        if run.text is not None:
            text = run.text
        else:
            text = str(memoryview(data)[offset : offset + run.length], "utf-8", "replace")
            offset += run.length
        skip = max(0, last + 1 - run.sequence)  # handed over already (a call made again)
        if run.count > skip:
            if skip:
                text = text.split("\n", skip)[-1]
            first = run.sequence + skip
            occurred = datetime.datetime.fromisoformat(run.occurred)
            on_output(LogChunk.of_text(run.source, first, text, occurred))
            last = first + run.count - skip - 1
    return max(last, status.reply.next_sequence)


async def _sent_ahead() -> None:
    """Let a status call just scheduled go out before this page is handed over: one turn
    of the loop for the call to queue its frame, one for the channel's writer to give it
    to the socket (asyncio runs ready callbacks in order). Otherwise the agent would
    read the next page only once this one is delivered, not meanwhile (P3: 0.46 -> 0.57
    of raw). Only speed depends on it: a call that needs longer (a dial) goes later."""
    for _ in range(2):
        await asyncio.sleep(0)


async def _drained(on_output: Callable[[LogChunk], None]) -> None:
    """Backpressure: a caller that stores lines slower than they come gives
    ``on_output`` an async ``drained()`` method, awaited after each delivery before
    more output is asked for (one status call may already be on its way), so that
    a script printing a gigabyte never sits in the caller's memory."""
    drained = getattr(on_output, "drained", None)
    if drained is not None:
        await drained()


async def _pause(delay: float, cancel: asyncio.Event, cancel_sent: bool) -> None:
    """Wait before the next status call; a new cancel request cuts the wait short."""
    if cancel_sent:
        await asyncio.sleep(delay)
        return
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result of a
    # wait that ended as the task was cancelled, losing the cancellation (bpo-42130),
    # and run-script's second Ctrl-C comes right after the first has set ``cancel``
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await cancel.wait()


async def _resilient(client: AgentClient, call: Callable[[], Any]) -> _Answer:
    """Repeat an idempotent call through dropped connections, under ``client.retry``."""
    result: _Answer = await retrying(client.retry, call)
    return result
