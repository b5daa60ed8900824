"""Launch a script so that it outlives the agent, and watch or stop it from outside.

The agent starts a small bash *wrapper* in a session of its own. The wrapper
starts the script as a job (so in a process group of its own), with stdout and
stderr appended straight to the workspace's raw files (opened by the agent and
inherited as descriptors), waits for it, appends
its exit status to ``wrapper.pid`` (a second line) and exits with it. Nothing depends on the agent:
kill -9 the agent and the script runs on, its output reaches disk and its exit
code is recorded. The agent (this one or a restarted one) watches the wrapper
through a pidfd, which works for any process, child or not.

A script may run as another (unprivileged) account than the agent's
(``Account``: its isolation group's uid, agent.scripts.users, or the hub's built-in
worker's user): the workspace is handed to that account first (by the manager) and
the wrapper starts with its uid, gid and groups, set by util-linux's ``setpriv`` (or
subprocess in the child) before bash's exec, never through a shell's ``su``.

Stopping: SIGTERM to every process in the wrapper's session except the wrapper,
then SIGKILL after a grace period. Output goes to files, not pipes, so a
grandchild holding stdout open cannot hang anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.atomicfile import open_regular, read_regular
from agent.scripts.cgroups import ScriptGroup
from agent.scripts.procstat import PROC, read_stat

PID_FILE = "wrapper.pid"
RC_FILE = "rc"  # where wrappers of earlier versions wrote the exit status (an upgrade)
INTERPRETERS = {"sh": ("sh",), "python": ("python3", "-u")}  # bash: see WRAPPER
SCRIPT_FILES = {"bash": "script.sh", "sh": "script.sh", "python": "script.py"}
PROGRAMS = {"bash": "bash", "sh": "sh", "python": "python3"}  # what each Syntax needs on PATH
# The workspace's own files: a file sent alongside a script may not take these names.
OWN_FILES = frozenset({*SCRIPT_FILES.values(), RC_FILE, PID_FILE})

# The wrapper records its pid and start time (field 22 of /proc/PID/stat) to be
# found after a restart, runs the job in the foreground and records its status
# (128+N when a signal N killed it) as a second line of the same file: one file
# fewer to create and remove per script, which on a disk costs more than the
# write (see docs/decisions.md). The line is appended by one small write, so it
# is there whole or not at all. Every command is a bash builtin: no extra
# processes. A bash script runs in a forked subshell of the wrapper (no second
# bash to start); other syntaxes run their interpreter on $1.. (command and
# arguments). Signals are sent to the session's members but the wrapper.
#
# The wrapper also exits with the script's status, so that the agent that
# launched it learns the real exit code from waitpid even when ``rc`` cannot
# be written (a full disk). If it cannot record its pid, it does not run the
# script at all (exit NOT_RECORDED): a restarted agent would take a workspace
# without ``wrapper.pid`` for a script that never started and start it again.
#
# It starts nothing before the agent says so: its stdin is a pipe from the agent,
# which first moves it into the script's cgroup (``join``), then writes "go". So
# every process the script starts is born in that cgroup; and a wrapper whose
# agent died before the word (the pipe closed empty) exits without running anything.
NOT_RECORDED = 125
# The wrapper ran as an account without supplementary groups found some (a setgroups
# refused to nsenter): it exits with this before recording itself, running nothing.
NOT_ISOLATED = 124
#
# The raw output files are opened by the agent (appending, its own, 0600) before the
# wrapper starts, and handed to it as descriptors {out} and {err}: the script writes
# only to what it inherits, so a script run as another uid can neither open its raw
# files by name nor reach another script's (docs/architecture.md, "Who runs a script").
_GATE_LINE = "read -r go || exit {not_recorded}\n"
WRAPPER = _GATE_LINE + (
    "read -ra stat </proc/$$/stat; echo $$ ${{stat[21]}} >wrapper.pid || exit {not_recorded}\n"
    "{job} </dev/null >&{out} 2>&{err} {out}>&- {err}>&-\n"
    "code=$?; echo $code >>wrapper.pid; exit $code\n"
)
RAW_OUTPUT = ("stdout.raw", "stderr.raw")  # agent.scripts.outputlog's RAW_FILES
RAW_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT  # through open_regular: no link, no FIFO
SPAWNED_OUTPUT = (3, 4)  # where posix_spawn puts them in the wrapper
BASH_JOB = '(. ./script.sh "$@")'
EXEC_JOB = '"$@"'


def installed_executable(otherwise: str = "tentacle") -> str:
    """The `tentacle` that scripts call (TentacleExecutablePath: `tentacle calamari ...`
    for a deployment): the one installed beside this interpreter first (the same
    installation as this process, also in a virtualenv that is not on the PATH), else
    the PATH's, else ``otherwise``."""
    beside = Path(sys.executable).parent / "tentacle"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("tentacle") or otherwise


