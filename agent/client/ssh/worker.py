"""SshWorker: agent.client.Worker on a machine reached over SSH (no agent there).

Every call is one or more channels on the target's shared connection (Link):

- the first use of a connection prepares the root folder (``<root>/Work``,
  ``Locks``, ``bin``, ``calamari``, ``Files``, 0700), uploads the executor zipapp
  once per content hash (kept on the target) and writes the ``tentacle`` shim;
- where the target has python3, a step is a frame to the connection's step helper
  (agent.client.ssh.helper_program, one channel for all the steps of the
  connection, started by the first step): it forks a keeper that takes the
  isolation mutex, records the ticket and runs the script, and relays the
  script's output and exit code, framed (agent.client.ssh.helper.StepHelper);
- else (no python3, or the helper did not start) a step is ONE channel running the
  wrapper (agent.client.ssh.remote.WRAPPER): its stdin brings the environment and
  the body, its stdout and stderr are the script's, its exit status the script's
  exit code. Either way files sent with a step go by SFTP into
  ``<root>/Work/<ticket>`` first, and both keep the same facts in the ticket's
  ``.started``;
- cancel is another channel (SIGTERM to the recorded process group, SIGKILL after
  the step's grace); capabilities one more.

A connection that drops while a step runs fails the step with ConnectionLost
("its outcome is unknown"), never with a script failure; the next call opens a
new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import secrets
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import asyncssh

import agent
from agent.client.scripts import LogChunk, ScriptOutcome, ScriptRequest
from agent.client.ssh import frames
from agent.client.ssh import remote as sh
from agent.client.ssh.connections import Link
from agent.client.ssh.helper import HelperGone, HelperRefused, StepHelper
from agent.client.worker import Progress
from agent.errors import ConnectionLost, RemoteError, TentacleError
from agent.executor_bundle import executor_bundle
from agent.protocol.services import DEFAULT_GRACE, DEFAULT_MUTEX, Uploaded

log = logging.getLogger("agent.client.ssh")

SERVICES = ("capabilities/1", "files/1", "scripts/1", "scripts/2")  # as an agent's
CHUNK = 256 * 1024
CONTROL_TIMEOUT = 60.0  # bound of the short commands (prepare, cancel, capabilities)
INSTANCE = "SshWorker"

_FAILURES = (asyncssh.Error, OSError, EOFError)  # what a dropped connection raises


class SshWorker:
    """A ``Worker`` over one shared SSH connection (see SshConnections and the module)."""

    def __init__(self, link: Link, name: str) -> None:
        self.link = link
        self.name = name

    # -- facts -----------------------------------------------------------------

    async def capabilities(self) -> dict[str, Any]:
        """What the target is (uname, the shells found, the root's free disk, python3),
        as an agent's capabilities plus ``CommunicationStyle: Ssh`` and ``Python``."""
        text = await self._control(sh.CAPABILITIES, self.link.settings.root)
        return {**sh.parse_capabilities(text, SERVICES), "CommunicationStyle": "Ssh"}

    # -- files -----------------------------------------------------------------

    async def upload(
        self,
        local: Path,
        remote: str,
        progress: Progress | None = None,
        isolation_group: str | None = None,
    ) -> dict[str, Any]:
        """Send ``local`` to ``remote`` (relative to the root) by SFTP through a
        temporary beside it, renamed over it once complete: whole or not at all.
        RemoteError refused for a path outside the root. ``isolation_group`` is not
        used: a target's steps all run as its SSH login."""
        root = await self._root()
        target = self._inside(root, remote)
        with local.open("rb") as source:  # a missing local file fails before anything is sent
            return await self._upload(source, root, target, remote, progress)

    async def _upload(
        self, source: BinaryIO, root: str, target: str, remote: str, progress: Progress | None
    ) -> dict[str, Any]:
        async with self.link.using():
            try:
                sftp = await self.link.sftp_client()
                folder, name = target.rsplit("/", 1)
                await sftp.makedirs(folder, exist_ok=True)
                await self._check_real(sftp, folder, root, remote)
                temporary = f"{folder}/.{name}.{secrets.token_hex(6)}.partial"
                try:
                    length, digest = await _send(sftp, source, temporary, progress)
                    await _replace(sftp, temporary, target)
                except BaseException:
                    with contextlib.suppress(*_FAILURES):
                        await sftp.remove(temporary)
                    raise
            except _FAILURES as error:
                raise self._lost_or_refused(error, f"sending a file to {target}") from None
        return Uploaded(target, length, digest).to_wire()

    async def download(
        self,
        remote: str,
        local: Path,
        progress: Progress | None = None,
        isolation_group: str | None = None,
    ) -> dict[str, Any]:
        """Fetch ``remote`` (inside the root) into ``local``, replaced only once
        complete; RemoteError not_found, or refused for a path outside the root.
        ``isolation_group`` is not used: an SSH target's scripts all run as one user."""
        root = await self._root()
        source = self._inside(root, remote)
        async with self.link.using():
            try:
                sftp = await self.link.sftp_client()
                await self._check_real(sftp, source, root, remote)
                length, digest = await _receive(sftp, source, local, progress)
            except asyncssh.SFTPNoSuchFile:
                raise RemoteError("not_found", f"no file at {source} on {self.name}") from None
            except _FAILURES as error:
                raise self._lost_or_refused(error, f"fetching {source}") from None
        return Uploaded(str(local), length, digest).to_wire()

    # -- scripts ---------------------------------------------------------------

    async def execute(
        self,
        request: ScriptRequest,
        on_output: Callable[[LogChunk], None],
        cancel: asyncio.Event | None = None,
    ) -> ScriptOutcome:
        """Run ``request`` in ``<root>/Work/<ticket>`` (see the module), streaming its
        lines to ``on_output`` in order; ``cancel`` set cancels it (the outcome keeps
        the real exit code). A ticket started before is not started again: its
        recorded exit code comes back (``already_finished``), or ConnectionLost says
        it is still running. ConnectionLost when the connection drops mid-step."""
        cancel = cancel or asyncio.Event()
        start = request.to_start()  # CallError(bad_params) for what the contract refuses
        ticket = sh.safe_ticket(start.ticket)
        program = sh.SYNTAXES.get(str(start.syntax))
        if program is None:
            raise RemoteError("bad_params", f"syntax {start.syntax} cannot run on SSH workers")
        root = await self._root()
        if request.files:
            await self._send_files(root, ticket, request)
        marker = f"__tentacle_body_{secrets.token_hex(16)}__"  # ends the exports, the body
        arguments = (
            root,
            ticket,
            str(start.isolation),
            sh.mutex_file(start.mutex_name or DEFAULT_MUTEX),
            f"{start.mutex_timeout:g}" if start.mutex_timeout else "",
            f"{DEFAULT_GRACE if start.grace is None else start.grace:g}",
            program,
            marker,
            *start.arguments,
        )
        environment = {**self._tentacle_variables(root), **dict(start.environment)}
        async with self.link.using():
            helper = await self._helper()
            if helper is not None:
                root, ticket, isolation, mutex, wait_for, grace, program = arguments[:7]
                fields = frames.StepFields(
                    root, ticket, isolation, mutex, wait_for, grace, program,
                    start.arguments, environment, start.body,
                )  # fmt: skip
                return await self._run_on_helper(helper, fields, on_output, cancel)
            stdin = sh.wrapper_input(environment, start.body, marker)
            async with self.link.steps:
                made = None if request.files else self._make_workspace(root, ticket)
                return await self._run_step(ticket, arguments, stdin, on_output, cancel, made)

    async def cancel(self, ticket: str) -> None:
        """SIGTERM the script ``ticket``'s process group, SIGKILL after its grace (on the
        target: returns once it is gone or killed). Nothing for a finished or unknown
        ticket."""
        try:
            sh.safe_ticket(ticket)
        except ValueError:
            return
        root = await self._root()
        await self._control(sh.CANCEL, root, ticket, timeout=None)

    async def close(self) -> None:
        """Nothing per handle: the connection is SshConnections' (closed by its close)."""

    # -- the step on the helper ---------------------------------------------------

    async def _helper(self) -> StepHelper | None:
        """The connection's step helper, started if it is not running (again, after it
        ended); None where it cannot start (remembered for the connection): the
        wrapper runs the steps then."""
        state = self.link.state
        helper = state.get("helper")
        if isinstance(helper, StepHelper) and helper.alive:
            return helper
        if state.get("no_helper") or not self.link.settings.step_helper:
            return None
        async with self.link.helper_lock:
            state = self.link.state
            helper = state.get("helper")
            if isinstance(helper, StepHelper) and helper.alive:
                return helper
            if state.get("no_helper"):
                return None
            connection = await self.link.connect()
            try:
                helper = await StepHelper.start(connection, CONTROL_TIMEOUT)
            except _FAILURES as error:  # the wrapper's way retries on a new connection
                log.info("the step helper of %s did not start: %s", self.name, _reason(error))
                return None
            if connection is not self.link.connection:
                if helper is not None:
                    helper.close()
                return None
            if helper is None:
                log.warning(
                    "%s: the step helper did not start (no python3 3.6 or later?): steps "
                    "run through the shell wrapper on this connection",
                    self.name,
                )
                self.link.state["no_helper"] = True
                return None
            self.link.state["helper"] = helper
            return helper

    async def _run_on_helper(
        self,
        helper: StepHelper,
        fields: frames.StepFields,
        on_output: Callable[[LogChunk], None],
        cancel: asyncio.Event,
    ) -> ScriptOutcome:
        ticket = fields.ticket
        lines = _Lines(on_output)
        canceller: asyncio.Task[None] | None = None
        try:
            state, code, finished = await helper.run(fields, lines.feed)
            earlier = self._earlier_outcome(ticket, state, code)
            if earlier is not None:
                return earlier
            canceller = asyncio.ensure_future(self._cancel_when(cancel, ticket))
            exit_code = await finished()
        except HelperGone as gone:
            raise self._lost(ticket, gone.reason) from None
        except frames.FrameError as error:  # nothing was sent: the caller's step is too big
            raise RemoteError("bad_params", f"{self.name}: {error}") from None
        except HelperRefused as refused:
            raise RemoteError(
                "internal",
                f"{self.name}: the step helper could not start the script {ticket}: "
                f"{refused.message} (is the root folder {self.link.settings.root} writable?)",
            ) from None
        finally:
            if canceller is not None:
                canceller.cancel()
        await lines.flush()
        if exit_code is None:
            raise RemoteError(
                "internal", f"{self.name}: the keeper of {ticket} ended without an exit code"
            )
        return ScriptOutcome(ticket, exit_code, cancel.is_set())

    def _earlier_outcome(self, ticket: str, state: str, code: int | None) -> ScriptOutcome | None:
        """What a status other than "started" means: the recorded outcome of a ticket
        that finished before; ConnectionLost for one still running from an earlier
        execute; None when it started now."""
        if state == "finished" and code is not None:
            return ScriptOutcome(ticket, code, cancelled=False, already_finished=True)
        if state == "running":
            raise ConnectionLost(
                f"{self.name}: the script {ticket} was started before (over a connection "
                "that dropped) and is still running: its outcome is unknown until it ends"
            )
        return None

    # -- the step through the wrapper ---------------------------------------------

    async def _run_step(
        self,
        ticket: str,
        arguments: tuple[str, ...],
        stdin: bytes,
        on_output: Callable[[LogChunk], None],
        cancel: asyncio.Event,
        made: Awaitable[None] | None,
    ) -> ScriptOutcome:
        """The wrapper's channel; ``made`` (the working folder's SFTP mkdir) runs while
        the target starts the wrapper, which reads its stdin, sent once it is done,
        before it enters the folder."""
        login_is_bash = bool(self.link.state.get("login_is_bash"))
        line = sh.step_command(login_is_bash, sh.WRAPPER, *arguments)
        opening = asyncio.ensure_future(self._open_process(line))
        if made is not None:
            try:
                await made
            except BaseException:
                opening.cancel()
                with contextlib.suppress(BaseException):
                    (await opening)[0].close()
                raise
        process, connection = await opening
        canceller: asyncio.Task[None] | None = None
        try:
            with contextlib.suppress(BrokenPipeError):  # a wrapper that ended early (errors)
                process.stdin.write(stdin)
                process.stdin.write_eof()
            status_line = await process.stdout.readline()
            if not status_line:  # the wrapper ended without a word: why, on its stderr
                raise await self._wrapper_failed(process, ticket)
            state, code = self._status(status_line, ticket)
            earlier = self._earlier_outcome(ticket, state, code)
            if earlier is not None:
                return earlier
            canceller = asyncio.ensure_future(self._cancel_when(cancel, ticket))
            lines = _Lines(on_output)
            await asyncio.gather(
                lines.read(process.stdout, "stdout"), lines.read(process.stderr, "stderr")
            )
            await process.wait()
        except _FAILURES as error:
            self.link.forget(connection)
            raise self._lost(ticket, error) from None
        finally:
            if canceller is not None:
                canceller.cancel()
            process.close()
        code = _exit_code(process)
        if code is None:
            self.link.forget(connection)
            raise self._lost(ticket, None)
        return ScriptOutcome(ticket, code, cancel.is_set())

    async def _cancel_when(self, cancel: asyncio.Event, ticket: str) -> None:
        await cancel.wait()
        try:
            await self.cancel(ticket)
        except TentacleError as error:  # the step's own channel reports what follows
            log.warning("cancelling %s on %s failed: %s", ticket, self.name, error)

    async def _wrapper_failed(
        self, process: asyncssh.SSHClientProcess[bytes], ticket: str
    ) -> TentacleError:
        """What to raise when the wrapper ended before saying whether it started the
        script: RemoteError with its own message, ConnectionLost if the channel went."""
        async with asyncio.timeout(CONTROL_TIMEOUT):
            said = _text(await process.stderr.read(4096)).strip()
            await process.wait()
        if _exit_code(process) is None:
            return self._lost(ticket, None)
        return RemoteError(
            "internal",
            f"{self.name}: the step wrapper of {ticket} ended ({_exit_code(process)}) "
            f"before starting the script: {said or 'it said nothing'} (is the root "
            f"folder {self.link.settings.root} writable?)",
        )

    def _status(self, line: bytes, ticket: str) -> tuple[str, int | None]:
        text = line.decode("utf-8", "replace").rstrip("\n")
        try:
            return sh.parse_status(text)
        except ValueError as error:
            raise RemoteError("internal", f"{self.name}: {error}") from None

    def _lost(self, ticket: str, error: BaseException | str | None) -> ConnectionLost:
        why = ""
        if error is not None:
            why = f" ({error if isinstance(error, str) else _reason(error)})"
        return ConnectionLost(
            f"the SSH connection to {self.name} dropped while the script {ticket} ran{why}: "
            "the script's outcome is unknown (this is not a failure of the script); "
            "executing the ticket again reports its exit code if it ended"
        )

    async def _open_process(
        self, command: str
    ) -> tuple[asyncssh.SSHClientProcess[bytes], asyncssh.SSHClientConnection]:
        """A process on the shared connection. A connection that turns out dead as the
        channel opens (nothing ran yet) is replaced once by a new one."""
        for attempt in (1, 2):
            connection = await self.link.connect()
            try:
                process = await connection.create_process(command, encoding=None)
            except asyncssh.ChannelOpenError as error:
                if attempt == 2 or error.code != asyncssh.OPEN_CONNECT_FAILED:
                    raise ConnectionLost(
                        f"{self.name} refused a new SSH channel: {_reason(error)} (its sshd's "
                        "MaxSessions may be below what SshConnections opens at once)"
                    ) from None
                self.link.forget(connection)
            except _FAILURES as error:
                self.link.forget(connection)
                if attempt == 2:
                    raise ConnectionLost(f"{self.name}: {_reason(error)}") from None
            else:
                return process, connection
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the root, the bundle, the shim ------------------------------------------

    async def _root(self) -> str:
        """The root's absolute path on the target, prepared once per connection."""
        await self.link.connect()
        state = self.link.state
        if "root" not in state:
            async with self.link.prepare_lock:
                if "root" not in self.link.state:
                    await self._prepare()
        return str(self.link.state["root"])

    async def _prepare(self) -> None:
        probe = sh.LOGIN_PROBE + sh.command(sh.PREPARE, self.link.settings.root)
        root, login_is_bash = sh.parse_prepared(await self._control_line(probe))
        if not root:
            raise RemoteError(
                "internal", f"{self.name}: could not make the root {self.link.settings.root}"
            )
        bundle = await asyncio.to_thread(executor_bundle)
        path = f"{root}/{sh.BUNDLES}/{bundle.file_name}"
        async with self.link.using():
            try:
                sftp = await self.link.sftp_client()
                if not await sftp.exists(path):
                    partial = f"{path}.{secrets.token_hex(4)}.partial"
                    async with sftp.open(partial, "wb") as file:
                        await file.write(bundle.data)
                    await _replace(sftp, partial, path)
            except _FAILURES as error:
                raise self._lost_or_refused(error, "sending the executor bundle") from None
        shim = sh.SHIM_TEXT.format(bundle=shlex.quote(path))
        await self._control(sh.INSTALL_SHIM, f"{root}/{sh.SHIM}", shim)
        self.link.state["login_is_bash"] = login_is_bash
        self.link.state["root"] = root

    def _tentacle_variables(self, root: str) -> dict[str, str]:
        files = f"{root}/{sh.FILES}"
        return {
            "TentacleHome": root,
            "TentacleApplications": f"{files}/Applications",
            "TentacleJournal": f"{files}/DeploymentJournal.json",
            "TentacleInstanceName": INSTANCE,
            "TentacleVersion": agent.__version__,
            "TentacleExecutablePath": f"{root}/{sh.SHIM}",
        }

    async def _make_workspace(self, root: str, ticket: str) -> None:
        """``<root>/Work/<ticket>`` (0700) by SFTP: no process on the target. One made
        before (an earlier execute of the ticket) stays: the wrapper tells what ran."""
        folder = f"{root}/{sh.WORK}/{ticket}"
        try:
            sftp = await self.link.sftp_client()
            attributes = asyncssh.SFTPAttrs(permissions=0o700)
            try:
                await sftp.mkdir(folder, attributes)
            except asyncssh.SFTPNoSuchFile:  # Work/ went since the connection prepared it
                await sftp.makedirs(folder, attributes, exist_ok=True)
            except asyncssh.SFTPFailure:  # it exists
                pass
        except _FAILURES as error:
            raise self._lost_or_refused(error, f"making the working folder of {ticket}") from None

    async def _send_files(self, root: str, ticket: str, request: ScriptRequest) -> None:
        folder = f"{root}/{sh.WORK}/{ticket}"
        names = []
        for name, local in request.files:
            safe = sh.workspace_name(name)
            if safe is None:
                raise RemoteError(
                    "bad_params", f"file {name!r} would land outside the script's workspace"
                )
            names.append((safe, local))
        async with self.link.using():
            try:
                await self._make_workspace(root, ticket)
                sftp = await self.link.sftp_client()
                if await sftp.exists(f"{folder}/.started"):
                    return  # started before: the wrapper reports it, the files stay as sent
                for name, local in names:
                    target = f"{folder}/{name}"
                    if "/" in name:
                        await sftp.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                    with local.open("rb") as source:
                        await _send(sftp, source, target, None)
            except _FAILURES as error:
                raise self._lost_or_refused(error, f"sending the files of {ticket}") from None

    # -- helpers -----------------------------------------------------------------

    async def _control(
        self, text: str, *arguments: str, timeout: float | None = CONTROL_TIMEOUT
    ) -> str:
        """Run a short command to its end; its stdout. RemoteError if it failed."""
        return await self._control_line(sh.command(text, *arguments), timeout)

    async def _control_line(self, line: str, timeout: float | None = CONTROL_TIMEOUT) -> str:
        async with self.link.using(), self.link.control:
            process, connection = await self._open_process(line)
            try:
                async with asyncio.timeout(timeout):
                    done = await process.wait()
            except _FAILURES as error:
                self.link.forget(connection)
                raise ConnectionLost(f"{self.name}: {_reason(error)}") from None
            except TimeoutError:
                process.close()
                raise ConnectionLost(f"{self.name} did not answer within {timeout:g} s") from None
        if done.exit_status != 0:
            stderr = _text(done.stderr).strip()
            raise RemoteError(
                "internal", f"{self.name}: a command failed ({done.exit_status}): {stderr}"
            )
        return _text(done.stdout)

    def _inside(self, root: str, path: str) -> str:
        inside = sh.within(root, path)
        if inside is None:
            raise RemoteError(
                "refused",
                f"{path!r} is outside the SSH worker's folder {root}: files move only "
                "inside it (a path relative to it, or an absolute one within it)",
            )
        return inside

    async def _check_real(
        self, sftp: asyncssh.SFTPClient, path: str, root: str, given: str
    ) -> None:
        """Refuse a path whose links lead out of the root (the server resolves them)."""
        try:
            real = await sftp.realpath(path)
            real_root = await sftp.realpath(root)
        except asyncssh.SFTPNoSuchFile:
            raise
        if real != real_root and not str(real).startswith(str(real_root).rstrip("/") + "/"):
            raise RemoteError(
                "refused", f"{given!r} leads to {real}, outside the SSH worker's folder {root}"
            )

    def _lost_or_refused(self, error: BaseException, doing: str) -> TentacleError:
        if isinstance(error, asyncssh.SFTPError):
            return RemoteError("refused", f"{self.name}: {doing} failed: {_reason(error)}")
        return ConnectionLost(f"{self.name}: {doing} failed: {_reason(error)}")


class _Lines:
    """Turns a channel's bytes into LogChunks, one sequence across stdout and stderr."""

    def __init__(self, on_output: Callable[[LogChunk], None]) -> None:
        self.on_output = on_output
        self.last = 0
        drained = getattr(on_output, "drained", None)
        self.drained: Callable[[], Awaitable[Any]] | None = drained
        self.partial = {"stdout": b"", "stderr": b""}  # a line begun, by source

    async def read(self, stream: asyncssh.SSHReader[bytes], source: str) -> None:
        while chunk := await stream.read(CHUNK):
            await self.feed(source, chunk)
        await self.flush(source)

    async def feed(self, source: str, chunk: bytes) -> None:
        """``chunk`` of ``source``'s bytes: its whole lines delivered, the rest kept."""
        *lines, self.partial[source] = (self.partial[source] + chunk).split(b"\n")
        if lines:
            await self._deliver(source, lines)

    async def flush(self, *sources: str) -> None:
        """The last line of each source (all by default), if it had no newline."""
        for source in sources or tuple(self.partial):
            if self.partial[source]:
                line, self.partial[source] = self.partial[source], b""
                await self._deliver(source, [line])

    async def _deliver(self, source: str, lines: list[bytes]) -> None:
        texts = [line.decode("utf-8", "replace").removesuffix("\r") for line in lines]
        first = self.last + 1
        self.last += len(texts)
        now = datetime.datetime.now(datetime.UTC)
        self.on_output(LogChunk(source, first, texts, now))
        if self.drained is not None:
            await self.drained()


def _exit_code(process: asyncssh.SSHClientProcess[bytes]) -> int | None:
    """The wrapper's exit status (the script's), 128+N for a signal; None when the
    channel closed without either (the connection dropped)."""
    if process.exit_status is not None and process.exit_status >= 0:
        return int(process.exit_status)
    signal_info = process.exit_signal
    if signal_info is not None:
        number = _SIGNALS.get(str(signal_info[0]), 0)
        return 128 + number
    return None


_SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "PIPE": 13, "TERM": 15}


