"""Running server tasks: claim queued ones up to the node's task cap, run each with
the executor its name picks, log what it does, and finish it in the store.

The store is the truth: a task is claimed (Queued -> Executing) in the
database before it runs, so a second node never runs it too; a cancel is a
state written by the API, which this runner then applies to the running
task. Health tasks run outside the cap (rules.dispatch): a full queue never delays
them. Tasks this node was running when it stopped are failed on its next start,
once that start holds the node's lease (agent.hub.lease), except the resumable ones
(AdHocScript, Deploy: their steps are in the store with their scripts' tickets),
which that start takes over and re-attaches to (agent.hub.steps). Every write a running
task makes is conditional on the task being still this process's (its owner:
node name and lease token): a process that was frozen past its lease, whose
tasks another node failed meanwhile, drops what it would write and moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub.changes import TaskChanges
from agent.hub.rules.dispatch import OUTSIDE_CAP, free_slots
from agent.hub.store import Store
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import Row

log = logging.getLogger("agent.hub.tasks")

IDLE_POLL = 5.0  # seconds between looks at the queue when nothing wakes the runner
CANCEL_LOOK = 1.0  # seconds between reads of the running tasks' cancels, at the most
FINISH_PATIENCE = 120.0  # seconds a task's end is retried while the database is away
BATCH = 200  # finished activities written in one transaction at most


@dataclass(frozen=True)
class Outcome:
    """How a task ended: ``succeeded``, with ``warnings``, or failed with ``error``."""

    succeeded: bool
    warnings: bool = False
    error: str | None = None
    state: str | None = None  # the task's end state when not Success/Failed (TimedOut...)


class TaskLog:
    """What an executor writes: activities (one per worker, say) and their log lines.
    ``cancel`` is set when the task is to be cancelled (for resumable executors,
    which cancel their steps' scripts themselves; the others are cancelled as asyncio
    tasks)."""

    def __init__(
        self,
        store: Store,
        task_id: int,
        now: Callable[[], datetime],
        owner: store_tasks.Owner,
        fresh: bool = False,
    ) -> None:
        self.store = store
        self.task_id = task_id
        self.now = now
        self.owner = owner
        # claimed from the queue by this process: nothing of it is stored yet (no steps,
        # no activities), so an executor need not read them back (a taken-over task's are)
        self.fresh = fresh
        self.cancel = asyncio.Event()
        self.end_writes: list[Callable[[AsyncConnection], Awaitable[None]]] = []
        self._closing: set[asyncio.Future[None]] = set()

    def at_end(self, write: Callable[[AsyncConnection], Awaitable[None]]) -> None:
        """``write`` made in the transaction that writes the task's end (and only if it
        does: not if the task was taken over, nor when the hub stops and leaves it
        running): one commit fewer for what is known by then (a last step's end)."""
        self.end_writes.append(write)

    def close_later(self, closing: Awaitable[None]) -> None:
        """Run ``closing`` (a step's worker closed) without holding the task's end up:
        the runner awaits it after the end is written (``closed``). A listening
        worker's client waits there for the answer to the script's ``complete`` (the
        workspace released), a round trip to the agent that the task's caller need
        not wait for: the script's lines are stored before its complete is sent, and
        its end needs no answer to it (a complete that never lands leaves the
        workspace to the agent's retention)."""
        future = asyncio.ensure_future(closing)
        self._closing.add(future)
        future.add_done_callback(self._closing.discard)

    async def closed(self) -> None:
        """Every ``close_later`` done (their errors ignored: a close reports nothing)."""
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A transaction for this task's writes; store_tasks.TakenOver (and nothing
        written) if the task is no longer this process's."""
        async with self.store.transaction() as conn:
            await store_tasks.ensure_owned(conn, self.task_id, self.owner)
            yield conn

    async def activity(self, name: str) -> int:
        async with self._writing() as conn:
            return await store_tasks.start_activity(conn, self.task_id, name, self.now())

    async def write(self, activity: int | None, lines: list[tuple[str, str]]) -> None:
        """Append ``(category, message)`` lines, in one transaction."""
        async with self._writing() as conn:
            for category, message in lines:
                await store_tasks.log(conn, self.task_id, activity, category, message, self.now())

    async def end(self, activity: int, status: str) -> None:
        async with self._writing() as conn:
            await store_tasks.end_activity(conn, activity, status, self.now())

    async def finished_activities(self, entries: list[FinishedActivity]) -> None:
        """Whole activities (started, their lines, ended) and each one's ``also``
        writes, in one transaction."""
        async with self._writing() as conn:
            for entry in entries:
                activity = await store_tasks.start_activity(
                    conn, self.task_id, entry.name, entry.started
                )
                for category, message in entry.lines:
                    await store_tasks.log(
                        conn, self.task_id, activity, category, message, self.now()
                    )
                await store_tasks.end_activity(conn, activity, entry.status, self.now())
                if entry.also is not None:
                    await entry.also(conn)

    @contextlib.asynccontextmanager
    async def batched(self) -> AsyncIterator[Callable[[FinishedActivity], None]]:
        """``add(entry)`` for finished activities, written by one writer in batches.

        Many checks at once each committing on its own connection spent a round of
        2,000 health checks mostly waiting for SQLite's write lock; one writer
        taking whatever has finished meanwhile commits each batch once, and never
        contends with itself. Leaving the block writes the rest (and raises what
        writing raised)."""
        queue: asyncio.Queue[FinishedActivity | None] = asyncio.Queue()

        async def writer() -> None:
            done = False
            while not done:
                batch = [await queue.get()]
                while not queue.empty() and len(batch) < BATCH:
                    batch.append(queue.get_nowait())
                done = batch[-1] is None
                entries = [entry for entry in batch if entry is not None]
                if entries:
                    await self.finished_activities(entries)

        writing = asyncio.create_task(writer(), name=f"task-{self.task_id}-log")
        try:
            yield queue.put_nowait
        except BaseException:
            # cancelled (or failed): what finished before is still written, as it was
            # when each check wrote its own
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.shield(writing)
            raise
        queue.put_nowait(None)
        await writing