@dataclass(frozen=True)
class Account:
    """Whom a script runs as when not as this process: ids the caller looked up."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()


# Wrappers started through subprocess, kept until reaped here: a Popen dropped while
# its child runs would be reaped by subprocess's own clean-up, taking its status.
_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Launched:
    pid: int
    start_time: int
    child: bool = True  # False for a wrapper found after a restart


RESTORED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ") if hasattr(signal, name)
)


def launch(
    workspace: Path,
    syntax: str,
    arguments: Sequence[str],
    environment: Mapping[str, str],
    account: Account | None = None,
    join: Callable[[int], None] | None = None,
) -> Launched:
    """Start the wrapper for the script in ``workspace``. Raises OSError if it cannot start.

    The arguments reach the script as separate argv entries, never re-parsed by a shell.
    The wrapper's own output (bash's job notices) is discarded; the script's goes to
    the raw files, opened here (see WRAPPER). With ``account`` the script runs as it
    (its workspace must be the account's already: agent.scripts.manager hands it over).
    ``join`` is called with the wrapper's pid before the wrapper starts the script (to
    put it into the script's cgroup); if it raises OSError, the wrapper ends unstarted
    and the error is raised.
    """
    gate, go = os.pipe()
    try:
        launched = _start(workspace, syntax, arguments, environment, account, gate)
    except BaseException:
        os.close(go)
        raise
    finally:
        os.close(gate)
    try:
        if join is not None:
            join(launched.pid)
    except OSError:
        os.close(go)  # the wrapper reads no word and exits without running the script
        _reap_now(launched.pid)
        raise
    try:
        os.write(go, b"go\n")
    finally:
        os.close(go)
    return launched


def _reap_now(pid: int) -> None:
    """Wait for our child ``pid``, which is ending at once (its gate closed)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    _SPAWNED.pop(pid, None)


def _start(
    workspace: Path,
    syntax: str,
    arguments: Sequence[str],
    environment: Mapping[str, str],
    account: Account | None,
    gate: int,
) -> Launched:
    """The wrapper started, its stdin ``gate``, waiting for the word to go on."""
    if syntax == "bash":
        job, command = BASH_JOB, list(arguments)
    else:
        job, command = EXEC_JOB, [*INTERPRETERS[syntax], SCRIPT_FILES[syntax], *arguments]
    opened: list[int] = []
    try:
        for name in RAW_OUTPUT:
            opened.append(open_regular(workspace / name, RAW_FLAGS, 0o600))
            os.set_blocking(opened[-1], True)  # the script gets an ordinary file
        out, err = SPAWNED_OUTPUT if account is None or _switcher(account) else opened
        wrapper = f"cd {shlex.quote(str(workspace))} || exit 127\n" + WRAPPER.format(
            job=job, not_recorded=NOT_RECORDED, out=out, err=err
        )
        if account is not None and _switcher(account) == _nsenter():
            # nsenter ignores a failed setgroups outside a user namespace: the word read,
            # nothing runs with any group but the account's own (bash's GROUPS is
            # getgroups() with the gid added when missing)
            check = (f'[[ ${{#GROUPS[@]}} -eq 1 && ${{GROUPS[0]}} -eq {account.gid} ]] '
                     f"|| exit {NOT_ISOLATED}\n")  # fmt: skip
            gate_line = _GATE_LINE.format(not_recorded=NOT_RECORDED)
            wrapper = wrapper.replace(gate_line, gate_line + check, 1)
        argv = ["bash", "-c", wrapper, SCRIPT_FILES[syntax], *command]
        if account is not None:
            return _launch_as(account, argv, environment, tuple(opened), gate)
        return _spawn(argv, environment, tuple(opened), gate)
    finally:
        for fd in opened:
            os.close(fd)


def _spawn(
    argv: list[str],
    environment: Mapping[str, str],
    output: tuple[int, ...],
    gate: int,
    executable: str | None = None,
) -> Launched:
    """posix_spawn ``argv`` (``executable``, else bash) with the gate for 0, /dev/null for
    1 and 2 and the raw output files at SPAWNED_OUTPUT, in a session of its own."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        to_null = [(os.POSIX_SPAWN_DUP2, null, fd) for fd in (1, 2)]
        pairs = zip(output, SPAWNED_OUTPUT, strict=True)
        to_output = [(os.POSIX_SPAWN_DUP2, fd, at) for fd, at in pairs]
        pid = os.posix_spawn(
            executable or _bash(environment.get("PATH")),
            argv,
            dict(environment),
            file_actions=[(os.POSIX_SPAWN_DUP2, gate, 0), *to_null, *to_output],
            setsid=True,
            # Python ignores these and an ignored signal survives exec; a script gets a
            # shell's defaults (as subprocess's restore_signals gives), so that a pipe's
            # writer ends quietly when its reader has gone
            setsigdef=RESTORED_SIGNALS,
        )
    finally:
        os.close(null)
    return Launched(pid, 0)


def _launch_as(
    account: Account,
    argv: list[str],
    environment: Mapping[str, str],
    output: tuple[int, ...],
    gate: int,
) -> Launched:
    """``launch`` as ``account``, with what ``_spawn`` gives: a session of its own, the
    default signals restored, the gate for 0, /dev/null for 1 and 2, the raw output
    files ``output`` at the numbers argv names (SPAWNED_OUTPUT through setpriv, their
    own numbers through subprocess).

    Through util-linux's ``nsenter`` (an account without supplementary groups) or
    ``setpriv`` (with them) where there is one: posix_spawn (a vfork) of it, which sets
    the groups, then the gid, then the uid (real, effective and saved) and execs bash,
    failing without running it if any of them fails (see _switcher). subprocess could
    change users itself, but then it forks the whole agent instead of a vfork: about
    6 ms a script on a loaded agent, most of P1 (docs/decisions.md, "Scripts' users
    through setpriv"). Without either, subprocess does it."""
    switcher = _switcher(account)
    bash = _bash(environment.get("PATH"))
    if switcher is not None and switcher == _nsenter():
        command = _nsenter_command(account, bash, argv[1:])
        return _spawn(command, environment, output, gate, executable=switcher)
    if switcher is not None:
        groups = ",".join(str(group) for group in account.groups)
        change = [f"--groups={groups}"] if groups else ["--clear-groups"]
        command = [
            "setpriv", f"--reuid={account.uid}", f"--regid={account.gid}", *change,
            "--", bash, *argv[1:],
        ]  # fmt: skip
        return _spawn(command, environment, output, gate, executable=switcher)
    process = subprocess.Popen(  # argv, not a shell string
        argv,
        executable=bash,
        env=dict(environment),
        stdin=gate,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=output,
        start_new_session=True,
        restore_signals=True,
        user=account.uid,
        group=account.gid,
        extra_groups=list(account.groups),  # none: setgroups(0), the agent's are dropped
    )
    _SPAWNED[process.pid] = process
    return Launched(process.pid, 0)


def _nsenter_command(account: Account, bash: str, arguments: Sequence[str]) -> list[str]:
    """nsenter entering no namespace: setgroups(0), setgid, setuid (as root: real,
    effective and saved ids), each by number, then bash's exec; a failed setgid or
    setuid ends it unexec'd (the wrapper checks the groups itself: see _start)."""
    return ["nsenter", f"--setuid={account.uid}", f"--setgid={account.gid}", "--",
            bash, *arguments]  # fmt: skip


def _switcher(account: Account) -> str | None:
    """What changes users for ``account``: util-linux's nsenter for an account without
    supplementary groups, else its setpriv; None: subprocess does it.

    nsenter takes the ids as numbers; setpriv looks each up as a name first (an NSS
    lookup: nsswitch.conf, /etc/passwd and /etc/group, libnss_systemd's userdb), about
    0.4 ms a script (docs/decisions.md, "Scripts' users through nsenter")."""
    if not account.groups and (nsenter := _nsenter()) is not None:
        return nsenter
    return _setpriv()


@functools.lru_cache(maxsize=1)
def _nsenter() -> str | None:
    """util-linux's nsenter from the system's own folders (not a script's PATH)."""
    return shutil.which("nsenter", path="/usr/bin:/bin:/usr/sbin:/sbin")


@functools.lru_cache(maxsize=1)
def _setpriv() -> str | None:
    """util-linux's setpriv from the system's own folders (not a script's PATH)."""
    return shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")


def hand_over(workspace: Path, account: Account) -> None:
    """Make ``workspace`` and what is in it ``account``'s (links themselves, not their
    targets): the wrapper, as that account, writes its records and output there."""
    os.lchown(workspace, account.uid, account.gid)
    for folder, names, files in os.walk(workspace):
        for name in (*names, *files):
            os.lchown(os.path.join(folder, name), account.uid, account.gid)


def owner(pid: int) -> int | None:
    """The real user id ``pid`` runs as, or None if it is gone."""
    try:
        return (PROC / str(pid)).stat().st_uid
    except OSError:
        return None


@functools.lru_cache(maxsize=8)
def _bash(path: str | None) -> str:
    """bash's full path, looked up once: posix_spawnp would try every PATH entry each time."""
    found = shutil.which("bash", path=path)
    if found is None:
        raise FileNotFoundError("bash is not on the PATH; scripts need it")
    return found


def recorded_wrapper(workspace: Path) -> Launched | None:
    """The wrapper as it recorded itself (pid and start time), if it got that far."""
    try:
        pid, start = (int(field) for field in _records(workspace)[0].split())
    except (OSError, ValueError, IndexError):
        return None
    return Launched(pid, start, child=False)


def exit_code(workspace: Path) -> int | None:
    """The script's exit code as the wrapper recorded it, or None if it has not.

    A wrapper launched by an older agent (before an upgrade) wrote it to ``rc``.
    """
    try:
        records = _records(workspace)
    except OSError:
        records = []
    try:
        if len(records) > 1:
            return int(records[1])
        return int(read_regular(workspace / RC_FILE).strip())
    except (OSError, ValueError):
        return None


def _records(workspace: Path) -> list[str]:
    """The complete lines of ``wrapper.pid``: the wrapper itself, then its exit status."""
    # the script owns its workspace: a link or a FIFO there is an unreadable record
    text = read_regular(workspace / PID_FILE).decode("utf-8", "replace")
    return text.split("\n")[: text.count("\n")]


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (to tell a reused pid apart)."""
    stat = read_stat(pid)
    return None if stat is None else stat.start_time


def is_alive(launched: Launched) -> bool:
    """True if the wrapper is still running (and its pid was not reused)."""
    return process_start_time(launched.pid) == launched.start_time and not is_zombie(launched.pid)


def is_zombie(pid: int) -> bool:
    """True if ``pid`` has exited and awaits its parent (or no longer exists)."""
    stat = read_stat(pid)
    return stat is None or stat.is_zombie


async def wait_for_exit(launched: Launched) -> int | None:
    """Return once the wrapper has exited; reap it if it is our child.

    Returns the wrapper's wait status (as ``os.waitpid`` gives it) when it was
    our child, None otherwise. A wrapper found after a restart is not our
    child, and its pid may have been reused: it is checked against its start
    time first. Our own child's pid cannot be reused before we reap it.
    """
    if not launched.child and not is_alive(launched):
        return None
    try:
        pidfd = os.pidfd_open(launched.pid)
    except ProcessLookupError:
        return _reap(launched.pid)
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:  # a pidfd turns readable when its process has exited
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return _reap(launched.pid)


def _reap(pid: int) -> int | None:
    """Reap ``pid`` if it is our exited child; its wait status, or None."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        _SPAWNED.pop(pid, None)
        return None
    if reaped != pid:
        return None
    if (process := _SPAWNED.pop(pid, None)) is not None:
        process.returncode = os.waitstatus_to_exitcode(status)  # so subprocess never waits
    return status


def wrapper_exit_code(status: int | None) -> int | None:
    """The script's exit code as the wrapper's own exit status gives it, or None.

    None when the status is unknown or the wrapper was killed by a signal (it
    then had no chance to pass the script's status on).
    """
    if status is None or not os.WIFEXITED(status):
        return None
    return os.WEXITSTATUS(status)


def signal_script(launched: Launched, signum: int) -> int:
    """Send ``signum`` to every process in the wrapper's session but the wrapper.

    Returns how many processes were signalled.
    """
    count = 0
    for pid in _session_members(launched.pid):
        if pid != launched.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
                count += 1
    return count


def _session_members(session: int) -> list[int]:
    members = []
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        stat = read_stat(entry.name)
        if stat is not None and stat.session == session:
            members.append(int(entry.name))
    return members


async def stop(launched: Launched, grace: float) -> int | None:
    """SIGTERM the script's processes, SIGKILL them after ``grace`` seconds; wait for the end.

    Returns the wrapper's wait status, as :func:`wait_for_exit` does."""
    signal_script(launched, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            status = await wait_for_exit(launched)
    except TimeoutError:
        signal_script(launched, signal.SIGKILL)
        status = await wait_for_exit(launched)
    # the script is gone; so must be any descendant that ignored SIGTERM
    signal_script(launched, signal.SIGKILL)
    return status


async def stop_tree(launched: Launched, group: ScriptGroup, grace: float) -> int | None:
    """``stop`` for a script in a cgroup of its own: SIGTERM to every process in it but
    the wrapper, SIGKILL to them after ``grace`` seconds (frozen, so that none forks
    away meanwhile), then the whole cgroup killed: daemons that left the session
    (``setsid``, a double fork) are still in it. The wrapper is spared until it has
    recorded the script's status. Returns the wrapper's wait status, as ``stop``."""
    group.signal(signal.SIGTERM, but=launched.pid)
    try:
        async with asyncio.timeout(grace):
            status = await wait_for_exit(launched)
    except TimeoutError:
        group.kill_all_but(launched.pid)
        status = await wait_for_exit(launched)
    group.kill()
    await emptied(group)
    return status


EMPTIED_WITHIN = 5.0  # seconds: killed processes are gone long before
_EMPTIED_POLL = 0.01


async def emptied(group: ScriptGroup) -> None:
    """Return once the killed cgroup holds no process, or after EMPTIED_WITHIN seconds
    (it is then left for the next sweep). The kernel announces it through
    cgroup.events, which is not worth an inotify watch for one short wait."""
    for _ in range(int(EMPTIED_WITHIN / _EMPTIED_POLL)):
        if not group.populated():
            return
        await asyncio.sleep(_EMPTIED_POLL)
