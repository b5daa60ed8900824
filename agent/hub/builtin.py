"""The hub's built-in worker: steps run on the hub's own machine, as Octopus's do.

``BuiltinWorker`` implements ``agent.client.Worker`` over the agent's own
durable script runner (``agent.scripts``), in ``<hub home>/BuiltinWorker/``:
``Work/`` holds the scripts' workspaces, ``Files/`` what steps keep (uploads,
the applications and journal of deployments). Durable like any agent: the
scripts run in sessions of their own, their output goes to files, so a hub
killed mid-script finds them again at its next start, and executing the same
ticket follows the script already running (its lines numbered as before).

Files move only inside the worker's folder (paths are checked by the agent's own
rule, ``agent.scripts.paths.resolve_within``); ``Work/`` is written by the
script runner alone, and the folder's lock file is never read or written.

With a user (``BuiltinWorkerUser``) the scripts run as that unprivileged account:
its uid, gid and groups, its HOME, in workspaces it owns (0700). The hub then
needs to be root; its home becomes searchable (0711) so that the account can
reach its own folders in it, and every file of the hub's stays 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import os
import platform
import pwd
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from agent.atomicfile import temporary_beside
from agent.client import LogChunk, Progress, ScriptOutcome, ScriptRequest
from agent.errors import CallError, ConfigError, RemoteError
from agent.hub.home import HomeLock
from agent.scripts import users
from agent.scripts.manager import ScriptManager, ScriptSettings, Status
from agent.scripts.paths import open_folder, parts_below, resolve_within, workspace_file_name
from agent.scripts.runner import PROGRAMS, Account, hand_over, installed_executable
from agent.scripts.state import COMPLETE, ScriptSpec

log = logging.getLogger("agent.hub.builtin")

FOLDER = "BuiltinWorker"
WORK = "Work"
FILES = "Files"
NAME = "BuiltinWorker"  # TentacleInstanceName, and how logs name it
SERVICES = ("capabilities/1", "files/1", "scripts/1", "scripts/2")  # what an agent advertises
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
CHUNK = 1024 * 1024
FIRST_POLL = 0.05  # seconds between status reads while a script prints nothing...
MAX_POLL = 0.5  # ...growing to this; its end is waited for, not polled
POLL_GROWTH = 1.5
REMEDY = "the built-in worker's files stay inside its folder"
PRIVATE_MODE, SEARCHABLE_MODE = 0o700, 0o711
# The only variables of the hub's environment steps get (an allow-list: the hub's
# may hold its API key, a database password, cloud credentials...); the account's
# HOME, USER, LOGNAME and SHELL come from the step user's entry when there is one
PASSED_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR")
PASSED_PREFIXES = ("LC_",)
ACCOUNT_VARIABLES = ("HOME", "USER", "LOGNAME", "SHELL")


def find_account(user: str) -> tuple[Account, pwd.struct_passwd]:
    """The account ``user`` names, to run steps as; ConfigError when there is no such
    user, when it is root, or when this process cannot switch to it (not root)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(
            f"BuiltinWorkerUser: there is no user {user!r} on this machine; expected an "
            "existing unprivileged user (e.g. `useradd --system tentacle-steps`), or none"
        ) from None
    if entry.pw_uid == 0:
        raise ConfigError(
            f"BuiltinWorkerUser: {user!r} is root; expected an unprivileged user, "
            "so that steps cannot read the hub's files"
        )
    if os.geteuid() != 0:
        raise ConfigError(
            f"BuiltinWorkerUser {user!r}: running steps as another user needs the hub to "
            f"run as root, and it runs as uid {os.geteuid()}; start it as root, or serve "
            "without --builtin-worker-user (`tentacle hub configure --builtin-worker-user ''`)"
        )
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Account(entry.pw_uid, entry.pw_gid, groups), entry


def check_user(hub_home: Path, user: str) -> tuple[Account, pwd.struct_passwd]:
    """``find_account``, and ConfigError unless that account may search every folder
    above ``hub_home`` (the built-in worker makes the home itself searchable)."""
    account, entry = find_account(user)
    _check_reachable(hub_home, account, user)
    return account, entry


