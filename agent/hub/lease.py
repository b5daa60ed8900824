"""This hub node's lease on its name, held while it serves (agent.hub.rules.lease).

Two processes given one NodeName (two hubs on one home, or two homes on one
PostgreSQL) would each fail, on start, the tasks "this node was running": the
other's, still running. So a node takes a lease on its name in the database
before anything else, renews it in the background, and gives it back when it
stops; a start finding a live holder refuses, naming it. A holder that died
(kill -9) stops renewing: once its lease expired a new start takes over, and
only then fails the tasks the dead one left unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from agent.errors import ConfigError, TentacleError
from agent.hub.rules.lease import LeaseState, refusal, renew_interval
from agent.hub.store import Store, nodes
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
        self, store: Store, name: str, lease_seconds: float, now: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.name = name
        self.lease_seconds = lease_seconds
        self.now = now
        self.token = secrets.token_hex(16)
        self.lost = asyncio.Event()
        self.renewals = 0
        self._renewing: asyncio.Task[None] | None = None

    def _mine(self) -> Row:
        return {"name": self.name, "token": self.token, "host": socket.gethostname(),
                "pid": os.getpid()}  # fmt: skip

    async def take(self) -> Row | None:
        """Hold the lease and keep renewing it. Returns the holder taken over (its lease
        expired: it died) or None (the name was free). NodeNameTaken naming the live
        holder and saying what to do if another process holds it."""
        now = self.now()
        try:
            async with self.store.transaction() as conn:
                state, found = await nodes.take(conn, self._mine(), now, self.lease_seconds)
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
        return found if state is LeaseState.EXPIRED else None

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
