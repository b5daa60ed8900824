"""hub workers, hub pools, hub policies, hub health-check: a hub seen by a person.

They call the hub's REST API (agent.client.hub_api) with the same
``--server``/``--apikey``/``--server-thumbprint`` options and environment
variables as register-worker, so they run from any machine that can reach the
hub. Tables for people; ``--format json`` prints the API's own resources.

``hub health-check`` submits a Health server task (``POST /api/tasks``) and
follows it through ``/api/tasks/{id}/details``, printing each worker's result
as it lands; Ctrl-C stops following, never the task.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click

from agent.cli.output import emit_json, emit_table, format_option
from agent.cli.registration import hub_options
from agent.cli.signals import Interrupted, until_signalled
from agent.client.hub_api import HubApi
from agent.errors import TentacleError
from agent.hub.rules.workers import COMMUNICATION_STYLES, HEALTH_STATUSES

FOLLOW_INTERVAL = 0.5  # seconds between looks at a followed task's details
SHOWN_NAMES = 10  # names listed in an "it has ..." hint


class HubViewError(TentacleError):
    pass


# --- pure helpers: names to ids, resources to table rows --------------------------------------


def resolve(items: Sequence[dict[str, Any]], wanted: str, kind: str) -> dict[str, Any]:
    """The item whose Id or Name is ``wanted`` (a name also case-insensitively, when
    that is unambiguous); HubViewError naming what the hub has otherwise."""
    exact = [item for item in items if wanted in (item["Id"], item["Name"])]
    if exact:
        return exact[0]
    folded = [item for item in items if item["Name"].casefold() == wanted.casefold()]
    if len(folded) == 1:
        return folded[0]
    names = [repr(item["Name"]) for item in items]
    known = ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")
    has = f"it has {known}" if names else "it has none"
    raise HubViewError(f"the hub has no {kind} {wanted!r} ({has})")


def when(text: str | None) -> str:
    """An API timestamp as a person reads it (UTC, to the second), or 'never'."""
    if not text:
        return "never"
    try:
        return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text


SUMMARY_WIDTH = 60  # characters of a worker's status summary in the table (JSON has it all)


def summary_of(worker: dict[str, Any]) -> str:
    """The status summary without what the HEALTH column says already, cut to fit a table."""
    summary = str(worker.get("StatusSummary") or "")
    health = worker["HealthStatus"].casefold()
    head, _, rest = summary.partition(": ")
    if head.replace(" ", "").casefold() == health:
        summary = rest
    if summary.replace(" ", "").casefold() == health:
        return ""
    if len(summary) > SUMMARY_WIDTH:
        return summary[: SUMMARY_WIDTH - 3] + "..."
    return summary


WORKER_HEADERS = (
    "NAME", "ID", "HEALTH", "SUMMARY", "STYLE", "ENDPOINT", "POOLS", "VERSION",
    "LAST CHECKED (UTC)",
)  # fmt: skip


def worker_row(worker: dict[str, Any], pool_names: dict[str, str]) -> list[str]:
    health = worker["HealthStatus"] + (" (disabled)" if worker["IsDisabled"] else "")
    pools = ", ".join(pool_names.get(p, p) for p in worker["WorkerPoolIds"])
    return [
        worker["Name"],
        worker["Id"],
        health,
        summary_of(worker),
        worker["Endpoint"]["CommunicationStyle"],
        worker["Endpoint"]["Uri"] or worker.get("Uri") or "",
        pools,
        worker.get("AgentVersion") or "-",
        when(worker.get("LastCheckedOn")),
    ]


# the health statuses as the other headers are written (HasWarnings: HAS WARNINGS)
POOL_HEADERS = (
    "NAME", "ID", "DEFAULT", "WORKERS",
    *(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", status).upper() for status in HEALTH_STATUSES),
    "DISABLED",
)  # fmt: skip


def pool_row(summary: dict[str, Any]) -> list[str]:
    pool = summary["WorkerPool"]
    counts = summary["MachineHealthStatusSummaries"]
    return [
        pool["Name"],
        pool["Id"],
        "yes" if pool["IsDefault"] else "",
        str(summary["TotalMachines"]),
        *(str(counts.get(status, 0)) for status in HEALTH_STATUSES),
        str(summary["TotalDisabledMachines"]),
    ]


POLICY_HEADERS = ("NAME", "ID", "DEFAULT", "INTERVAL", "CHECK", "CONNECTIVITY", "CLEANUP")


def policy_row(policy: dict[str, Any]) -> list[str]:
    check = policy["MachineHealthCheckPolicy"]
    cleanup = policy["MachineCleanupPolicy"]
    if cleanup["DeleteMachinesBehavior"] == "DeleteUnavailableMachines":
        tidy = f"delete unavailable after {cleanup['DeleteMachinesElapsedTimeSpan']}"
    else:
        tidy = "never delete"
    return [
        policy["Name"],
        policy["Id"],
        "yes" if policy["IsDefault"] else "",
        check.get("HealthCheckCron") or check["HealthCheckInterval"],
        check["HealthCheckType"],
        policy["MachineConnectivityPolicy"]["MachineConnectivityBehavior"],
        tidy,
    ]


# --- workers, pools, policies -----------------------------------------------------------------


def _hub(server: str, api_key: str, thumbprint: str | None) -> HubApi:
    return HubApi(server, api_key, thumbprint)


@click.command("workers")
@hub_options
@click.option(
    "--pool", "pools", multiple=True, metavar="POOL", help="only workers in this pool (name or id)"
)
@click.option(
    "--health",
    "healths",
    multiple=True,
    type=click.Choice(HEALTH_STATUSES, case_sensitive=False),
    help="only workers with this health status; repeat for several",
)
@click.option(
    "--style",
    "styles",
    multiple=True,
    type=click.Choice(COMMUNICATION_STYLES, case_sensitive=False),
    help="only listening (TentaclePassive), polling (TentacleActive) or SSH (Ssh) workers",
)
@click.option("--name", "partial_name", metavar="TEXT", help="only workers whose name has TEXT")
@click.option(
    "--disabled/--enabled",
    "disabled",
    default=None,
    help="only disabled, or only enabled, ones (one switch: the last one given wins)",
)
@format_option
def workers_command(
    server: str,
    api_key: str,
    server_thumbprint: str | None,
    pools: tuple[str, ...],
    healths: tuple[str, ...],
    styles: tuple[str, ...],
    partial_name: str | None,
    disabled: bool | None,
    output_format: str,
) -> None:
    """List the hub's workers: health, endpoint, pools, agent version."""

    async def fetch() -> tuple[list[dict[str, Any]], dict[str, str]]:
        async with _hub(server, api_key, server_thumbprint) as hub:
            await hub.root()
            known = await hub.get("/api/workerpools/all")
            query: dict[str, str] = {}
            if pools:
                query["workerpoolIds"] = ",".join(
                    resolve(known, p, "worker pool")["Id"] for p in pools
                )
            if healths:
                query["healthStatuses"] = ",".join(healths)
            if styles:
                query["commStyles"] = ",".join(styles)
            if partial_name:
                query["partialName"] = partial_name
            if disabled is not None:
                query["isDisabled"] = str(disabled).lower()
            workers = await hub.get("/api/workers/all", **query)
            return workers, {p["Id"]: p["Name"] for p in known}

    workers, pool_names = asyncio.run(fetch())
    if output_format == "json":
        emit_json(workers)
    elif not workers:
        click.echo(
            "No workers"
            + (" match" if _filtered(pools, healths, styles, partial_name, disabled) else "")
        )
    else:
        emit_table(WORKER_HEADERS, [worker_row(w, pool_names) for w in workers])