@dataclass(frozen=True)
class FinishedActivity:
    """An activity whose work is over: its name, start, lines and end status, and
    writes of its own to make in the same transaction (``also``)."""

    name: str
    started: datetime
    lines: list[tuple[str, str]]
    status: str
    also: Callable[[AsyncConnection], Awaitable[None]] | None = None


Executor = Callable[[Row, TaskLog], Awaitable[Outcome]]
# Tasks whose steps survive a restart of the hub (agent.hub.steps): re-attached on the
# node's next start instead of failed, and left running (not failed) when it stops.
RESUMABLE = frozenset({"AdHocScript", "Deploy"})


class TaskRunner:
    def __init__(
        self,
        store: Store,
        owner: store_tasks.Owner,
        cap: int,
        executors: dict[str, Executor],
        now: Callable[[], datetime],
        resumable: frozenset[str] = RESUMABLE,
        changes: TaskChanges | None = None,
    ) -> None:
        self.store = store
        self.changes = changes or TaskChanges()  # told of each claim and end, once committed
        self.owner = owner
        self.node = owner.node
        self.cap = cap
        self.executors = executors
        self.now = now
        self.resumable = resumable
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._names: dict[int, str] = {}  # the running tasks' names (the cap's count)
        self._logs: dict[int, TaskLog] = {}
        self._loop: asyncio.Task[None] | None = None
        self.queue_errors = 0  # times the queue could not be read (the database away)
        # whether tasks to take over may be waiting: after this start's look, only a
        # dead node's adopted here (``adopted``) makes more; no look on other wakes
        self._orphans = False
        # whether the cancels asked of the running tasks are to be read on the next turn:
        # after a wake that may be one (``wake``), and at least every CANCEL_LOOK s (a
        # cancel asked through another node's API); not after a task's end or a queued
        # task (``queued``), which ask no cancel
        self._cancels_due = True
        self._cancels_read = 0.0  # the loop's time of the last read of them
        # whether a task this node may start was queued here since the last look: the
        # next claim then needs no read first (it finds one unless another node was quicker)
        self._queued_here = False
        # whether the last claim of any kind saw a task queued behind the one it took:
        # the claim after the next end then needs no read first either (P10's 200
        # queued tasks: a look before each claim, each finding one)
        self._waiting_behind = False
        # whether the next turn is to look at the queue though nothing above says a task
        # waits: at the start, after a wake, a capped task queued while the cap was full,
        # an error, and every IDLE_POLL s (another node's queue); not after a task's end
        # alone: it frees a slot, but nothing new waits for it (P9: a look per task)
        self._look_due = True

    async def start(self, abandoned_because: str = store_tasks.STOPPED) -> None:
        """Fail the tasks this node left unfinished when it last stopped (saying
        ``abandoned_because``), except the resumable ones, which this process takes
        over and re-attaches to; then run the queue. Only once this process holds the
        node's lease: the tasks are then no other live process's."""
        async with self.store.transaction() as conn:
            abandoned = await store_tasks.abandon_unfinished(
                conn, self.node, self.now(), abandoned_because, keep=self.resumable
            )
        await self._take_over()
        if abandoned:
            log.warning(
                "failed %d task(s) this node was running when it stopped: %s",
                len(abandoned),
                ", ".join(f"ServerTasks-{number}" for number in abandoned),
            )
        self._loop = asyncio.create_task(self._run(), name="hub-task-runner")

    async def _take_over(self) -> None:
        """Re-attach to the resumable tasks of this node that no live process runs: a
        previous process's, or a dead node's moved here (``NodeLease.adopts``)."""
        async with self.store.connect() as conn:  # a read first: most looks find none
            found = await store_tasks.orphans(conn, self.node, self.owner, self.resumable)
        if not found:
            return
        async with self.store.transaction() as conn:
            resumed = await store_tasks.take_over(conn, self.node, self.owner, self.resumable)
        for row in resumed:
            if row["id"] not in self._running:
                log.info("re-attaching to ServerTasks-%d (%s)", row["id"], row["name"])
                self._begin(row)

    def wake(self) -> None:
        """Something changed (a task queued or a cancel requested): look now."""
        self._cancels_due = True
        self._look_due = True
        self._wake.set()

    def queued(self, capped: bool) -> None:
        """A task was queued (``capped``: one that counts against the cap; no cancel
        asked): claim now (without a look first while the cap has room: one is there),
        unless it is capped and the cap is full, when the end of a running task (which
        looks at the queue) is the first moment it can start."""
        if not capped or free_slots(self._names.values(), self.cap) > 0:
            self._queued_here = True
            self._wake.set()
        else:
            self._look_due = True  # at the next end, which wakes the runner

    def adopted(self) -> None:
        """A dead node's tasks were moved to this node (``NodeLease.on_adopted``): take
        them over now."""
        self._orphans = True
        self._wake.set()

    @property
    def running(self) -> int:
        return len(self._running)

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                if self._orphans:
                    self._orphans = False  # first: an adoption meanwhile asks again
                    try:
                        await self._take_over()
                    except Exception:
                        self._orphans = True  # looked at again on the next turn
                        raise
                await self._cancels_if_due()
                await self._claim_what_fits()
            except Exception as error:  # the database may be away: the queue waits for it
                self._look_due = True
                self.queue_errors += 1
                log.warning(
                    "cannot read the task queue (%s); trying again in %g s", error, IDLE_POLL
                )
            try:
                async with asyncio.timeout(IDLE_POLL):
                    await self._wake.wait()
            except TimeoutError:
                self._look_due = True

    async def _cancels_if_due(self) -> None:
        now = asyncio.get_running_loop().time()
        if not self._cancels_due and now - self._cancels_read < CANCEL_LOOK:
            return
        self._cancels_due = False
        try:
            await self._apply_cancels()
        except Exception:
            self._cancels_due = True  # read again on the next turn
            raise
        self._cancels_read = now

    async def _claim_what_fits(self) -> None:
        """Health tasks at once, whatever the queue holds, before any other; then the
        oldest others while the cap has room (rules.dispatch). One look at the queue
        for every kind (before: one for health tasks, one for the others, each time);
        none after a claim that saw what waits behind it: nothing (a task queued since
        then wakes the runner, whose next turn looks again), a task it may claim (it
        is claimed without a look), or, once the cap is full, only capped tasks (the
        health tasks come first: none is queued, no look for one). No look first either
        after a task queued through this node (``queued``), nor when the last claim saw
        one behind it (a slot freed since then has it to claim): one is there to claim,
        unless another node or a cancel was quicker, when the claim finds what else
        there is, or nothing. Nothing at all on a turn that a task's end alone woke:
        a task queued since the last look here said so (``queued``, ``wake``), and
        another node's is looked for every IDLE_POLL s (``_look_due``)."""
        before: frozenset[str] | None = OUTSIDE_CAP
        behind: str | None = None  # the name of the task the last claim saw behind it
        look = True
        queued_here = self._queued_here or self._waiting_behind
        if not (queued_here or self._look_due):
            return  # a task's end: no task this node was told of waits for the slot
        self._queued_here = self._look_due = False
        while True:
            names = None if free_slots(self._names.values(), self.cap) > 0 else OUTSIDE_CAP
            if queued_here and names is None:  # the cap still has room: one to claim
                look = queued_here = False
            elif not look:
                if names is not None and before is None and behind not in names:
                    return  # no health task waits (they come first): the rest wait for a slot
                look = names != before and before is not None
            claimed, behind = await self._claim_one(names, look=look)
            if names is None:  # a claim of any kind: what it saw waits for the next slot
                self._waiting_behind = behind is not None
            if not claimed or behind is None:
                return
            before, look = names, False

    async def _claim_one(
        self, names: frozenset[str] | None, look: bool = True
    ) -> tuple[bool, str | None]:
        """The oldest queued task (of ``names`` only, if given; health tasks first)
        claimed and begun: whether one was, and the name of the task of the same filter
        that waited behind it (None if none). ``look``: a read first, so that an empty
        queue takes no write lock."""
        if look:
            async with self.store.connect() as conn:  # a read first: most looks find none
                if not await store_tasks.next_queued(conn, names, OUTSIDE_CAP):
                    return False, None
        async with self.store.transaction() as conn:
            row, behind = await store_tasks.claim_next(
                conn, self.owner, self.now(), names, OUTSIDE_CAP
            )
        if row is None:
            return False, behind
        self.changes.changed(row["id"])
        self._begin(row, fresh=True)
        return True, behind

    def _begin(self, row: Row, fresh: bool = False) -> None:
        task_log = TaskLog(self.store, row["id"], self.now, self.owner, fresh)
        if row["cancel_requested"]:
            task_log.cancel.set()
        self._names[row["id"]] = row["name"]
        self._logs[row["id"]] = task_log
        self._running[row["id"]] = asyncio.create_task(self._execute(row, task_log))

    async def _apply_cancels(self) -> None:
        """The cancels asked of the running tasks, read in one query for them all."""
        if not self._running:
            return
        async with self.store.connect() as conn:
            asked = await store_tasks.cancels_requested(conn, list(self._running))
        for task_id in asked:
            task = self._running.get(task_id)
            if task is None or task.done():
                continue
            if self._names[task_id] in self.resumable:
                self._logs[task_id].cancel.set()  # it cancels its steps' scripts
            else:
                task.cancel()

    async def _execute(self, row: Row, task_log: TaskLog) -> None:
        task_id = row["id"]
        state, outcome = store_tasks.FAILED, Outcome(False, error="the task ended unexpectedly")
        left = False
        try:
            executor = self.executors.get(row["name"])
            if executor is None:
                outcome = Outcome(False, error=f"this hub cannot run {row['name']} tasks")
            else:
                outcome = await executor(row, task_log)
            default = store_tasks.SUCCESS if outcome.succeeded else store_tasks.FAILED
            state = outcome.state or default
        except store_tasks.TakenOver:
            state = ""  # another node wrote its end: nothing to write here
        except asyncio.CancelledError:
            if row["name"] in self.resumable:
                # the hub stops: its steps' scripts go on, the next start re-attaches
                log.info("ServerTasks-%d is left running for the next start", task_id)
                state, left = "", True
                raise
            cancelled = False  # unknown when the database is away: then the hub stopped
            with contextlib.suppress(Exception):
                cancelled = await self._cancel_requested(task_id)
            state = store_tasks.CANCELED if cancelled else store_tasks.FAILED
            error = "canceled" if cancelled else "the hub stopped while this task ran"
            outcome = Outcome(False, error=error)
        except Exception as error:
            log.exception("task ServerTasks-%d failed", task_id)
            outcome = Outcome(False, error=f"the task failed: {error}")
        finally:
            self._running.pop(task_id, None)
            self._names.pop(task_id, None)
            self._logs.pop(task_id, None)
            if state:
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self._finish_durably(task_id, state, outcome, task_log.end_writes)
                    )
            elif not left:
                self._dropped(task_id)
            self._wake.set()  # a slot is free: the next task need not wait for the closes
            with contextlib.suppress(Exception):
                await asyncio.shield(task_log.closed())

    def _dropped(self, task_id: int) -> None:
        log.warning(
            "task ServerTasks-%d was taken over by another node; its end here is dropped",
            task_id,
        )

    async def _cancel_requested(self, task_id: int) -> bool:
        async with self.store.connect() as conn:
            row = await store_tasks.task(conn, task_id)
        return bool(row and row["cancel_requested"])

    async def _finish_durably(
        self,
        task_id: int,
        state: str,
        outcome: Outcome,
        writes: Sequence[Callable[[AsyncConnection], Awaitable[None]]] = (),
    ) -> None:
        """Write the task's end, retrying while the database is away (up to about
        FINISH_PATIENCE s): a task left Executing would hide its workers from the
        scheduler. If it never succeeds, the node's next start fails the task."""
        delay, waited = 0.5, 0.0
        while True:
            try:
                await self._finish(task_id, state, outcome, writes)
                return
            except Exception as error:
                if waited >= FINISH_PATIENCE:
                    log.error(
                        "could not record the end of ServerTasks-%d (%s): it is failed "
                        "when this node starts again",
                        task_id,
                        error,
                    )
                    return
                log.warning("cannot record the end of ServerTasks-%d yet (%s)", task_id, error)
            await asyncio.sleep(delay)  # a schedule: the database announces nothing
            waited += delay
            delay = min(delay * 2, 10.0)

    async def _finish(
        self,
        task_id: int,
        state: str,
        outcome: Outcome,
        writes: Sequence[Callable[[AsyncConnection], Awaitable[None]]] = (),
    ) -> None:
        """The task's end and its ``writes`` (TaskLog.at_end), in one transaction."""
        async with self.store.transaction() as conn:
            ended = await store_tasks.finish(
                conn, task_id, state, self.now(), outcome.error, outcome.warnings, self.owner
            )
            if ended:
                for write in writes:
                    await write(conn)
        if not ended:
            self._dropped(task_id)
            return
        self.changes.changed(task_id)
        log.info(
            "task ServerTasks-%d: %s%s",
            task_id,
            state,
            f" ({outcome.error})" if outcome.error else "",
        )
