"""StepHelper: a connection's step helper (agent.client.ssh.helper_program) and its steps.

One channel per connection runs the helper; every step is a frame on its stdin,
its status, output and exit code frames on its stdout, read by one task that
hands them to the step they belong to. When the channel ends (the connection
dropped, or the helper died) every step still running fails with ConnectionLost
("its outcome is unknown"): their keepers go on on the target and record their
exit codes, which a re-execute of the ticket reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncssh

from agent.client.ssh import frames
from agent.client.ssh.helper_program import PROGRAM

log = logging.getLogger("agent.client.ssh")

CHUNK = 256 * 1024
_FAILURES = (asyncssh.Error, OSError, EOFError)


class HelperGone(Exception):
    """The helper's channel ended while a step waited on it (``reason`` says how)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HelperRefused(Exception):
    """The helper could not run a step (``message``: its keeper's reason); the step
    did not start."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


Deliver = Callable[[str, bytes], Awaitable[None]]  # (stdout|stderr, bytes) -> delivered


@dataclass
class _Step:
    deliver: Deliver
    status: asyncio.Future[tuple[str, int | None]]
    done: asyncio.Future[int | None]
    failed: BaseException | None = None  # its delivery raised: the rest of its output goes


@dataclass
class StepHelper:
    """A running helper on ``connection`` (see the module). ``start`` makes one."""

    process: asyncssh.SSHClientProcess[bytes]
    connection: asyncssh.SSHClientConnection
    python: str
    decoder: frames.FrameDecoder
    steps: dict[int, _Step] = field(default_factory=dict)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    reader: asyncio.Task[None] | None = None
    gone: str | None = None  # why the channel ended, once it did

    @classmethod
    async def start(
        cls, connection: asyncssh.SSHClientConnection, timeout: float
    ) -> StepHelper | None:
        """The helper running on ``connection``, or None when it does not start there
        (no python3, too old, anything but its hello within ``timeout``: the wrapper
        runs the steps then). Connection failures propagate (the caller's to handle)."""
        program = PROGRAM.encode()
        process = await connection.create_process(frames.boot_command(program), encoding=None)
        decoder = frames.FrameDecoder()
        try:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(program)
            async with asyncio.timeout(timeout):
                hello = await _first_frame(process, decoder)
            python = frames.parse_hello(hello.data) if hello is not None else None
        except (TimeoutError, frames.FrameError, *_FAILURES) as error:
            log.info("the step helper did not start: %s", error or type(error).__name__)
            python = None
        if python is None:
            process.close()
            return None
        helper = cls(process, connection, python, decoder)
        helper.reader = asyncio.ensure_future(helper._read())
        return helper

    @property
    def alive(self) -> bool:
        return self.gone is None

    async def run(
        self, fields: frames.StepFields, deliver: Deliver
    ) -> tuple[str, int | None, Callable[[], Awaitable[int | None]]]:
        """Send the step; its status ("started", "finished", "running": remote's) and
        code, and what awaits its exit code (None: none was recorded). HelperGone
        when the channel ends first, HelperRefused when the keeper could not run it,
        FrameError (nothing sent) for a step larger than the helper takes."""
        if self.gone is not None:
            raise HelperGone(self.gone)
        number = next(self.numbers)
        request = frames.run_frame(number, fields)
        loop = asyncio.get_running_loop()
        step = _Step(deliver, loop.create_future(), loop.create_future())
        self.steps[number] = step
        try:
            self.process.stdin.write(request)
        except _FAILURES as error:
            self.steps.pop(number, None)
            raise HelperGone(_reason(error)) from None
        try:
            state, code = await step.status
        except asyncio.CancelledError:
            self.steps.pop(number, None)  # given up on: its output goes nowhere
            raise

        async def finished() -> int | None:
            try:
                return await step.done
            except asyncio.CancelledError:
                self.steps.pop(number, None)
                raise

        return state, code, finished

    def close(self) -> None:
        self.process.close()

    async def _read(self) -> None:
        reason = "the step helper's channel closed"
        try:
            while chunk := await self.process.stdout.read(CHUNK):
                for frame in self.decoder.feed(chunk):
                    await self._dispatch(frame)
            status = self.process.exit_status
            if status is not None and status >= 0:
                reason = f"the step helper ended ({status})"
        except frames.FrameError as error:
            reason = str(error)
        except _FAILURES as error:
            reason = _reason(error)
        finally:
            self.gone = reason
            self.process.close()
            for step in self.steps.values():
                _fail(step, HelperGone(reason))
            self.steps.clear()

    async def _dispatch(self, frame: frames.Frame) -> None:
        step = self.steps.get(frame.step)
        if step is None:
            return  # a step given up on (its caller was cancelled)
        if frame.kind == frames.STATUS:
            state, code, message = frames.parse_status(frame.data)
            if not step.status.done():
                if state == "failed":
                    step.status.set_exception(HelperRefused(message))
                else:
                    step.status.set_result((state, code))
        elif frame.kind in (frames.STDOUT, frames.STDERR):
            if step.failed is None:
                source = "stdout" if frame.kind == frames.STDOUT else "stderr"
                try:
                    await step.deliver(source, frame.data)
                except Exception as error:  # the caller's; its step fails with it
                    step.failed = error
        elif frame.kind == frames.EXIT:
            code = frames.parse_exit(frame.data)
            del self.steps[frame.step]
            if not step.status.done():
                step.status.set_exception(HelperRefused("its keeper ended without a word"))
            if step.failed is not None:
                step.done.set_exception(step.failed)
            elif not step.done.done():
                step.done.set_result(code)


def _fail(step: _Step, error: BaseException) -> None:
    for future in (step.status, step.done):
        if not future.done():
            future.set_exception(error)
            future.exception()  # retrieved: a step that never awaits it is not an error


async def _first_frame(
    process: asyncssh.SSHClientProcess[bytes], decoder: frames.FrameDecoder
) -> frames.Frame | None:
    """The helper's first frame (its hello); None if the channel ends first."""
    while chunk := await process.stdout.read(CHUNK):
        found = decoder.feed(chunk)
        if found:
            if found[0].kind != frames.HELLO_KIND or len(found) > 1:
                raise frames.FrameError(f"expected the step helper's hello, got {found[0]}")
            return found[0]
    return None


def _reason(error: BaseException) -> str:
    if isinstance(error, asyncssh.Error):
        return error.reason or type(error).__name__
    return str(error) or type(error).__name__
