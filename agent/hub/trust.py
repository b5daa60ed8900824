"""The polling port's trust, kept to the store's: it trusts exactly the certificates of
the enabled polling workers the hub holds.

A change the API makes is followed at once and for the workers it touched only
(:meth:`PollingTrust.follow`: one query by id, whatever the number of workers),
so that a registration, a delete or a disable costs the same at 10 workers as at
10,000. The whole of it is compared with the store when the hub starts and again
every RESYNC seconds (:meth:`PollingTrust.resync`): the backstop that learns, within
that bound, what this node was not told of, such as a change made by another hub
node on the same PostgreSQL, or a worker its machine policy deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from agent.client import PollingListener
from agent.errors import CertificateError
from agent.hub.store import Store
from agent.hub.store.worker_queries import certificates, trusted_workers

log = logging.getLogger("agent.hub.trust")

RESYNC = 60.0  # seconds between two full comparisons of the trust with the store


class PollingTrust:
    """What the polling port trusts, by worker; use it from the event loop's thread.

    Changes are applied one at a time (a lock), each reading the store after the
    last was applied, so that the trust ends as the store ends whatever the order
    in which concurrent requests report their changes."""

    def __init__(self, store: Store, listener: PollingListener) -> None:
        """Trusting no worker yet: :meth:`resync` before the listener starts (it then
        builds its TLS context once, with every certificate)."""
        self.store = store
        self.listener = listener
        self._thumbprint_of: dict[int, str] = {}  # by worker id, what is trusted
        self._holder: dict[str, int] = {}  # the worker by thumbprint
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.resyncs = 0  # full comparisons made so far

    def start(self) -> None:
        self._task = asyncio.create_task(self._every_while(), name="hub-polling-trust")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def follow(self, worker_ids: Sequence[int]) -> None:
        """Trust or distrust these workers as the store says now (added, changed,
        disabled or deleted: whichever)."""
        if not worker_ids:
            return
        async with self._lock:
            async with self.store.connect() as conn:
                wanted = await trusted_workers(conn, worker_ids)
                pems = await certificates(conn, list(wanted))
            for number in worker_ids:
                await self._apply(number, pems.get(number))

    async def resync(self) -> None:
        """Compare every worker with the store; fetch only the certificates missing."""
        async with self._lock:
            async with self.store.connect() as conn:
                wanted = await trusted_workers(conn)
                missing = [n for n, tp in wanted.items() if self._thumbprint_of.get(n) != tp]
                pems = await certificates(conn, missing)
            for number in [n for n in self._thumbprint_of if n not in wanted] + missing:
                await self._apply(number, pems.get(number))
            for stray in set(self.listener.trusted()) - set(self._holder):
                await self.listener.distrust(stray)  # trusted by no worker
            self.resyncs += 1

    async def _apply(self, number: int, pem: str | None) -> None:
        """Worker ``number`` is trusted with ``pem`` now, or not at all (None)."""
        old = self._thumbprint_of.pop(number, None)
        if old is not None and self._holder.get(old) == number:
            del self._holder[old]
        new = None
        if pem is not None:
            try:
                new = self.listener.trust(pem)
            except CertificateError as error:  # the API checks them: never, but not fatal
                log.error("cannot trust the certificate of Workers-%d: %s", number, error)
            else:
                self._thumbprint_of[number], self._holder[new] = new, number
        if old is not None and old != new and old not in self._holder:
            await self.listener.distrust(old)

    async def _every_while(self) -> None:
        while True:
            await asyncio.sleep(RESYNC)  # a schedule: the other nodes announce nothing
            try:
                await self.resync()
            except Exception:  # the database may be away a moment: the next round
                log.exception("could not compare the polling port's trust with the store")