def step_environment(
    base: Mapping[str, str],
    folder: Path,
    version: str,
    executable: str,
    entry: pwd.struct_passwd | None,
) -> dict[str, str]:
    """What steps get: of the hub's environment ``base`` only PATH, LANG, LANGUAGE,
    LC_*, TZ and TMPDIR (and, without a user, the hub account's HOME, USER, LOGNAME,
    SHELL), nothing else; the Tentacle variables an agent sets; with a user that
    user's HOME, USER, LOGNAME, SHELL."""
    passed = PASSED_VARIABLES if entry is not None else PASSED_VARIABLES + ACCOUNT_VARIABLES
    environment = {
        key: value
        for key, value in base.items()
        if key in passed or key.startswith(PASSED_PREFIXES)
    }
    environment.setdefault("PATH", DEFAULT_PATH)
    if entry is not None:
        environment.update(
            HOME=entry.pw_dir,
            USER=entry.pw_name,
            LOGNAME=entry.pw_name,
            SHELL=entry.pw_shell or "/bin/sh",
        )
    files = folder / FILES
    environment.update(
        TentacleHome=str(folder),
        TentacleApplications=str(files / "Applications"),
        TentacleInstanceName=NAME,
        TentacleVersion=version,
        TentacleExecutablePath=executable,
        TentacleJournal=str(files / "DeploymentJournal.json"),
    )
    return environment