def _filtered(*filters: object) -> bool:
    return any(f not in (None, (), "") for f in filters)


@click.command("pools")
@hub_options
@format_option
def pools_command(
    server: str, api_key: str, server_thumbprint: str | None, output_format: str
) -> None:
    """List the hub's worker pools, with their workers counted by health status."""

    async def fetch() -> Any:
        async with _hub(server, api_key, server_thumbprint) as hub:
            await hub.root()
            if output_format == "json":
                return await hub.get("/api/workerpools/all")
            return (await hub.get("/api/workerpools/summary"))["WorkerPoolSummaries"]

    answer = asyncio.run(fetch())
    if output_format == "json":
        emit_json(answer)
    else:
        emit_table(POOL_HEADERS, [pool_row(summary) for summary in answer])


@click.command("policies")
@hub_options
@format_option
def policies_command(
    server: str, api_key: str, server_thumbprint: str | None, output_format: str
) -> None:
    """List the hub's machine policies: health-check interval and type, clean-up."""

    async def fetch() -> list[dict[str, Any]]:
        async with _hub(server, api_key, server_thumbprint) as hub:
            await hub.root()
            return list(await hub.get("/api/machinepolicies/all"))

    policies = asyncio.run(fetch())
    if output_format == "json":
        emit_json(policies)
    else:
        emit_table(POLICY_HEADERS, [policy_row(policy) for policy in policies])


# --- health-check -----------------------------------------------------------------------------


