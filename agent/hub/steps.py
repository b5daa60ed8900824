"""The step engine: a task's work run as steps, one invocation on one worker each.

``run_steps`` leases every step of a task first (``task_steps`` rows, Pending, each
with its worker, its script ticket and its activity, in one transaction), then
runs at most ``max_parallelism`` of them at once: Pending -> ``work.prepare``
-> Running (written before the script is sent) -> ``Worker.execute`` -> the end.
Log lines are masked, then stored as they arrive, in batches, each batch with the
step's ``next_log_sequence`` in one transaction; the worker waits for a batch to
be stored before it is asked for more output (``drained``), so memory stays
bounded whatever a script prints, and every line is stored before the script's
workspace is released.

Called again for a task whose steps exist (the hub restarted), it re-attaches:
ended steps keep their results, Running ones are followed again by ticket
(``work.resume``, never ``prepare``: the agents start a ticket at most once), and
their lines below the stored ``next_log_sequence`` are skipped, so that no line is
lost or repeated. Service messages (``setVariable``, ``createArtifact``) are read
from every line, also the skipped ones, so a re-attached step still has them all.

Cancelling (``cancel`` set) or the timeout cancels the steps' scripts and waits for
their outcomes (also on a re-attach: Running steps are followed, their scripts
cancelled, and end with their scripts' ends; only Pending ones end at once); an
``asyncio`` cancellation (the hub stopping) leaves the scripts running and the steps
as stored, for the next start to re-attach.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

from sqlalchemy.ext.asyncio import AsyncConnection

from agent.calamari.masking import Masker
from agent.calamari.service_messages import LEVEL_SWITCHES, parse_line
from agent.client import DRAINING, LogChunk, ScriptOutcome, ScriptRequest, Worker
from agent.errors import RemoteError
from agent.hub.runner import TaskLog
from agent.hub.store import steps as store_steps
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import Row

log = logging.getLogger("agent.hub.steps")

SUCCESS, FAILED, CANCELED, TIMED_OUT = "Success", "Failed", "Canceled", "TimedOut"
BATCH_LINES = 2000  # log lines stored in one transaction at most
BATCH_CHARS = 4 * 1024 * 1024  # characters of log lines stored in one transaction at most
CANCEL_PATIENCE = 60.0  # seconds a cancelled script is given to report its end
MASK = "********"
# Octopus's categories of a script's lines
CATEGORIES = {"stdout": "Info", "stderr": "Error"}


@dataclass(frozen=True)
class StepResult:
    """How one step ended. ``error``: one line for people, naming the worker."""

    state: str  # Success | Failed | Canceled | TimedOut
    exit_code: int | None
    error: str | None
    output_variables: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (path on worker, name)


@dataclass(frozen=True)
class ChosenWorker:
    """A worker a step runs on: its row id (None for the hub's built-in worker) and name.
    ``row``: the worker's row as the choice read it, for a step that starts at once
    (``Connect`` need not read it again); None: read it when connecting."""

    name: str
    worker_id: int | None
    builtin: bool = False
    row: Row | None = field(default=None, compare=False, repr=False)


class StepLog:
    """Lines an executor writes into one step's activity (masked like the output)."""

    def __init__(self, task_log: TaskLog, activity: int, masker: Masker) -> None:
        self._task_log = task_log
        self._activity = activity
        self._masker = masker

    async def info(self, text: str) -> None:
        await self._write("Info", text)

    async def warning(self, text: str) -> None:
        await self._write("Warning", text)

    async def error(self, text: str) -> None:
        await self._write("Error", text)

    async def _write(self, category: str, text: str) -> None:
        await self._task_log.write(self._activity, [(category, self._masker.mask(text))])


class StepWork(Protocol):
    """What one invocation does on one worker, around its script."""

    async def prepare(self, worker: Worker, ticket: str, log: StepLog) -> ScriptRequest:
        """Called once per step before its script starts (again only if the hub stopped
        before the step was Running: nothing had been sent then): upload what the
        script needs, return the request (its ticket = ``ticket``)."""
        ...

    async def resume(self, worker: Worker, ticket: str, log: StepLog) -> ScriptRequest:
        """Called instead of ``prepare`` when re-attaching to a Running step after a
        restart: the request to follow ``ticket`` with (the worker follows the script
        it has; the body matters only if the start never reached it). No side effects
        on the worker are expected."""
        ...

    async def collect(
        self, worker: Worker, ticket: str, result: StepResult, log: StepLog
    ) -> StepResult:
        """Called after the script ended: fetch artifacts, say; may change the result."""
        ...

    def masked(self) -> Sequence[str]:
        """Sensitive values to mask (all their encodings) in every line before it is stored."""
        ...


# The workers of a new task's steps, read on the connection of the transaction that
# leases them (no other lease falls between the choice and its own)
Choose = Callable[[AsyncConnection], Awaitable[Sequence[ChosenWorker]]]
Connect = Callable[[ChosenWorker], Awaitable[Worker]]
# Who runs a step instead of a worker whose agent drains (it said the message); Refused
# if nobody can
Reroute = Callable[[ChosenWorker, str], Awaitable[ChosenWorker]]
MAX_MOVES = 50  # a step moved from a draining worker this many times fails instead


class _Drained(Exception):
    """The step's worker refused its script because its agent drains: nothing ran."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Refused(Exception):
    """No step can run (no worker to run it on): the task fails with this message."""


async def run_steps(
    task_log: TaskLog,
    choose: Choose,
    connect: Connect,
    work: Callable[[ChosenWorker], StepWork],
    max_parallelism: int,
    timeout: float | None,
    cancel: asyncio.Event,
    reroute: Reroute | None = None,
) -> list[StepResult]:
    """Run (or re-attach to) the task's steps; returns each one's result, in lease order.

    ``choose`` is called only when the task has no steps yet (it may raise Refused);
    ``connect`` gives the ``Worker`` of a step (closed after the step); ``timeout``:
    seconds from now for the steps still to end (None: none). A step whose worker
    refuses it because its agent drains (error kind ``draining``: nothing ran) is
    given to the worker ``reroute`` names and run there from the start; if
    ``reroute`` is None or refuses, it fails with that message (never as the
    script's failure). store_tasks.TakenOver if the task is no longer this process's."""
    steps, works, chosen = await _leased(task_log, choose, work, max_parallelism)
    engine = _Engine(task_log, connect, work, max_parallelism, works, reroute, chosen)
    return await engine.run(steps, timeout, cancel)


def instant(work: StepWork) -> bool:
    """Whether ``work.prepare`` does nothing on the worker (no upload, no call): its
    steps are then leased Running when they can start at once (``INSTANT`` true)."""
    return bool(getattr(work, "INSTANT", False))


async def _leased(
    task_log: TaskLog, choose: Choose, work: Callable[[ChosenWorker], StepWork], parallelism: int
) -> tuple[list[Row], dict[str, StepWork], dict[str, ChosenWorker]]:
    """The task's steps, leased now if it has none; the work of those leased here, by
    ticket (made once per step: ``work`` is called for them here); and the workers
    chosen for those that start at once, by ticket (their rows read by the choice).
    Steps of instant work that start at once (the first ``parallelism``) are leased
    Running, their activity too, in the lease's transaction: what would be written
    next, before the start is sent, anyway; re-attaching to such a step follows its
    ticket, which the worker starts at most once, with the same request. A task this
    process has just claimed (``TaskLog.fresh``) has no steps: none are read back."""
    if not task_log.fresh:
        async with task_log.store.connect() as conn:
            steps = await store_steps.steps_of(conn, task_log.task_id)
        if steps:
            return steps, {}, {}
    async with task_log.store.transaction() as conn:
        await store_tasks.ensure_owned(conn, task_log.task_id, task_log.owner)
        # the choice on the lease's connection: one fewer, and the busy counts it reads
        # include every lease committed before this one
        chosen = list(await choose(conn))
        now = task_log.now()
        works = [work(one) for one in chosen]
        leases = [
            store_steps.Lease(
                one.worker_id,
                one.name,
                one.builtin,
                _ticket(task_log.task_id),
                started=now if position < max(1, parallelism) and instant(its) else None,
            )
            for position, (one, its) in enumerate(zip(chosen, works, strict=True))
        ]
        activities = [
            await store_tasks.start_activity(conn, task_log.task_id, one.name, now)
            for one in chosen
        ]
        for activity, one in zip(activities, leases, strict=True):
            if one.started is None:  # shown Pending until the step runs
                await store_steps.activity_status(conn, activity, "Pending")
        steps = await store_steps.lease(
            conn, task_log.task_id, leases, activities, task_log.owner.node
        )
    at_once = {
        lease.ticket: one
        for lease, one in zip(leases, chosen, strict=True)
        if lease.started is not None
    }
    return steps, {lease.ticket: its for lease, its in zip(leases, works, strict=True)}, at_once


def _ticket(task_id: int) -> str:
    return f"task{task_id}-{secrets.token_hex(12)}"


def chosen_of(step: Row) -> ChosenWorker:
    return ChosenWorker(step["worker_name"], step["worker_id"], bool(step["builtin"]))


class _Engine:
    def __init__(
        self,
        task_log: TaskLog,
        connect: Connect,
        work: Callable[[ChosenWorker], StepWork],
        max_parallelism: int,
        works: dict[str, StepWork] | None = None,
        reroute: Reroute | None = None,
        chosen: dict[str, ChosenWorker] | None = None,
    ) -> None:
        self.task_log = task_log
        # the workers chosen for the steps leased Running by this call, by ticket: their
        # rows were just read (Connect need not read them again); taken once
        self.chosen = chosen or {}
        self.reroute = reroute
        self.connect = connect
        self.work = work
        self.gate = asyncio.Semaphore(max(1, max_parallelism))
        # the work of the steps leased by this call, by ticket: a Running one among
        # them was leased so (instant work), its start not sent yet
        self.works = works or {}
        self.unended = 0  # steps not ended yet: the last one's end goes with the task's
        self.stopping: str | None = None  # CANCELED or TIMED_OUT once the task is stopped
        self.stop = asyncio.Event()

    async def run(
        self, steps: list[Row], timeout: float | None, cancel: asyncio.Event
    ) -> list[StepResult]:
        results: dict[int, StepResult] = {}
        # Running steps first: on a re-attach they hold their slots already
        order = sorted(steps, key=lambda s: (s["state"] != store_steps.RUNNING, s["id"]))
        self.unended = sum(step["state"] not in store_steps.ENDED for step in steps)
        watcher = asyncio.create_task(self._watch(cancel, timeout))
        try:

            async def one(step: Row) -> None:
                results[step["id"]] = await self._step(step)

            if len(order) == 1:  # in this task: no task of its own, no loop turn before it
                await one(order[0])
            else:
                await asyncio.gather(*(one(step) for step in order))
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        return [results[step["id"]] for step in steps]

    async def _watch(self, cancel: asyncio.Event, timeout: float | None) -> None:
        reason = CANCELED
        try:
            async with asyncio.timeout(timeout):
                await cancel.wait()
        except TimeoutError:
            reason = TIMED_OUT
        self.stopping = reason
        self.stop.set()

    async def _step(self, step: Row) -> StepResult:
        if step["state"] in store_steps.ENDED:
            return _stored_result(step)
        async with self.gate:
            # a Running step's script may still run (a re-attach after a cancel): it is
            # followed by ticket, the cancel passed on, and ends with the script's end
            if self.stopping is not None and step["state"] == store_steps.PENDING:
                result = StepResult(self.stopping, None, _stopped(step, self.stopping))
                await self._end(step, result)
                return result
            return await self._run(step)

    async def _run(self, step: Row) -> StepResult:
        """The step on its worker; on another if that one drains (see run_steps)."""
        for _ in range(MAX_MOVES):
            try:
                return await self._run_on_worker(step)
            except _Drained as drained:
                moved = await self._moved(step, drained.message)
                if isinstance(moved, StepResult):
                    return moved
                step = moved
        result = StepResult(FAILED, None, f"{step['worker_name']}: moved {MAX_MOVES} times "
                                          "from draining workers; not run")  # fmt: skip
        await self._end(step, result)
        return result

    async def _moved(self, step: Row, message: str) -> Row | StepResult:
        """The step given to another worker (its row as it now is), or its failed end."""
        chosen = chosen_of(step)
        self.works.pop(step["ticket"], None)  # the work was made for the refusing worker
        self.chosen.pop(step["ticket"], None)
        try:
            if self.reroute is None:
                raise Refused(f"{chosen.name} is draining (it starts no new scripts)")
            other = await self.reroute(chosen, message)
        except Refused as refused:
            await self._log(step, "Warning", f"{chosen.name} refused the step: {message}")
            result = StepResult(FAILED, None, str(refused))
            await self._end(step, result)
            return result
        async with self.task_log.store.transaction() as conn:
            await store_tasks.ensure_owned(conn, self.task_log.task_id, self.task_log.owner)
            await store_tasks.log(conn, self.task_log.task_id, step["activity_id"], "Info",
                                  f"{chosen.name} refused the step ({message}); it runs on "
                                  f"{other.name} instead", self.task_log.now())  # fmt: skip
            return await store_steps.move(conn, step, other.worker_id, other.name, other.builtin)

    async def _log(self, step: Row, category: str, message: str) -> None:
        await self.task_log.write(step["activity_id"], [(category, message)])

    async def _run_on_worker(self, step: Row) -> StepResult:
        chosen = self.chosen.pop(step["ticket"], None) or chosen_of(step)
        work = self.works.get(step["ticket"]) or self.work(chosen)
        masker = Masker(set(work.masked()))
        step_log = StepLog(self.task_log, step["activity_id"], masker)
        try:
            worker = await self.connect(chosen)
        except Exception as error:
            result = StepResult(FAILED, None, f"{chosen.name}: {_said(error)}")
            await self._end(step, result)
            return result
        try:
            return await self._on(worker, step, work, step_log, masker)
        finally:
            # not awaited here: the last step's end goes with the task's, which the
            # close (the answer to the script's complete) would otherwise hold up
            self.task_log.close_later(worker.close())

    async def _on(
        self, worker: Worker, step: Row, work: StepWork, step_log: StepLog, masker: Masker
    ) -> StepResult:
        name, ticket = step["worker_name"], step["ticket"]
        follower = Follower(self.task_log, step, masker)
        try:
            if step["state"] == store_steps.PENDING:
                await self._activity(step, "Running")
                request = await work.prepare(worker, ticket, step_log)
                await self._mark_running(step)
            elif step["ticket"] in self.works:  # leased Running (instant): not sent yet
                request = await work.prepare(worker, ticket, step_log)
            else:
                request = await work.resume(worker, ticket, step_log)
            outcome = await self._execute(worker, request, follower)
            await follower.drained()
            result = _judged(name, outcome, follower, self.stopping)
            result = await work.collect(worker, ticket, result, step_log)
        except (asyncio.CancelledError, store_tasks.TakenOver):
            raise  # the hub stops (or lost the task): the step stays as stored
        except Exception as error:
            if _is_draining(error) and self.stopping is None:
                raise _Drained(error.remote_message) from None  # nothing ran: another worker
            with contextlib.suppress(Exception):
                await follower.drained()
            log.warning("step %s of ServerTasks-%d failed: %s", name, step["task_id"], error)
            state = self.stopping or FAILED
            result = StepResult(state, None, f"{name}: {_said(error)}", follower.variables())
        await self._end(step, result)
        return result

    async def _execute(
        self, worker: Worker, request: ScriptRequest, follower: Follower
    ) -> ScriptOutcome:
        """The script run to its end; when the task is stopped, its script is cancelled
        and its outcome still waited for (for CANCEL_PATIENCE s)."""
        script_cancel = asyncio.Event()
        running = asyncio.ensure_future(worker.execute(request, follower, script_cancel))
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                script_cancel.set()
                async with asyncio.timeout(CANCEL_PATIENCE):
                    return await asyncio.shield(running)
            return running.result()
        finally:
            stopped.cancel()
            if not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)

    async def _activity(self, step: Row, status: str) -> None:
        async with self.task_log.store.transaction() as conn:
            await store_tasks.ensure_owned(conn, self.task_log.task_id, self.task_log.owner)
            await store_steps.activity_status(
                conn, step["activity_id"], status, self.task_log.now()
            )

    async def _mark_running(self, step: Row) -> None:
        async with self.task_log.store.transaction() as conn:
            await store_tasks.ensure_owned(conn, self.task_log.task_id, self.task_log.owner)
            await store_steps.mark_running(conn, step["id"], self.task_log.now())

    async def _end(self, step: Row, result: StepResult) -> None:
        """The step's end, its activity's and its error line, in one transaction; the
        last step's is written with the task's own end (``TaskLog.at_end``): the
        task's outcome follows from its steps', nothing is sent in between, and a
        restart before that commit re-attaches to the step as if it were running."""
        self.unended -= 1
        if self.unended == 0:
            self.task_log.at_end(lambda conn: self._write_end(conn, step, result))
            return
        async with self.task_log.store.transaction() as conn:
            await store_tasks.ensure_owned(conn, self.task_log.task_id, self.task_log.owner)
            await self._write_end(conn, step, result)

    async def _write_end(self, conn: AsyncConnection, step: Row, result: StepResult) -> None:
        now = self.task_log.now()
        status = {SUCCESS: "Success", CANCELED: "Canceled"}.get(result.state, "Failed")
        if result.error:
            await store_tasks.log(
                conn, self.task_log.task_id, step["activity_id"], "Error", result.error, now
            )
        await store_steps.end(
            conn,
            step["id"],
            result.state,
            result.exit_code,
            result.error,
            result.output_variables,
            now,
        )
        await store_tasks.end_activity(conn, step["activity_id"], status, now)


class Follower:
    """``on_output`` of one step: lines masked and kept until ``drained()`` stores them
    (the agent client awaits it after each delivery), with the step's cursor."""

    def __init__(self, task_log: TaskLog, step: Row, masker: Masker) -> None:
        self.task_log = task_log
        self.step = step
        self.masker = masker
        self.next_sequence = int(step["next_log_sequence"])  # lines below it are stored
        self.pending: list[tuple[int, str, str]] = []  # (sequence, category, text)
        self.seen = self.next_sequence  # the sequence after the last line handed over
        self.outputs: dict[str, dict[str, Any]] = {}
        self.artifacts: list[tuple[str, str]] = []
        self._lock = asyncio.Lock()

    def __call__(self, chunk: LogChunk) -> None:
        category = CATEGORIES.get(chunk.source, "Info")
        for offset, line in enumerate(chunk.lines):
            sequence = chunk.first + offset
            text = self._read(line)
            if sequence < self.seen:
                continue  # stored before a restart (its service message is read again)
            self.seen = sequence + 1
            if text is not None:
                self.pending.append((sequence, category, self.masker.mask(text)))

    def _read(self, line: str) -> str | None:
        """The line to store, or None for a service message (taken in here)."""
        message = parse_line(line)
        if message is None:
            return line
        if message.name == "setVariable":
            name, value = message.get("name"), message.get("value")
            if name:
                sensitive = (message.get("sensitive") or "").lower() == "true"
                shown = MASK if sensitive else self.masker.mask(value or "")
                self.outputs[name] = {"Name": name, "Value": shown, "IsSensitive": sensitive}
            return None
        if message.name == "createArtifact":
            path = message.get("path")
            if path:
                self.artifacts.append((path, message.get("name") or path.rsplit("/", 1)[-1]))
            return None
        if message.name in LEVEL_SWITCHES:
            return None
        return line

    def variables(self) -> list[dict[str, Any]]:
        return list(self.outputs.values())

    async def drained(self) -> None:
        """Store every line handed over so far, in batches, each with the cursor."""
        async with self._lock:
            while self.pending or self.seen > self.next_sequence:
                count, chars = 0, 0
                while count < len(self.pending) and count < BATCH_LINES and chars < BATCH_CHARS:
                    chars += len(self.pending[count][2])
                    count += 1
                batch, self.pending = self.pending[:count], self.pending[count:]
                upto = batch[-1][0] + 1 if self.pending else self.seen
                await self._store([(category, text) for _, category, text in batch], upto)

    async def _store(self, lines: list[tuple[str, str]], next_sequence: int) -> None:
        task_log = self.task_log
        async with task_log.store.transaction() as conn:
            await store_tasks.ensure_owned(conn, task_log.task_id, task_log.owner)
            await store_steps.store_lines(
                conn, task_log.task_id, self.step, lines, next_sequence, task_log.now()
            )
        self.next_sequence = next_sequence


def _judged(
    name: str, outcome: ScriptOutcome, follower: Follower, stopping: str | None
) -> StepResult:
    code = outcome.exit_code
    variables, artifacts = follower.variables(), list(follower.artifacts)
    if outcome.cancelled and stopping is not None:
        return StepResult(stopping, code, _stopped_named(name, stopping), variables, artifacts)
    if code == 0:
        return StepResult(SUCCESS, 0, None, variables, artifacts)
    error = f"{name}: the script exited with code {code}"
    return StepResult(FAILED, code, error, variables, artifacts)


def _stopped(step: Row, reason: str) -> str:
    return _stopped_named(step["worker_name"], reason)


def _stopped_named(name: str, reason: str) -> str:
    if reason == TIMED_OUT:
        return f"{name}: the task timed out"
    return f"{name}: canceled"


def _stored_result(step: Row) -> StepResult:
    return StepResult(
        step["state"], step["exit_code"], step["error"], list(step["output_variables"] or [])
    )


def _is_draining(error: Exception) -> TypeGuard[RemoteError]:
    """Whether ``error`` is a worker's refusal to start a script because its agent drains."""
    return isinstance(error, RemoteError) and error.kind == DRAINING


def _said(error: BaseException) -> str:
    return str(error) or type(error).__name__