class BuiltinWorker:
    """A ``Worker`` on the hub's machine (see the module's docstring). ``start`` before
    use, ``stop`` after; one per hub home (its folder's lock refuses a second)."""

    def __init__(
        self,
        hub_home: Path,
        user: str | None = None,
        *,
        version: str = "",
        environment: Mapping[str, str] | None = None,
        executable: str | None = None,
        script_users: bool = False,
        uid_range: tuple[int, int] = (60928, 61183),
    ) -> None:
        """``script_users``: steps run as their isolation group's uid (from ``uid_range``)
        when no ``user`` is given, by an agent's rule (agent.scripts.users)."""
        self.hub_home = hub_home
        self.script_users = script_users
        self.uid_range = uid_range
        self.policy = users.Policy()
        self.folder = hub_home / FOLDER
        self.user = user
        self.version = version
        self._base_environment = dict(environment or {})
        self.executable = executable or installed_executable()
        self.account: Account | None = None
        self._manager: ScriptManager | None = None
        self._lock = HomeLock(self.folder)
        self._environment: dict[str, str] = {}

    # -- life cycle ----------------------------------------------------------

    async def start(self) -> None:
        """Check the user (ConfigError naming what is wrong), take the folder's lock,
        lay the folders out and re-attach to every script a previous run left."""
        entry = None
        if self.user is not None:
            self.account, entry = check_user(self.hub_home, self.user)
        self.folder.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self._lay_out()
            if self.user is None and self.script_users:
                # its launcher is tried as nobody, a process or two: not on the loop
                await asyncio.to_thread(self._isolate)
            self._environment = step_environment(
                self._base_environment, self.folder, self.version, self.executable, entry
            )
            if self.policy.users is not None:  # the hub's account is no step's
                for name in ACCOUNT_VARIABLES:
                    self._environment.pop(name, None)
            settings = ScriptSettings(
                self.folder / WORK,
                self._environment,
                account=self.account,
                users=self.policy.users,
                refuse_groups=self.policy.refuse_groups,
            )
            manager = ScriptManager(settings)
            await manager.open()
        except BaseException:
            self._lock.release()
            raise
        self._manager = manager
        as_whom = f"as {self.user}" if self.user else "as the hub's own user"
        if self.policy.users is not None:
            as_whom = "as their isolation group's uid"
        log.info("built-in worker ready in %s (steps run %s)", self.folder, as_whom)

    async def stop(self) -> None:
        """Stop watching; running scripts carry on, the next start re-attaches them."""
        if self._manager is not None:
            await self._manager.close()
            self._manager = None
        self._lock.release()

    def _isolate(self) -> None:
        """Steps as their groups' uids (agent.scripts.users.policy): the hub's home is made
        searchable for them; without the privilege, groups are refused (warned here)."""
        off = "`tentacle hub configure --builtin-worker-script-users false`"
        self.hub_home.chmod(SEARCHABLE_MODE)
        self.policy = users.policy(self.folder, True, self.uid_range, NAME, off, self.executable)
        if self.policy.executable is not None:
            self.executable = self.policy.executable
        if self.policy.users is None:
            self.hub_home.chmod(PRIVATE_MODE)
            log.warning("the built-in worker runs steps as the hub's own user, and steps of an "
                        "isolation group are refused: %s", self.policy.refuse_groups)  # fmt: skip

    def _lay_out(self) -> None:
        """The folders and their modes: private to the hub without a user; with one,
        searchable down to the account's own folders, which only it may use."""
        work, files = self.folder / WORK, self.folder / FILES
        work.mkdir(mode=PRIVATE_MODE, exist_ok=True)
        files.mkdir(mode=PRIVATE_MODE, exist_ok=True)
        account = self.account
        mode = PRIVATE_MODE if account is None else SEARCHABLE_MODE
        for folder in (self.hub_home, self.folder, work):
            folder.chmod(mode)
        files.chmod(PRIVATE_MODE)
        if account is not None and files.stat().st_uid != account.uid:
            hand_over(files, account)  # what an earlier run (as the hub) kept there

    # -- Worker ----------------------------------------------------------------

    async def capabilities(self) -> dict[str, Any]:
        """The document an agent answers, for this machine."""
        path = self._environment.get("PATH", DEFAULT_PATH)
        shells = [s for s, program in PROGRAMS.items() if shutil.which(program, path=path)]
        return {
            "SupportedCapabilities": list(SERVICES),
            "AgentVersion": self.version,
            "OS": platform.system(),
            "OSVersion": platform.release(),
            "Architecture": platform.machine(),
            "Shells": shells,
            "FreeDiskBytes": shutil.disk_usage(self.folder).free,
            "Cpus": psutil.cpu_count() or 1,
            "MemoryBytes": psutil.virtual_memory().total,
            "ScriptIsolation": self.policy.isolation,
        }

    async def upload(
        self,
        local: Path,
        remote: str,
        progress: Progress | None = None,
        isolation_group: str | None = None,
    ) -> dict[str, Any]:
        """Copy ``local`` to ``remote`` (relative to the worker's folder), whole or not
        at all; RemoteError refused for a path outside the folder, in ``Work/``, the
        folder's lock, or that is not a regular file."""
        with _remote_errors():
            group = self._group(isolation_group)
            if group is not None:  # the group's own folder (its steps' TentacleHome)
                root = group.folder.resolve()
                target = resolve_within(remote, root, (), REMEDY)
                owner = Account(group.uid, group.gid, ())
                length, digest = await asyncio.to_thread(_copy_in, local, target, root, owner)
                if progress is not None:
                    progress(length)
                return {"FullPath": str(target), "Length": length, "Sha256": digest}
            target = self._resolve(remote)
            self._refuse_private(target, "write")
            work = (self.folder / WORK).resolve()
            if target == work or target.is_relative_to(work):
                raise CallError(
                    "refused",
                    f"{target} is inside {work}, which only the script runner writes (its "
                    "state, exit codes and logs); send a script's files with the script",
                )
            root = self.folder.resolve()
            length, digest = await asyncio.to_thread(_copy_in, local, target, root, self.account)
        if progress is not None:
            progress(length)
        return {"FullPath": str(target), "Length": length, "Sha256": digest}

    async def download(
        self,
        remote: str,
        local: Path,
        progress: Progress | None = None,
        isolation_group: str | None = None,
    ) -> dict[str, Any]:
        """Copy ``remote`` (inside the worker's folder) to ``local``, replaced only when
        complete; RemoteError not_found, or refused as ``upload`` says. With
        ``isolation_group`` while steps run as their groups' uids: refused unless that
        group's uid owns the file (an artifact naming another project's file)."""
        with _remote_errors():
            group = self._group(isolation_group)
            source = self._resolve(remote)
            self._refuse_private(source, "read")
            root = self.folder.resolve()
            length, digest = await asyncio.to_thread(_copy_out, source, root, local, group)
        if progress is not None:
            progress(length)
        return {"FullPath": str(local), "Length": length, "Sha256": digest}

    async def execute(
        self,
        request: ScriptRequest,
        on_output: Callable[[LogChunk], None],
        cancel: asyncio.Event | None = None,
    ) -> ScriptOutcome:
        """Run ``request`` (once per ticket: the same ticket again follows it), handing
        every log line to ``on_output`` once, in order, from sequence 1; ``cancel`` set
        cancels it, and the outcome still has its real exit code. An async
        ``on_output.drained()`` is awaited after each delivery, before more lines are
        read (the caller's backpressure). RemoteError bad_params for a request the
        runner does not take."""
        manager = self._started()
        cancel = cancel or asyncio.Event()
        ticket = request.ticket
        with _remote_errors():
            status = await self._start(manager, request)
        # A ticket completed before this call answers with no lines, though it had some
        already_finished = status.state == COMPLETE and not status.logs and status.next_sequence > 0
        last, delay, cancel_sent = 0, FIRST_POLL, False
        while True:
            delivered = _deliver(status, last, on_output)
            flowing = delivered > last
            if flowing:
                await _drained(on_output)
            last = delivered
            if status.state == COMPLETE and not status.more_logs:
                break
            if cancel.is_set() and not cancel_sent:
                await manager.cancel(ticket, last)
                cancel_sent = True
            # Only new lines ask again at once: more_logs alone is also a last line
            # without its newline yet, which only the script's end (seen by this loop) numbers
            if flowing:
                delay = FIRST_POLL
                await asyncio.sleep(0)  # a step printing without pause still lets the hub run
            else:
                await self._pause(manager, ticket, delay, cancel, cancel_sent)
                delay = min(delay * POLL_GROWTH, MAX_POLL)
            status = manager.status(ticket, last)
        await manager.complete(ticket)  # the workspace goes; the outcome is remembered
        if status.exit_code is None:  # never: a Complete status has its code
            raise RemoteError("internal", f"script {ticket} is Complete without an exit code")
        return ScriptOutcome(ticket, status.exit_code, cancel.is_set(), already_finished)

    async def cancel(self, ticket: str) -> None:
        """Cancel the script ``ticket`` (SIGTERM, SIGKILL after its grace); whoever
        executes it learns the outcome. Nothing for a finished or unknown ticket."""
        with _remote_errors():
            await self._started().cancel(ticket, 0)

    async def close(self) -> None:
        """Nothing to release per caller: the hub stops the worker itself."""

    # -- helpers -------------------------------------------------------------

    def _started(self) -> ScriptManager:
        if self._manager is None:
            raise RemoteError("refused", "the built-in worker is not started")
        return self._manager

    def _group(self, group: str | None) -> users.GroupAccount | None:
        """An upload's isolation group's account, as an agent's file service has it."""
        if group is None:
            return None
        users.check_group(group)
        if self.policy.refuse_groups is not None:
            raise CallError("refused", f"IsolationGroup {group!r}: {self.policy.refuse_groups}")
        return None if self.policy.users is None else self.policy.users.account(group)

    def _resolve(self, path: str) -> Path:
        return resolve_within(path, self.folder, (), REMEDY)

    def _refuse_private(self, target: Path, verb: str) -> None:
        if target == self._lock.path.resolve():
            raise CallError(
                "refused", f"{target} is the built-in worker's lock; it never {verb}s it"
            )

    async def _start(self, manager: ScriptManager, request: ScriptRequest) -> Status:
        start = request.to_start()  # CallError(bad_params) for what the runner does not take
        files = [(workspace_file_name(name), path) for name, path in request.files]
        spec = ScriptSpec(
            ticket=start.ticket,
            syntax=start.syntax,
            arguments=start.arguments,
            isolation=start.isolation,
            mutex_name=start.mutex_name,
            mutex_timeout=start.mutex_timeout,
            task_id=start.task_id,
            grace=start.grace,
            isolation_group=start.isolation_group,
        )

        async def write_files(workspace: Path) -> None:
            await asyncio.to_thread(_copy_files, files, workspace)

        # The Environment, as an agent's: in the manager's memory only, never on disk
        environment = dict(start.environment)
        return await manager.start(spec, start.body, write_files if files else None, 0, environment)

    async def _pause(
        self, manager: ScriptManager, ticket: str, delay: float, cancel: asyncio.Event, sent: bool
    ) -> None:
        """Wait ``delay`` for more output, cut short by the script's end or a new cancel."""
        events = [event for event in (manager.finished(ticket),) if event is not None]
        if not sent:
            events.append(cancel)
        waits = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()