@dataclass
class TaskWatch:
    """What of a followed task was shown already; ``news`` returns the lines to add."""

    shown_root: int = 0
    shown_activities: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)

    def news(self, details: dict[str, Any]) -> list[str]:
        """New root log lines and newly ended workers, in the order they happened."""
        events: list[tuple[str, str]] = []
        for root in details["ActivityLogs"]:
            for activity in root["Children"]:
                if activity["Ended"] is None or activity["Id"] in self.shown_activities:
                    continue
                self.shown_activities.add(activity["Id"])
                events.append((activity["Ended"], self._result(activity)))
            elements = root["LogElements"]
            events.extend((e["OccurredAt"], e["MessageText"]) for e in elements[self.shown_root :])
            self.shown_root = len(elements)
        return [line for _, line in sorted(events, key=lambda event: event[0])]

    def _result(self, activity: dict[str, Any]) -> str:
        name = activity["Name"].removeprefix("Check ")
        if activity["Status"] == "Failed":
            self.failed.append(name)
        elements = activity["LogElements"]
        verdict = elements[-1]["MessageText"] if elements else activity["Status"]
        return f"  {name}: {verdict}"


def task_failure(task: dict[str, Any], failed: Sequence[str], health: dict[str, str]) -> str:
    """The one line a failed health task ends with: which workers, and how."""
    if failed:
        named = ", ".join(f"{name} ({health.get(name, 'Failed')})" for name in failed)
        return f"health check {task['Id']} {task['State'].lower()}: {named}"
    reason = task.get("ErrorMessage") or "no reason given"
    return f"health check {task['Id']} ended {task['State']}: {reason}"


async def _submit(hub: HubApi, pool: str | None, workers: tuple[str, ...]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if pool is not None:
        arguments["WorkerpoolId"] = resolve(
            await hub.get("/api/workerpools/all"), pool, "worker pool"
        )["Id"]
    if workers:
        known = await hub.get("/api/workers/all")
        arguments["MachineIds"] = [resolve(known, w, "worker")["Id"] for w in workers]
    task = await hub.request("POST", "/api/tasks", {"Name": "Health", "Arguments": arguments})
    return dict(task)


async def follow(
    hub: HubApi, task_id: str, echo: Callable[[str], None], interval: float = FOLLOW_INTERVAL
) -> tuple[dict[str, Any], list[str]]:
    """Print the task's progress until it completes; (the task, the failed workers)."""
    watch = TaskWatch()
    while True:
        details = await hub.get(f"/api/tasks/{task_id}/details")
        for line in watch.news(details):
            echo(line)
        task: dict[str, Any] = details["Task"]
        if task["IsCompleted"]:
            return task, watch.failed
        await asyncio.sleep(interval)  # the API has no push: look again shortly


@click.command("health-check")
@hub_options
@click.option("--pool", metavar="POOL", help="check the workers of this pool (name or id)")
@click.option(
    "--worker",
    "workers",
    multiple=True,
    metavar="WORKER",
    help="check this worker (name or id); repeat for several",
)
@click.option("--no-wait", is_flag=True, help="print the task's id and return at once")
def health_check_command(
    server: str,
    api_key: str,
    server_thumbprint: str | None,
    pool: str | None,
    workers: tuple[str, ...],
    no_wait: bool,
) -> None:
    """Check the health of workers (all of them by default) and follow the check.

    Exit 0 when the check succeeded, 1 naming the unhealthy or unavailable workers
    otherwise. Ctrl-C stops following; the check goes on on the hub.
    """
    submitted: dict[str, Any] = {}

    async def check() -> tuple[dict[str, Any], list[str], dict[str, str]]:
        async with _hub(server, api_key, server_thumbprint) as hub:
            await hub.root()
            task = await _submit(hub, pool, workers)
            submitted.update(task)
            if no_wait:
                return task, [], {}
            click.echo(f"{task['Id']}: {task['Description']}")
            task, failed = await follow(hub, task["Id"], click.echo)
            health: dict[str, str] = {}
            if failed:
                for worker in await hub.get("/api/workers/all"):
                    health[worker["Name"]] = worker["HealthStatus"]
            return task, failed, health

    try:
        task, failed, health = asyncio.run(until_signalled(check()))
    except Interrupted as stopped:
        if not submitted:
            raise
        raise Interrupted(
            stopped.signum,
            f"Stopped following {submitted['Id']}; the health check goes on on the hub "
            f"(GET /api/tasks/{submitted['Id']} shows it)",
        ) from None
    if no_wait:
        click.echo(task["Id"])
        return
    if not task["FinishedSuccessfully"]:
        raise HubViewError(task_failure(task, failed, health))
    click.echo(f"{task['Id']} {task['State']} in {task['Duration']}")


COMMANDS = (workers_command, pools_command, policies_command, health_check_command)
