"""The durable script service: start by ticket, status with logs, cancel, complete.

Each script lives in ``<work>/<ticket>/`` (0700) with its body, files, raw
output, log index, ``state.json`` and the wrapper's ``rc``. Everything needed
to answer for a script is on disk, so a restarted agent recovers every
workspace: finished scripts report their real exit codes, running ones are
re-attached, pending ones are started (see docs/architecture.md).

A full disk does not lose an outcome: a state that cannot be written is kept
in memory, answered from there, and written again every RETRY_SAVE seconds
(and on every call) until space returns. ``complete`` leaves a tombstone (see
agent.scripts.tombstones) so that a ticket runs at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import CallError
from agent.observability.metrics import exit_class
from agent.protocol.messages import DRAINING, REFUSED
from agent.protocol.services import ExitCode, ProcessTree, State
from agent.scripts import cleaner, runner, spread, tombstones
from agent.scripts.cgroups import Limits, ProcessTrees, ScriptGroup
from agent.scripts.mutex import Holder, IsolationMutex
from agent.scripts.outputlog import OutputLog
from agent.scripts.recovery import Adopted, Fate, adopt_all
from agent.scripts.state import (
    COMPLETE,
    RUNNING,
    ScriptSpec,
    ScriptState,
    create_state,
    now,
    save_state,
)
from agent.scripts.tickets import ticket_key
from agent.scripts.tombstones import Tombstone
from agent.scripts.users import (
    DEFAULT_GROUP,
    SEARCHABLE_MODE,
    GroupAccount,
    GroupUsers,
    check_group,
)

if TYPE_CHECKING:
    from agent.observability.metrics import AgentMetrics

log = logging.getLogger(__name__)
WORKSPACE_MODE = 0o700
RAW_READ_BUDGET = 4 * 1024 * 1024
OUTPUT_LOOK = 0.02  # seconds between looks at a starting script's output (start's wait)
FileWriter = Callable[[Path], Awaitable[None]]
INSUFFICIENT_SPACE = "insufficient_space"
RETRY_SAVE = 1.0  # seconds between attempts to write what a full disk refused
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class ScriptSettings:
    work: Path
    environment: Mapping[str, str]
    max_running: int | None = None
    retention: float = 24 * 3600.0
    sweep_interval: float = 2 * 3600.0
    account: runner.Account | None = None  # scripts run as this account, not as this process
    # Scripts run as their isolation group's uid (agent.scripts.users), not as this process
    users: GroupUsers | None = None
    # Set when a call asking for an IsolationGroup is refused: why (this process cannot
    # switch users, and the operator did not accept one user for all)
    refuse_groups: str | None = None
    trees: ProcessTrees | None = None  # a cgroup per script; None: each in its session only
    limits: Limits = field(default_factory=Limits)  # the configured ones: a call's are within


@dataclass(frozen=True)
class Status:
    """A script's status; its wire form is agent.protocol.services.ScriptStatus.

    ``logs`` are the log runs as agent.scripts.outputlog reads them.
    """

    ticket: str
    state: State
    exit_code: int | None
    logs: list[dict[str, Any]]
    next_sequence: int
    more_logs: bool = False
    log_data: list[bytes | memoryview] | None = None  # with streamed logs: each run's bytes


@dataclass
class _Script:
    key: str
    workspace: Path
    state: ScriptState
    log: OutputLog
    done: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    launched: runner.Launched | None = None
    group: ScriptGroup | None = None  # its cgroup, if it has one
    # The request's Environment, in memory only and only until the launch
    environment: Mapping[str, str] = field(default_factory=dict)


class ScriptManager:
    def __init__(self, settings: ScriptSettings, metrics: AgentMetrics | None = None) -> None:
        """``metrics``: where scripts started, running, finished and mutex waits are
        counted (None: not counted)."""
        self.settings = settings
        self.metrics = metrics
        self._scripts: dict[str, _Script] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._releasing: set[str] = set()  # keys a complete waits to release while they start
        self._mutex = IsolationMutex()
        self._slots = asyncio.Semaphore(settings.max_running) if settings.max_running else None
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False
        self._completed: dict[str, Tombstone] = {}
        self._unsaved: set[str] = set()  # keys whose state or tombstone is in memory only
        self._saver: asyncio.Task[None] | None = None
        self._draining_since: str | None = None  # when set_draining(True) began it

    # -- life cycle --------------------------------------------------------

    async def open(self) -> None:
        """Recover every workspace, sweep old ones, and start the periodic sweep."""
        work = self.settings.work
        work.mkdir(mode=WORKSPACE_MODE, parents=True, exist_ok=True)
        if self.settings.users is not None:
            work.chmod(SEARCHABLE_MODE)  # each group's script passes through to its own
        spread.spread_subfolders(work)  # fewer inodes to search past per new file (ext4)
        self._completed = tombstones.load_all(work)
        for adopted in adopt_all(work, self._completed, self._owner_of):
            self._recover(adopted)
        if self.settings.trees is not None:
            self.settings.trees.sweep()  # the empty cgroups of scripts that ended meanwhile
        self.sweep()
        self._sweeper = asyncio.create_task(self._sweep_periodically(), name="script-sweeper")

    async def close(self) -> None:
        """Stop watching. Running scripts are left running; a restart re-attaches them."""
        self._closing = True
        self._flush()  # a last chance for what a full disk refused
        tasks = [s.task for s in self._scripts.values() if s.task] + [self._sweeper, self._saver]
        for task in tasks:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
        if self.settings.trees is not None:
            self.settings.trees.close()

    @property
    def process_tree(self) -> ProcessTree:
        """What keeps a script's processes together here (capabilities' ProcessTree)."""
        return ProcessTree.SESSION if self.settings.trees is None else ProcessTree.CGROUP

    # -- draining ------------------------------------------------------------

    @property
    def draining(self) -> bool:
        """Whether new scripts are refused (see set_draining)."""
        return self._draining_since is not None

    @property
    def draining_since(self) -> str | None:
        """When draining began (the time format of the protocol), None if not draining."""
        return self._draining_since

    def set_draining(self, draining: bool, since: str | None = None) -> None:
        """Refuse (True) or accept again (False) the start of new tickets.

        While draining, ``start`` of a ticket this agent does not hold raises
        CallError(draining); everything else carries on: running scripts run to
        their end, and status, cancel, complete and a repeated start of a ticket
        it holds answer as usual. ``since`` (default now) is kept from the first
        call that began draining: draining again changes nothing.
        """
        if not draining:
            self._draining_since = None
        elif self._draining_since is None:
            self._draining_since = since or now()

    def running(self) -> int:
        """How many scripts this agent holds that are not complete yet."""
        return sum(not script.done.is_set() for script in self._scripts.values())

    def _refuse_if_draining(self, ticket: str) -> None:
        if self._draining_since is not None:
            raise CallError(
                DRAINING,
                f"the agent is draining since {self._draining_since}: it starts no new "
                f"scripts ({ticket!r} was not started); run it on another worker, or "
                "undo with `tentacle drain --resume`",
            )

    # -- the service -------------------------------------------------------

    async def start(
        self,
        spec: ScriptSpec,
        body: str,
        write_files: FileWriter | None,
        wait: float,
        environment: Mapping[str, str] | None = None,
    ) -> Status:
        """Start the script for ``spec.ticket`` unless that ticket exists already.

        ``environment`` is added to the script's process environment and kept in
        memory only, until the launch: never written to the workspace (its state
        says only ``with_environment``), so a script still waiting for its launch
        when the agent stops cannot be launched after the restart (see _recover).
        A repeated start of a ticket that exists ignores it, as it ignores the rest.
        Idempotent per ticket (case-insensitively), also for concurrent calls,
        and at most once: a ticket completed within the retention answers its
        remembered outcome (no logs) and runs nothing. Waits up to ``wait``
        seconds for a short script to finish, or until it has printed RAW_READ_BUDGET
        bytes not numbered yet (a long output is read while it is printed). Raises
        CallError(insufficient_space) if the workspace cannot be written,
        CallError(draining) for a ticket it does not hold while draining (see
        set_draining).
        """
        key = ticket_key(spec.ticket)
        self._check_group(spec.isolation_group)
        self._flush()
        async with self._starting.setdefault(key, asyncio.Lock()):
            if (stone := self._completed.get(key)) is not None:
                return Status(stone.ticket, COMPLETE, stone.exit_code, [], stone.next_sequence)
            script = self._scripts.get(key)
            if script is None:
                self._refuse_if_draining(spec.ticket)
                spec = dataclasses.replace(spec, with_environment=bool(environment))
                script = await self._create(key, spec, body, write_files, environment or {})
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await _done_or_a_page(script)
        return self.status(spec.ticket, 0)

    def _check_group(self, group: str | None) -> None:
        """CallError(bad_params) for a malformed group, CallError(refused) for any group
        when groups are refused (see ScriptSettings.refuse_groups)."""
        if group is None:
            return
        check_group(group)
        if self.settings.refuse_groups is not None:
            raise CallError(REFUSED, f"IsolationGroup {group!r}: {self.settings.refuse_groups}")

    def status(self, ticket: str, last_sequence: int, *, raw_logs: bool = False) -> Status:
        """State, exit code and the log lines after ``last_sequence``.

        With ``raw_logs`` the lines come as bytes in ``log_data`` (each entry
        says its ``Length``) rather than as text in the entries: for streaming
        large outputs. An unknown ticket (also one already completed) is Complete
        with exit code -45, no logs and NextLogSequence 0, as in Tentacle.
        """
        script = self._scripts.get(ticket_key(ticket))
        self._flush()
        if script is None:
            return Status(ticket, COMPLETE, ExitCode.UNKNOWN_SCRIPT, [], 0)
        state = script.state
        if (backlog := script.log.backlog(last_sequence)) < RAW_READ_BUDGET:
            # Number more lines only when what is numbered would not fill this
            # answer, and only what fills it: work in proportion to what is read,
            # never a gigabyte at once, and what is numbered is served from memory
            # (the log keeps it for one read) rather than read again from disk.
            script.log.ingest(final=state.state == COMPLETE, budget=RAW_READ_BUDGET - backlog)
        data = None
        if raw_logs:
            runs, last = script.log.read_raw(last_sequence, RAW_READ_BUDGET)
            entries, data = [meta for meta, _ in runs], [raw for _, raw in runs]
        else:
            entries, last = script.log.read(last_sequence)
        more = last < script.log.next_sequence - 1 or script.log.unread()
        return Status(state.spec.ticket, state.state, state.exit_code, entries, last, more, data)

    def finished(self, ticket: str) -> asyncio.Event | None:
        """Set once the script ``ticket`` is Complete; None for a ticket not held (unknown,
        or completed and released)."""
        script = self._scripts.get(ticket_key(ticket))
        return None if script is None else script.done

    async def cancel(self, ticket: str, last_sequence: int) -> Status:
        """Ask the script to stop (SIGTERM, then SIGKILL after its grace); returns its status."""
        script = self._scripts.get(ticket_key(ticket))
        if script is not None and not script.done.is_set():
            script.cancel_requested.set()
            if script.launched is None and script.task is not None:
                script.task.cancel()  # still waiting for a slot or the mutex
        return self.status(ticket, last_sequence)

    async def complete(self, ticket: str) -> None:
        """Remove the script's workspace, remembering its outcome; stops it first if it runs.

        Never raises for an unknown or already completed ticket. The outcome is
        kept as a tombstone (in memory until a full disk lets it be written) so
        that a later start of this ticket does not run it again. A start still
        creating this ticket's workspace is waited for (not its own wait), and
        what it registers is released without being launched.
        """
        try:
            key = ticket_key(ticket)
        except CallError:
            return
        if (starting := self._starting.get(key)) is not None and starting.locked():
            # A start is creating this ticket's workspace (its files may still be
            # arriving): release what it registers rather than let it run later.
            # Only the creation is waited for, never the start's own wait.
            self._releasing.add(key)
            try:
                async with starting:
                    pass
            finally:
                self._releasing.discard(key)
        script = self._scripts.get(key)
        if script is None:
            return
        if not script.done.is_set():
            await self.cancel(ticket, 0)
            await script.done.wait()
        if self._scripts.pop(key, None) is None:
            return  # a concurrent complete did it
        state = script.state
        code = ExitCode.UNKNOWN_RESULT if state.exit_code is None else state.exit_code
        self._completed[key] = Tombstone(state.spec.ticket, code, state.completed or now(),
                                         script.log.next_sequence - 1)  # fmt: skip
        self._unsaved.add(key)
        self._flush()  # the tombstone first: a crash before the rmtree is repaired at start-up
        # Off the event loop: on a disk, freeing the folder's blocks can take
        # milliseconds (online discard), which every other call would wait for.
        await asyncio.to_thread(_remove_folder, script.workspace)
        if key in self._unsaved:
            self._flush()  # a full disk: the workspace's space may be enough for the tombstone

    def sweep(self) -> list[str]:
        """Remove workspaces of scripts completed longer ago than the retention.

        Never touches a script that is not complete. Returns the tickets removed.
        """
        before = cleaner.horizon(self.settings.retention)
        states = {key: script.state for key, script in self._scripts.items()}
        removed = []
        for key in cleaner.expired_scripts(states, before):
            script = self._scripts.pop(key)
            shutil.rmtree(script.workspace, ignore_errors=True)
            removed.append(script.state.spec.ticket)
        cleaner.remove_expired_tombstones(self.settings.work, self._completed, before)
        if removed:
            log.info("removed %d old workspace(s): %s", len(removed), ", ".join(removed))
        return removed

    async def _sweep_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)  # a schedule, not a wait
            self.sweep()

    # -- creating and running ------------------------------------------------

    async def _create(
        self,
        key: str,
        spec: ScriptSpec,
        body: str,
        write_files: FileWriter | None,
        environment: Mapping[str, str],
    ) -> _Script:
        workspace = self.settings.work / key
        shutil.rmtree(workspace, ignore_errors=True)  # debris of a start that never finished
        try:
            workspace.mkdir(mode=WORKSPACE_MODE)
            script_file = workspace / runner.SCRIPT_FILES[spec.syntax]
            script_file.write_text(body.replace("\r\n", "\n"), encoding="utf-8")
            if write_files is not None:
                await write_files(workspace)
            self._hand_over(workspace, spec)  # before the agent's own files: they stay its
            output = OutputLog(workspace)
            state = ScriptState(spec)
            create_state(workspace, state)
        except BaseException as error:
            shutil.rmtree(workspace, ignore_errors=True)
            if isinstance(error, OSError) and error.errno in NO_SPACE:
                raise CallError(
                    INSUFFICIENT_SPACE,
                    f"no space left on the agent's disk for the workspace of {spec.ticket!r} "
                    f"in {self.settings.work} ({error.strerror}): nothing was started",
                ) from None
            raise
        script = _Script(key, workspace, state, output, environment=dict(environment))
        self._scripts[key] = script
        if key in self._releasing:  # a complete waits for this creation: never launch it
            script.log.note("Released by complete before it started")
            self._finish(script, ExitCode.CANCELLED)
        else:
            self._spawn_run(script)
        return script

    def _group_account(self, spec: ScriptSpec) -> GroupAccount | None:
        """The script's isolation group's account, when scripts run as their groups'."""
        if self.settings.users is None:
            return None
        return self.settings.users.account(spec.isolation_group or DEFAULT_GROUP)

    def _owner_of(self, spec: ScriptSpec) -> int | None:
        """The uid a recovered workspace of ``spec`` must be owned by: its group's, as
        recorded (never allocated for a group a state names), -1 for a group without
        one; None when scripts do not run as their groups' uids (nothing to check)."""
        if self.settings.users is None:
            return None
        return self.settings.users.uids.get(spec.isolation_group or DEFAULT_GROUP, -1)

    def _account(self, spec: ScriptSpec) -> runner.Account | None:
        """Whom the script runs as: its group's uid (gid the same, no other groups), the
        configured account, or None (this process's user)."""
        if self.settings.users is not None:
            uid = self.settings.users.uid(spec.isolation_group or DEFAULT_GROUP)
            return runner.Account(uid, uid, ())  # GroupAccount.gid: the same number
        return self.settings.account

    def _hand_over(self, workspace: Path, spec: ScriptSpec) -> None:
        """The new workspace and what the call put in it become the script's account's
        (0700): no other account's script can read, list or write it."""
        if (account := self._account(spec)) is not None:
            runner.hand_over(workspace, account)

    def _spawn_run(self, script: _Script) -> None:
        """Start ``_run`` for ``script``, finishing it as Cancelled if it is cancelled unstarted.

        A task cancelled before its first step runs none of its code, so
        ``_run``'s own handler would never finish it: a complete sent right
        after the start would wait forever, and the Pending state on disk would
        run the script after a restart. The done callback closes that gap.
        """
        task = asyncio.create_task(self._run(script), name=f"script-{script.key}")
        task.add_done_callback(lambda _: self._ended_unfinished(script))
        script.task = task

    def _ended_unfinished(self, script: _Script) -> None:
        if script.done.is_set() or self._closing:
            return  # finished by _run, or left Pending on purpose for the next start-up
        script.log.note("Cancelled before the script started")
        self._finish(script, ExitCode.CANCELLED)

    async def _run(self, script: _Script) -> None:
        spec = script.state.spec
        holder = Holder(spec.ticket, spec.task_id, now(), spec.isolation == "full")
        acquired = False
        try:
            async with _maybe(self._slots):
                try:
                    with _MutexWait(self.metrics, script) as waiting:
                        timeout = spec.mutex_timeout or None
                        await self._mutex.acquire(spec.mutex_name, holder, timeout, waiting.began)
                    acquired = True
                except TimeoutError:
                    script.log.note(f"Timed out after {spec.mutex_timeout} s waiting for the "
                                    f"isolation mutex {spec.mutex_name!r}")  # fmt: skip
                    self._finish(script, ExitCode.TIMEOUT)
                    return
                await self._launch_and_watch(script)
        except asyncio.CancelledError:
            if self._closing:
                raise
            script.log.note("Cancelled before the script started")
            self._finish(script, ExitCode.CANCELLED)
        except Exception as error:  # the agent's own failure, not the script's
            log.exception("script %s failed in the agent", spec.ticket)
            script.log.note(f"The agent failed to run the script: {error}")
            self._finish(script, ExitCode.FATAL)
        finally:
            if acquired:
                self._mutex.release(spec.mutex_name, spec.ticket)

    async def _launch_and_watch(self, script: _Script) -> None:
        # No state is saved before the launch: the wrapper records its own pid
        # first thing, and recovery looks for that record (see _recover).
        spec = script.state.spec
        try:
            group = self._new_group(script)
        except OSError as error:
            script.environment = {}
            script.log.note(f"Could not create the script's cgroup: {error}")
            self._finish(script, ExitCode.LAUNCH_FAILED)
            return
        try:
            launched = runner.launch(script.workspace, spec.syntax, spec.arguments,
                                     self._environment(script), self._account(spec),
                                     None if group is None else group.join)  # fmt: skip
        except OSError as error:
            script.log.note(f"Could not launch the script: {error}")
            if group is not None:
                group.remove()
            self._finish(script, ExitCode.LAUNCH_FAILED)
            return
        finally:
            script.environment = {}  # the process has it now; keep no secret longer
        script.launched, script.group = launched, group
        # Kept in memory only: after a restart, wrapper.pid says it was launched.
        script.state = script.state.moved_to(RUNNING, started=now(), pid=launched.pid)
        if self.metrics is not None:
            self.metrics.scripts_started.inc()
        await self._watch(script)

    async def _watch(self, script: _Script) -> None:
        """Wait for the wrapper to end (or stop it on cancel), then record the outcome."""
        assert script.launched is not None
        if self.metrics is not None:
            self.metrics.scripts_running.inc()
        try:
            await self._follow(script)
        finally:
            if self.metrics is not None:
                self.metrics.scripts_running.dec()

    async def _follow(self, script: _Script) -> None:
        assert script.launched is not None
        exited = asyncio.ensure_future(runner.wait_for_exit(script.launched))
        cancelled = asyncio.ensure_future(script.cancel_requested.wait())
        try:
            await asyncio.wait({exited, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
            if not exited.done():
                exited.cancel()
        grace, group = script.state.spec.grace, script.group
        if not exited.done() or exited.cancelled():
            whom = "its session" if group is None else f"every process in its cgroup {group.path}"
            script.log.note(f"Cancelling: SIGTERM, then SIGKILL after {grace} s, to {whom}")
            if group is None:
                status = await runner.stop(script.launched, grace)
            else:
                status = await runner.stop_tree(script.launched, group, grace)
        else:
            status = exited.result()
        if (code := runner.exit_code(script.workspace)) is not None:
            self._finish_tree(script, code, recorded=True)
        else:
            self._finish_tree(script, self._outcome(script, status))

    def _new_group(self, script: _Script) -> ScriptGroup | None:
        """The script's cgroup with its limits (the call's within the configured ones),
        or None without cgroups. Says in the script's log which limits hold. Raises OSError."""
        asked = script.state.spec.limits
        trees = self.settings.trees
        if trees is None:
            if asked:
                script.log.note(f"Limits asked for ({asked.describe()}) are not enforced: "
                                "this agent runs scripts without cgroups")  # fmt: skip
            return None
        limits = asked.within(self.settings.limits)
        if limits:
            script.log.note(f"Limits: {limits.describe()}")
        if missing := trees.missing(limits):
            script.log.note(f"Not enforced here (no such cgroup controller): {', '.join(missing)}")
        return trees.create(script.key, limits)

    def _finish_tree(self, script: _Script, code: int, *, recorded: bool = False) -> None:
        """``_finish``, after reading what the script's cgroup says about its end (the
        limits it hit) and removing the cgroup if nothing of the script is left in it."""
        if (group := script.group) is not None:
            code, recorded = self._limits_hit(script, group, code, recorded)
            if not group.remove():
                left = len(group.members())
                script.log.note(f"{left} process(es) the script started still run in its "
                                f"cgroup {group.path}")  # fmt: skip
        self._finish(script, code, recorded=recorded)

    def _limits_hit(
        self, script: _Script, group: ScriptGroup, code: int, recorded: bool
    ) -> tuple[int, bool]:
        """Name in the log the limits the script hit; an OOM kill that ended it with
        an error is its exit code (-47, OUT_OF_MEMORY)."""
        hits = group.hits()
        if hits.pids_refused:
            script.log.note(f"The process limit refused {hits.pids_refused} fork(s) "
                            "(pids.max): the script could not start more processes")  # fmt: skip
        if not hits.oom_kills:
            return code, recorded
        script.log.note(f"Out of memory: the kernel killed {hits.oom_kills} process(es) of "
                        f"the script at its memory limit (its exit code was {code})")  # fmt: skip
        if code == 0:
            return code, recorded
        return ExitCode.OUT_OF_MEMORY, False

    def _outcome(self, script: _Script, status: int | None) -> int:
        """The exit code when the wrapper recorded none: from the wrapper's own
        exit status (a full disk), else -46 (or -42 if the wrapper could not
        even record itself and so ran nothing)."""
        passed_on = runner.wrapper_exit_code(status)
        unrecorded = passed_on is not None and runner.recorded_wrapper(script.workspace) is None
        if unrecorded and passed_on == runner.NOT_ISOLATED:
            script.log.note("The script's user kept supplementary groups (its setgroups was "
                            "refused), so the script was not run")  # fmt: skip
            return ExitCode.LAUNCH_FAILED
        if unrecorded:
            script.log.note("The script's wrapper could not record itself (is the disk full?), "
                            "so the script was not run")  # fmt: skip
            return ExitCode.LAUNCH_FAILED
        if passed_on is not None:
            script.log.note("The script's wrapper could not write the exit code (is the disk "
                            "full?); it was taken from the wrapper's own exit status")  # fmt: skip
            return passed_on
        script.log.note("The script's wrapper ended without recording an exit code")
        return ExitCode.UNKNOWN_RESULT

    def _finish(self, script: _Script, code: int, *, recorded: bool = False) -> None:
        """Complete ``script`` with ``code``. With ``recorded`` (the code is the one
        the wrapper wrote down) the state is not written: a restarted agent reads
        the same code from the wrapper's record, and a state file rewritten per
        script is the costliest step of a short one on a disk."""
        # The log is numbered as it is read (see status), not here: a script
        # that printed a gigabyte must not stall the agent when it ends.
        state = script.state.moved_to(COMPLETE, exit_code=code, completed=now())
        if self.metrics is not None:
            self.metrics.scripts_finished.labels(exit_class(code)).inc()
        if recorded:
            script.state = state
        else:
            self._save(script, state)
        script.done.set()

    def _save(self, script: _Script, state: ScriptState) -> None:
        """Take ``state`` at once and write it; a full disk delays only the writing."""
        script.state = state
        self._unsaved.add(script.key)
        self._flush()

    def _flush(self) -> None:
        """Write every state and tombstone kept in memory only; retry later what fails."""
        for key in sorted(self._unsaved):
            try:
                if (stone := self._completed.get(key)) is not None:
                    tombstones.save(self.settings.work, key, stone)
                elif (script := self._scripts.get(key)) is not None:
                    save_state(script.workspace, script.state)
            except OSError as error:
                if self._saver is None or self._saver.done():
                    log.warning("cannot write the state of script %s (%s): kept in memory, "
                                "retried every %g s", key, error, RETRY_SAVE)  # fmt: skip
                    self._saver = asyncio.create_task(self._retry_saves(), name="script-saver")
                continue
            self._unsaved.discard(key)

    async def _retry_saves(self) -> None:
        while self._unsaved and not self._closing:
            await asyncio.sleep(RETRY_SAVE)  # a schedule: free space announces nothing
            self._flush()
        if not self._unsaved:
            log.info("script states written again")

    def _environment(self, script: _Script) -> dict[str, str]:
        # The request's variables replace the agent's own of the same name (PATH, say);
        # the Tentacle* ones it sets itself are refused in a request (RESERVED_VARIABLES)
        own = {"TentacleScriptTicket": script.state.spec.ticket,
               "TentacleWorkspace": str(script.workspace)}  # fmt: skip
        if (group := self._group_account(script.state.spec)) is not None:
            # laid out (repaired) once a launch, here: the account's ids come from the
            # record alone (_account). The group's own folders: one project's
            # deployments, journal and temporary files (the executor's private
            # variables folders) are not another's
            own.update(
                TentacleHome=str(group.folder),  # files.upload's folder for the group
                HOME=str(group.folder),
                TMPDIR=str(group.temp),
                TentacleApplications=str(group.applications),
                TentacleJournal=str(group.journal),
                TentacleIsolationGroup=group.group,
            )
        return {**self.settings.environment, **script.environment, **own}

    # -- recovery (decided in agent.scripts.recovery) ------------------------

    def _recover(self, adopted: Adopted) -> None:
        state = adopted.state
        script = _Script(adopted.key, adopted.workspace, state, OutputLog(adopted.workspace))
        self._scripts[adopted.key] = script
        if adopted.fate is Fate.FINISHED:
            script.done.set()
        elif adopted.fate is Fate.TAMPERED:
            script.log.note(f"Tampered workspace found after the restart: {adopted.tampered}; "
                            "its state is not followed and the script is not run again (its "
                            "result is unknown)")  # fmt: skip
            script.group = self._found_group(adopted.key)
            if script.group is None:
                self._finish(script, ExitCode.UNKNOWN_RESULT)
            else:  # whatever still runs in its cgroup is given up on and killed
                name = f"script-{adopted.key}"
                script.task = asyncio.create_task(self._given_up(script), name=name)
        elif adopted.fate is Fate.RESTART and state.spec.with_environment:
            # Its Environment was in the previous agent's memory only: running it
            # without would run something else than was asked (a deployment without
            # its password, say). The caller learns it from the exit code and the note.
            script.log.note("The agent restarted before this script was launched, and its "
                            "Environment (kept in memory only, never on disk) went with it: "
                            "not run; start it again under a new ticket")  # fmt: skip
            self._finish(script, ExitCode.LAUNCH_FAILED)
        elif adopted.fate is Fate.RESTART:
            self._save(script, state)
            self._spawn_run(script)
        elif adopted.fate is Fate.RECORDED:
            assert adopted.exit_code is not None
            script.group = self._found_group(adopted.key)
            self._finish_tree(script, adopted.exit_code)  # written: a restart is rare
        elif adopted.fate is Fate.LOST:
            script.log.note("The script ended while the agent was down, without an exit code")
            script.group = self._found_group(adopted.key)
            self._finish_tree(script, ExitCode.UNKNOWN_RESULT)
        elif not self._in_its_group(adopted):
            script.log.note("The wrapper.pid found after the restart names a process that is "
                            "not in the script's cgroup: not followed, and the processes in "
                            "that cgroup (the script's own) were killed")  # fmt: skip
            script.group = self._found_group(adopted.key)
            if script.group is None:
                self._finish(script, ExitCode.UNKNOWN_RESULT)
            else:  # its outcome is given up on: nothing of it runs on
                script.task = asyncio.create_task(
                    self._given_up(script), name=f"script-{adopted.key}"
                )
        elif not self._runs_as_its_owner(adopted):
            script.log.note("The wrapper.pid found after the restart names a process that does "
                            "not run as the workspace's owner: not followed")  # fmt: skip
            self._finish(script, ExitCode.UNKNOWN_RESULT)
        else:
            assert adopted.launched is not None
            script.group = self._found_group(adopted.key)
            log.info("re-attached to script %s (pid %d%s)", state.spec.ticket, adopted.launched.pid,
                     "" if script.group is None else f", cgroup {script.group.path}")  # fmt: skip
            script.launched = adopted.launched
            holder = Holder(state.spec.ticket, state.spec.task_id, state.started or now(),
                            state.spec.isolation == "full")  # fmt: skip
            self._mutex.hold(state.spec.mutex_name, holder)
            name = f"script-{adopted.key}"
            script.task = asyncio.create_task(self._reattached(script), name=name)

    async def _given_up(self, script: _Script) -> None:
        """Kill what runs in the cgroup of a script not followed; then complete it."""
        assert script.group is not None
        script.group.kill()
        await runner.emptied(script.group)
        self._finish_tree(script, ExitCode.UNKNOWN_RESULT)

    def _found_group(self, key: str) -> ScriptGroup | None:
        """The cgroup a previous agent made for the script ``key``, if there is one (a
        script launched without cgroups, or by an older agent, has none)."""
        trees = self.settings.trees
        return None if trees is None else trees.find(key)

    def _in_its_group(self, adopted: Adopted) -> bool:
        """Whether the wrapper to re-attach is in the script's cgroup, where it put
        itself before it ran anything: a wrapper.pid the script rewrote cannot make
        this agent follow (and kill on a cancel) another process."""
        group = self._found_group(adopted.key)
        if group is None or adopted.launched is None:
            return True  # launched without a cgroup: the owner check below still holds
        return adopted.launched.pid in group.members()

    def _runs_as_its_owner(self, adopted: Adopted) -> bool:
        """Whether the wrapper to re-attach runs as its workspace's owner. A script run
        as another account (``ScriptSettings.account``, now or before a restart) owns
        its workspace and can write its wrapper.pid: a forged one must not make this
        process follow, or signal on a cancel, a process that is not that account's.
        An agent's own workspaces (its user's, no account) are not looked at."""
        if adopted.launched is None:
            return True
        try:
            owner = adopted.workspace.stat().st_uid
        except OSError:
            return False
        if self.settings.account is None and owner == os.geteuid():
            return True
        return runner.owner(adopted.launched.pid) == owner

    async def _reattached(self, script: _Script) -> None:
        try:
            await self._watch(script)
        finally:
            self._mutex.release(script.state.spec.mutex_name, script.state.spec.ticket)


def _remove_folder(folder: Path) -> None:
    """Remove ``folder`` and what is in it, freeing its own blocks after the rmdir.

    The folder is held open across its removal so that its last reference, and
    with it the freeing of its block, goes with the close: a filesystem mounted
    with ``discard`` then discards it without holding the work folder's lock,
    which every other script's start needs (a mkdir, a lookup) and would wait for.
    """
    try:
        held = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(held)


class _MutexWait:
    """Counts one acquisition's wait for the isolation mutex, if it has to wait:
    ``began`` when it starts waiting; the wait ends with the block, however it ends
    (granted, timed out, cancelled)."""

    def __init__(self, metrics: AgentMetrics | None, script: _Script) -> None:
        self.metrics = metrics
        self.script = script
        self.since: float | None = None

    def began(self, holders: list[Holder]) -> None:
        """The script has to wait for ``holders``: noted in its log, and counted."""
        _note_wait(self.script, holders)
        if self.metrics is not None:
            self.since = time.monotonic()
            self.metrics.mutex_waits.inc()
            self.metrics.mutex_waiting.inc()

    def __enter__(self) -> _MutexWait:
        return self

    def __exit__(self, *_: object) -> None:
        if self.metrics is not None and self.since is not None:
            self.metrics.mutex_waiting.dec()
            self.metrics.mutex_wait_seconds.observe(time.monotonic() - self.since)


def _note_wait(script: _Script, holders: list[Holder]) -> None:
    names = ", ".join(f"{h.ticket} (task {h.task_id or '?'}, since {h.since})" for h in holders)
    spec = script.state.spec
    script.log.note(f"Waiting for the isolation mutex {spec.mutex_name!r}, held by {names}")


@contextlib.asynccontextmanager
async def _maybe(semaphore: asyncio.Semaphore | None) -> Any:
    if semaphore is None:
        yield
        return
    async with semaphore:
        yield


async def _done_or_a_page(script: _Script) -> None:
    """Return once ``script`` is done or has printed a status page's worth of output.

    A start waits for a short script's end, so that its outcome comes in one round
    trip; but a long output is read while it is printed, not once it is all on the
    disk (P3: a quarter of the time went there). The output goes to its files, not
    through the agent, so nothing tells of it: their sizes are looked at every
    OUTPUT_LOOK s, only during a start's wait."""
    while not script.done.is_set():
        if script.log.unread_bytes() >= RAW_READ_BUDGET:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(OUTPUT_LOOK):
                await script.done.wait()