@contextlib.contextmanager
def _remote_errors() -> Iterator[None]:
    """A refusal of the runner's or the path rule's as the Worker's RemoteError."""
    try:
        yield
    except CallError as error:
        raise RemoteError(error.kind, str(error)) from None


def _deliver(status: Status, last: int, on_output: Callable[[LogChunk], None]) -> int:
    """Hand the lines after ``last`` to ``on_output``; returns the last sequence seen."""
    for run in status.logs:
        first = int(run["Sequence"])
        lines = str(run["Text"]).split("\n")[max(0, last + 1 - first) :]
        if lines:
            first = max(first, last + 1)
            occurred = datetime.datetime.fromisoformat(str(run["Occurred"]))
            on_output(LogChunk(str(run["Source"]), first, lines, occurred))
            last = first + len(lines) - 1
    return max(last, status.next_sequence)


async def _drained(on_output: Callable[[LogChunk], None]) -> None:
    """The caller's backpressure: its ``drained()`` (if it has one) once it stored what
    it was handed, so that a script printing a gigabyte never sits in its memory."""
    drained = getattr(on_output, "drained", None)
    if drained is not None:
        await drained()


def _check_reachable(hub_home: Path, account: Account, user: str) -> None:
    """ConfigError unless ``account`` may search every folder above the hub's home
    (the home itself is made searchable): else its steps could not reach their own."""
    for folder in reversed(hub_home.parents):
        info = folder.stat()
        if info.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif info.st_gid in account.groups or info.st_gid == account.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            raise ConfigError(
                f"BuiltinWorkerUser {user!r} cannot reach the built-in worker's folder "
                f"{hub_home / FOLDER}: {folder} (mode {stat.S_IMODE(info.st_mode):04o}) is "
                f"not searchable by it; allow it (chmod o+x {folder}) or keep the hub's home "
                "where that user can reach it"
            )