def _text(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""


def _data(chunk: bytes | str) -> bytes:
    return chunk if isinstance(chunk, bytes) else chunk.encode()


def _reason(error: BaseException | None) -> str:
    if isinstance(error, asyncssh.Error):
        return error.reason or type(error).__name__
    return str(error) or type(error).__name__


async def _send(
    sftp: asyncssh.SFTPClient, source: BinaryIO, target: str, progress: Progress | None
) -> tuple[int, str]:
    digest = hashlib.sha256()
    length = 0
    async with sftp.open(target, "wb", asyncssh.SFTPAttrs(permissions=0o600)) as file:
        while chunk := source.read(CHUNK * 4):
            digest.update(chunk)
            await file.write(chunk)
            length += len(chunk)
            if progress is not None:
                progress(length)
    return length, digest.hexdigest()


async def _receive(
    sftp: asyncssh.SFTPClient, source: str, local: Path, progress: Progress | None
) -> tuple[int, str]:
    digest = hashlib.sha256()
    length = 0
    temporary = local.with_name(f".{local.name}.{secrets.token_hex(6)}.partial")
    try:
        async with sftp.open(source, "rb") as file:
            with temporary.open("xb") as copy:
                while chunk := _data(await file.read(CHUNK * 4)):
                    digest.update(chunk)
                    copy.write(chunk)
                    length += len(chunk)
                    if progress is not None:
                        progress(length)
        temporary.replace(local)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return length, digest.hexdigest()


async def _replace(sftp: asyncssh.SFTPClient, temporary: str, target: str) -> None:
    """Rename ``temporary`` over ``target`` atomically (OpenSSH's posix-rename)."""
    try:
        await sftp.posix_rename(temporary, target)
    except asyncssh.SFTPOpUnsupported:
        await sftp.rename(temporary, target, flags=asyncssh.FXR_OVERWRITE)
