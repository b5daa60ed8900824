"""This hub node's lease on its name, held while it serves (agent.hub.rules.lease).

Two processes given one NodeName (two hubs on one home, or two homes on one
PostgreSQL) would each fail, on start, the tasks "this node was running": the
other's, still running. So a node takes a lease on its name in the database
before anything else, renews it in the background, and gives it back when it
stops; a start finding a live holder refuses, naming it. A holder that died
(kill -9) stops renewing: once its lease expired a new start takes over, and
only then fails the tasks the dead one left unfinished; at once if the holder
ran on this host and its process is gone (its pid, with the process's start
time against pid reuse). Every live node also looks, as it renews its own
lease, for leases that expired under any name and fails those dead nodes'
tasks (one node does, of several looking: the lease is deleted conditionally).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Collection
from datetime import datetime

import psutil
import sqlalchemy as sa

from agent.errors import ConfigError, TentacleError
from agent.hub.rules.lease import LeaseState, abandoned, refusal, renew_interval
from agent.hub.store import Store, nodes
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import Row

log = logging.getLogger("agent.hub.lease")


class NodeNameTaken(ConfigError):
    """Another live process holds this node's name: this one must not start."""


class LeaseLost(TentacleError):
    """Another process took this node's lease over (this one had stopped renewing it
    for longer than the lease time): this one must stop."""


class NodeLease:
    """Take with ``take()``; ``lost`` is set if another process takes it over; ``give_back()``."""

    def __init__(
        self,
        store: Store,
        name: str,
        lease_seconds: float,
        now: Callable[[], datetime],
        task_cap: int | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.lease_seconds = lease_seconds
        self.task_cap = task_cap  # written with the lease: what the node runs at once
        self.now = now
        self.token = secrets.token_hex(16)
        self.lost = asyncio.Event()
        self.renewals = 0
        # tasks of a dead node that this node takes over instead of failing (the
        # resumable ones: agent.hub.runner re-attaches them), and whom to tell
        self.adopts: Collection[str] = ()
        self.on_adopted: Callable[[], None] | None = None
        self._renewing: asyncio.Task[None] | None = None

    def _mine(self) -> Row:
        return {"name": self.name, "token": self.token, "host": socket.gethostname(),
                "pid": os.getpid(), "process_started": _started(os.getpid()),
                "lease_seconds": self.lease_seconds, "task_cap": self.task_cap}  # fmt: skip

    async def take(self) -> str | None:
        """Hold the lease and keep renewing it. Returns why the tasks of the holder taken
        over are failed (its lease expired, or its process on this host is gone: it
        died) or None (the name was free). NodeNameTaken naming the live holder and
        saying what to do if another process holds it."""
        now = self.now()
        try:
            async with self.store.transaction() as conn:
                state, found = await nodes.take(conn, self._mine(), now, self.lease_seconds, _gone)
        except sa.exc.IntegrityError:  # a process taking it at the same time was first
            async with self.store.connect() as conn:
                state, found = LeaseState.HELD, await nodes.holder(conn, self.name)
        if state is LeaseState.HELD:
            if found is None:  # it let go meanwhile: not worth a retry loop
                raise NodeNameTaken(
                    f"the hub node {self.name!r} was starting in another process at the same"
                    " time; start this one again"
                )
            raise NodeNameTaken(refusal(found, now))
        self._renewing = asyncio.create_task(self._renew(), name="hub-node-lease")
        if found is None or state not in (LeaseState.EXPIRED, LeaseState.GONE):
            return None
        return abandoned(found, now, state)

    async def _renew(self) -> None:
        interval = renew_interval(self.lease_seconds)
        while True:
            await asyncio.sleep(interval)  # a schedule: nothing to wait on
            try:
                async with self.store.transaction() as conn:
                    kept = await nodes.renew(conn, self.name, self.token, self.now())
            except Exception as error:  # the database away: the lease lasts a while yet
                log.warning("cannot renew this node's lease on %r yet (%s)", self.name, error)
                continue
            if not kept:
                log.error(
                    "another process took over the hub node %r (this one had not renewed its"
                    " lease for longer than %g s): stopping",
                    self.name,
                    self.lease_seconds,
                )
                self.lost.set()
                return
            self.renewals += 1
            try:
                await self.fail_the_dead()
            except Exception as error:  # the next renewal looks again
                log.warning("cannot look for hub nodes that died (%s)", error)

    async def fail_the_dead(self) -> list[int]:
        """Delete the leases that expired (their nodes died: no start with their name
        came) and fail those nodes' unfinished tasks, saying why. Returns the tasks'
        ids. Of several nodes doing it at once, one fails each dead node's tasks."""
        now = self.now()
        async with self.store.connect() as conn:
            dead = await nodes.expired(conn, now, self.lease_seconds)
        failed: list[int] = []
        for row in dead:
            if row["token"] == self.token:
                continue
            async with self.store.transaction() as conn:
                if not await nodes.remove_expired(conn, row, now, self.lease_seconds):
                    continue  # it renewed meanwhile, or another node was first
                reason = abandoned(row, now, LeaseState.EXPIRED)
                ids = await store_tasks.abandon_unfinished(
                    conn, row["name"], now, reason, keep=self.adopts
                )
                adopted = await store_tasks.adopt(conn, row["name"], self.name, self.adopts)
            if adopted and self.on_adopted is not None:
                log.warning(
                    "taking over %d task(s) of the dead hub node %r: %s", len(adopted),
                    row["name"], ", ".join(f"ServerTasks-{number}" for number in adopted),
                )  # fmt: skip
                self.on_adopted()
            log.warning(
                "the hub node %r (process %s on %s) died: failed %d task(s) it was running%s",
                row["name"], row["pid"], row["host"], len(ids),
                "".join(f", ServerTasks-{number}" for number in ids),
            )  # fmt: skip
            failed += ids
        return failed

    async def give_back(self) -> None:
        """Stop renewing and free the name, so the next start takes over at once. If the
        database is away, the lease simply expires."""
        if self._renewing is None:
            return
        self._renewing.cancel()
        await asyncio.gather(self._renewing, return_exceptions=True)
        self._renewing = None
        with contextlib.suppress(Exception):
            async with self.store.transaction() as conn:
                await nodes.give_back(conn, self.name, self.token)


def _started(pid: int) -> float | None:
    """The process's start time (seconds since the epoch), None if unknown."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _gone(row: Row) -> bool:
    """Whether the holder's process is known to be dead: it ran on this host and its
    pid runs no process, or another one (started at another time: the pid reused).
    A holder on another host is judged by its lease alone. A zombie (it exited, its
    parent has not reaped it yet: right after kill -9) is dead, though psutil still
    gives its start time."""
    if row["host"] != socket.gethostname():
        return False
    try:
        process = psutil.Process(int(row["pid"]))
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return True
        started = process.create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # not ours to look at (another user's): maybe alive
        return False
    recorded = row.get("process_started")
    return recorded is not None and abs(float(started) - float(recorded)) > 1.0
