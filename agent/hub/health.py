"""Health checks as server tasks: each worker in scope is checked (connectivity,
then unless the policy says OnlyConnectivity its health script), judged by
``rules.health``, and its record updated; the task's log has one activity a worker.

The health script runs through the script service with no isolation and a
mutex name of its own, so that a long FullIsolation deployment never blocks a
health check (Octopus I#3142).

Up to PARALLELISM workers are checked at once; what each check found (its
activity, log lines and the worker's record) is written by one writer in
batches (``TaskLog.batched``), so that a round of thousands of workers does
not queue for SQLite's write lock a commit at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.client import LogChunk, ScriptRequest, Worker
from agent.hub import ids
from agent.hub.reach import WorkerReach
from agent.hub.rules.health import CheckOutcome, Verdict, judge, task_status
from agent.hub.rules.policies import connectivity_only, health_script, should_delete
from agent.hub.runner import FinishedActivity, Outcome, TaskLog
from agent.hub.store import Store
from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all, record_event

if TYPE_CHECKING:
    from agent.observability.metrics import HubMetrics

log = logging.getLogger("agent.hub.health")

PARALLELISM = 50  # workers checked at once by one health task
MACHINE_TIMEOUT = 60.0  # seconds one worker's check may take, unless the task says
HEALTH_MUTEX = "tentacle-health-check"
# Octopus's bash helpers for health scripts: a warning, or a failed check
PRELUDE = 'echo_warning() { echo "$*" >&2; }\nfail_healthcheck() { echo "$*" >&2; exit 1; }\n'
MB = 1024 * 1024
MAX_CHECK_LINES = 1000  # log lines kept of one check
MAX_LINE_CHARS = 2000  # characters kept of one line
CANCEL_GRACE = 10.0  # seconds to tell the worker a check's script is cancelled


def facts_of(capabilities: dict[str, Any]) -> dict[str, Any]:
    """What a worker's record shows, from its capabilities document."""
    shells = capabilities.get("Shells") or []
    free = capabilities.get("FreeDiskBytes")
    return {
        "OperatingSystem": " ".join(
            str(p) for p in (capabilities.get("OS"), capabilities.get("OSVersion")) if p
        ),
        "Architecture": capabilities.get("Architecture", "Unknown"),
        "ShellName": "bash" if "bash" in shells else (shells[0] if shells else "Unknown"),
        "ShellVersion": "Unknown",
        "Shells": shells,
        "AgentVersion": capabilities.get("AgentVersion"),
        "FreeDiskSpaceMegabytes": int(free // MB) if isinstance(free, int) else None,
        "Cpus": capabilities.get("Cpus"),
        "MemoryBytes": capabilities.get("MemoryBytes"),
        # an SSH worker's: "Ssh", and its python3 (None: steps needing the executor fail)
        "CommunicationStyle": capabilities.get("CommunicationStyle"),
        "Python": capabilities.get("Python"),
        # `tentacle drain`: it starts no new scripts, so it is no candidate for steps
        "Draining": capabilities.get("Draining") is True,
        "DrainingSince": capabilities.get("DrainingSince"),
    }


def answered(name: str, facts: dict[str, Any]) -> str:
    """The check's first line: who answered, on what, with how much free disk."""
    where = f"{facts['OperatingSystem']} {facts['Architecture']}"
    free = f"{facts['FreeDiskSpaceMegabytes']} MB free"
    if facts.get("CommunicationStyle") == "Ssh":
        python = facts.get("Python") or "no python3 (steps needing the executor fail)"
        return f"{name} answered over SSH: {where}, {python}, {free}"
    return f"{name} answered: agent {facts['AgentVersion']} on {where}, {free}"


@dataclass
class CheckLog:
    """A check's log lines, bounded: a health script that prints a gigabyte must not
    put a gigabyte in the database on every interval."""

    lines: list[tuple[str, str]]
    dropped: int = 0

    def add(self, category: str, message: str) -> None:
        if len(self.lines) >= MAX_CHECK_LINES:
            self.dropped += 1
            return
        if len(message) > MAX_LINE_CHARS:
            message = message[:MAX_LINE_CHARS] + " [...]"
        self.lines.append((category, message))

    def kept(self) -> list[tuple[str, str]]:
        """The lines, with a note of how many were not kept."""
        if not self.dropped:
            return self.lines
        note = f"{self.dropped} more line(s) of output were not kept (a check keeps "
        return [*self.lines, ("Warning", note + f"{MAX_CHECK_LINES})")]


async def check_worker(
    reach: WorkerReach, worker: Row, settings: dict[str, Any], timeout: float
) -> tuple[CheckOutcome, list[tuple[str, str]]]:
    """Check one worker; never raises for the worker's sake (an unreachable worker is an
    outcome). Returns the outcome and the log lines for the task."""
    lines = CheckLog([])
    try:
        async with asyncio.timeout(timeout):
            return await _check(reach, worker, settings, lines), lines.kept()
    except TimeoutError:
        message = f"the check did not finish within {timeout:g} s"
    except Exception as error:  # the worker's failure, whatever it is, is its health
        message = str(error) or type(error).__name__
    lines.add("Error", f"Could not reach {worker['name']}: {message}")
    return CheckOutcome(reachable=False, error=message), lines.kept()


async def _cancel_within_grace(client: Worker, ticket: str) -> None:
    """Tell the worker a check's script is cancelled, giving up after CANCEL_GRACE."""
    async with asyncio.timeout(CANCEL_GRACE):
        await client.cancel(ticket)


async def _check(
    reach: WorkerReach, worker: Row, settings: dict[str, Any], lines: CheckLog
) -> CheckOutcome:
    client = reach.client(worker)
    try:
        capabilities = await client.capabilities()
        facts = facts_of(capabilities)
        lines.add("Info", answered(worker["name"], facts))
        if facts["Draining"]:  # its agent would refuse the health script
            lines.add("Info", f"{worker['name']} is draining since {facts['DrainingSince']}: "
                              "it runs no new steps, and its health script is not run")  # fmt: skip
            return CheckOutcome(reachable=True, facts=facts)
        if connectivity_only(settings):
            return CheckOutcome(reachable=True, facts=facts)
        warnings: list[str] = []

        def output(chunk: LogChunk) -> None:
            for line in chunk.lines:
                is_error = chunk.source == "stderr"
                lines.add("Warning" if is_error else "Info", line)
                if is_error and line.strip():
                    warnings.append(line.strip())

        request = ScriptRequest(
            body=PRELUDE + health_script(settings),
            isolation="none",
            mutex_name=HEALTH_MUTEX,
            task_id="health",
            ticket=secrets.token_hex(16),
        )
        try:
            outcome = await client.execute(request, output)
        except asyncio.CancelledError:  # task cancelled, timed out, or the hub stopping
            with contextlib.suppress(Exception):  # the script must not outlive its check
                await asyncio.shield(_cancel_within_grace(client, request.ticket))
            raise
        errors = warnings[-1:] if outcome.exit_code != 0 else []
        return CheckOutcome(
            reachable=True,
            facts=facts,
            script_exit_code=outcome.exit_code,
            warnings=warnings if outcome.exit_code == 0 else [],
            errors=errors,
        )
    finally:
        with contextlib.suppress(Exception):
            await client.close()


class HealthChecks:
    """The executor of ``Health`` tasks."""

    def __init__(
        self,
        store: Store,
        reach: WorkerReach,
        now: Callable[[], datetime],
        metrics: HubMetrics | None = None,
    ) -> None:
        """``metrics``: where each check's duration is counted (None: not counted)."""
        self.store = store
        self.reach = reach
        self.now = now
        self.metrics = metrics

    async def __call__(self, task: Row, task_log: TaskLog) -> Outcome:
        if self.metrics is None:
            return await self._check_all(task, task_log)
        started = time.monotonic()
        try:
            return await self._check_all(task, task_log)
        finally:
            self.metrics.health_check_seconds.observe(time.monotonic() - started)

    async def _check_all(self, task: Row, task_log: TaskLog) -> Outcome:
        workers, policies = await self._scope(task["arguments"])
        arguments = task["arguments"]
        timeout = float(arguments.get("MachineTimeout") or MACHINE_TIMEOUT)
        await task_log.write(None, [("Info", f"Checking the health of {len(workers)} worker(s)")])
        gate = asyncio.Semaphore(PARALLELISM)
        statuses: list[tuple[str, bool]] = []
        async with task_log.batched() as add:

            async def one(worker: Row) -> None:
                async with gate:
                    policy = policies[worker["machine_policy_id"]]
                    statuses.append(await self._check_one(worker, policy, timeout, add))

            await asyncio.gather(*(one(worker) for worker in workers))
        skippable = all(skip for _, skip in statuses)
        succeeded, warned = task_status([status for status, _ in statuses], skippable)
        counts = Counter(status for status, _ in statuses)  # was O(n^2): 0.8 s at 2,000
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no workers"
        await task_log.write(None, [("Info", f"Health check finished: {summary}")])
        return Outcome(succeeded, warned, None if succeeded else f"Health check failed: {summary}")

    async def _scope(
        self, arguments: dict[str, Any]
    ) -> tuple[list[Row], dict[int, dict[str, Any]]]:
        async with self.store.connect() as conn:
            query = sa.select(t.workers).where(t.workers.c.is_disabled.is_(False))
            pool = arguments.get("WorkerpoolId") or arguments.get("WorkerPoolId")
            if pool:
                members = sa.select(t.worker_pool_members.c.worker_id).where(
                    t.worker_pool_members.c.pool_id == ids.parse_id(ids.WORKER_POOL, pool)
                )
                query = query.where(t.workers.c.id.in_(members))
            machines = arguments.get("MachineIds") or []
            if machines:
                wanted = [ids.parse_id(ids.WORKER, m) for m in machines]
                query = query.where(t.workers.c.id.in_(wanted))
            workers = await fetch_all(conn, query.order_by(t.workers.c.name))
            policies = {
                row["id"]: row["settings"]
                for row in await fetch_all(conn, sa.select(t.machine_policies))
            }
        return workers, policies

    async def _check_one(
        self,
        worker: Row,
        policy: dict[str, Any],
        timeout: float,
        add: Callable[[FinishedActivity], None],
    ) -> tuple[str, bool]:
        started = self.now()
        outcome, lines = await check_worker(self.reach, worker, policy, timeout)
        verdict = judge(outcome, int(policy.get("FreeDiskSpaceWarningMegabytes", 500)))
        lines.append(("Info" if verdict.status == "Healthy" else "Warning", verdict.summary))
        status = {"Healthy": "Success", "HasWarnings": "SuccessWithWarning"}.get(
            verdict.status, "Failed"
        )

        async def record(conn: AsyncConnection) -> None:
            await self._record(conn, worker, outcome, verdict, lines, policy)

        # the worker's activity and its record are written together once its check is over
        add(FinishedActivity(f"Check {worker['name']}", started, lines, status, record))
        skippable = (
            policy["MachineConnectivityPolicy"].get("MachineConnectivityBehavior")
            == "MayBeOfflineAndCanBeSkipped"
        )
        return verdict.status, skippable

    async def _record(
        self,
        conn: AsyncConnection,
        worker: Row,
        outcome: CheckOutcome,
        verdict: Verdict,
        lines: list[tuple[str, str]],
        policy: dict[str, Any],
    ) -> None:
        now, status = self.now(), verdict.status
        unavailable_since = (
            (worker["unavailable_since"] or now) if status == "Unavailable" else None
        )
        log_elements = [
            {"Category": c, "OccurredAt": now.isoformat(), "MessageText": m} for c, m in lines
        ]
        values: dict[str, Any] = {
            "health_status": status,
            "status_summary": verdict.summary,
            "last_checked": now,
            "unavailable_since": unavailable_since,
            "connection_log": log_elements,
        }
        if outcome.facts:
            values["facts"] = outcome.facts
        await conn.execute(
            sa.update(t.workers).where(t.workers.c.id == worker["id"]).values(**values)
        )
        if should_delete(policy, unavailable_since, now):
            await conn.execute(
                sa.delete(t.worker_pool_members).where(
                    t.worker_pool_members.c.worker_id == worker["id"]
                )
            )
            await conn.execute(sa.delete(t.workers).where(t.workers.c.id == worker["id"]))
            await record_event(
                conn,
                now,
                "machine policy",
                "Deleted",
                f"Worker {worker['name']} deleted: unavailable since "
                f"{unavailable_since:%Y-%m-%d %H:%M:%S} UTC, as its machine "
                "policy says",
                [ids.format_id(ids.WORKER, worker["id"])],
            )
            log.info("deleted unavailable worker %s by its machine policy", worker["name"])