def _copy_files(files: Sequence[tuple[str, Path]], workspace: Path) -> None:
    """The files sent with a script, into its new workspace (names checked before)."""
    for name, local in files:
        target = resolve_within(name, workspace, (), REMEDY)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with local.open("rb") as source, target.open("xb") as copy:
                shutil.copyfileobj(source, copy, CHUNK)
        except FileExistsError:
            raise CallError(
                "bad_params", f"file {name!r} is given twice or clashes with the script"
            ) from None


def _copy_in(local: Path, target: Path, root: Path, account: Account | None) -> tuple[int, str]:
    """Copy ``local`` over ``target`` (inside ``root``) through a synced temporary beside
    it, the account's when there is one (so are the folders made for it); every folder
    on the way opened without following links (``_open_folder``). Returns length and
    SHA-256."""
    *parents, name = parts_below(target, root)
    folder = _open_folder(root, parents, account, create=True)
    try:
        with contextlib.suppress(FileNotFoundError):
            _refuse_unless_regular(target, os.stat(name, dir_fd=folder, follow_symlinks=False))
        temporary = f".{name}.{secrets.token_hex(6)}.partial"
        try:
            length, digest = _write_from(local, temporary, folder, account)
            os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=folder)
            raise
        os.fsync(folder)  # the rename lasts
    finally:
        os.close(folder)
    return length, digest


def _write_from(
    local: Path, temporary: str, folder: int, account: Account | None
) -> tuple[int, str]:
    digest = hashlib.sha256()
    length = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with local.open("rb") as source:
        fd = os.open(temporary, flags, 0o600, dir_fd=folder)
        try:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                length += len(chunk)
                _write_all(fd, chunk)
            if account is not None:
                os.fchown(fd, account.uid, account.gid)
            os.fsync(fd)
        finally:
            os.close(fd)
    return length, digest.hexdigest()


def _copy_out(
    source: Path, root: Path, local: Path, group: users.GroupAccount | None = None
) -> tuple[int, str]:
    """Copy the regular file ``source`` (inside ``root``, reached without following links)
    to ``local``, through a temporary beside it; with ``group``, only a file its uid owns
    (its script cannot make one another uid's, nor reach another group's folders)."""
    *parents, name = parts_below(source, root)
    folder = _open_folder(root, parents, None, create=False)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=folder)  # fmt: skip
    except FileNotFoundError:
        raise CallError("not_found", f"no file at {source}") from None
    except OSError as error:  # ELOOP: a link put there since the path was checked
        raise CallError("refused", f"cannot read {source}: {error.strerror}") from None
    finally:
        os.close(folder)
    digest = hashlib.sha256()
    length = 0
    with os.fdopen(fd, "rb") as file, temporary_beside(local) as temporary:
        opened = os.fstat(file.fileno())
        _refuse_unless_regular(source, opened)
        if group is not None and opened.st_uid != group.uid:
            raise CallError(
                "refused",
                f"{source} is not group {group.group!r}'s file (owned by uid {opened.st_uid}, "
                f"not {group.uid}): a download naming an IsolationGroup serves only that "
                "group's files",
            )
        with temporary.open("xb") as copy:
            while chunk := file.read(CHUNK):
                digest.update(chunk)
                length += len(chunk)
                copy.write(chunk)
        os.replace(temporary, local)
    return length, digest.hexdigest()


def _open_folder(root: Path, parts: Sequence[str], account: Account | None, create: bool) -> int:
    """``open_folder`` (links refused, never followed), the parts made the account's."""
    owner = None if account is None else (account.uid, account.gid)
    return open_folder(root, parts, owner, create)


def _refuse_unless_regular(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise CallError("refused", f"{path} is not a regular file")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
