"""hub run, hub deploy, hub tasks, hub task, hub cancel: a hub's tasks, for people.

``hub run`` submits an ``AdHocScript`` task and ``hub deploy`` a ``Deploy`` task
(uploading the package into the hub's repository first unless it holds the same
id and version with the same content); both follow the task live through
``/api/tasks/{id}/details?since=<NextLogCursor>``, each line prefixed by its
worker (``[web-1] hello``), print the output variables and exit 0 when the task
succeeded, 1 with one line saying why otherwise.

Ctrl-C while following asks, when stdin is a terminal, whether to cancel the
task or only stop following it; without a terminal (or on SIGTERM) it only stops
following, and says how to follow again. A hub that cannot be reached while a
task is followed (a restart) is asked again for a while: the cursor makes sure
no line is shown twice or lost.
"""

from __future__ import annotations

import asyncio
import functools
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from agent.calamari.deployment import DeploymentError, package_identity
from agent.calamari.variables import VariablesError, load_variables
from agent.cli.hub_views import HubViewError, resolve, when
from agent.cli.output import emit_fields, emit_json, emit_table, format_option
from agent.cli.registration import hub_options
from agent.cli.signals import Interrupted, until_signalled
from agent.client.hub_api import HubApi, HubApiError
from agent.hub.rules.adhoc import MAX_PARALLELISM

FIRST_LOOK = 0.05  # seconds before the first look at a new task's details
LONGEST_LOOK = 0.5  # seconds between looks at a task that prints nothing
LOOK_GROWTH = 1.5
RECONNECT_FOR = 120.0  # seconds a follower keeps asking a hub that went away (a restart)
SYNTAXES = {"bash": "Bash", "python": "Python", "sh": "sh"}
TASK_STATES = ("Queued", "Executing", "Cancelling", "Success", "Failed", "Canceled", "TimedOut")
DESCRIPTION_WIDTH = 60
TASK_ID = re.compile(r"(?:servertasks-)?([0-9]{1,18})", re.IGNORECASE)
MASKED = "********"
UNFINISHED = ("Pending", "Running", "Queued", "Executing", "Cancelling")


@dataclass(frozen=True)
class Connection:
    server: str
    api_key: str
    thumbprint: str | None

    def hub(self) -> HubApi:
        return HubApi(self.server, self.api_key, self.thumbprint)


# --- pure: what a follower prints -------------------------------------------------------------


@dataclass
class TaskWatch:
    """What of a followed task was shown already: the log cursor (the highest element
    id seen) and the steps whose end was printed. ``news`` returns the lines to add."""

    cursor: int = 0
    ended: set[str] = field(default_factory=set)

    def news(self, details: dict[str, Any]) -> list[str]:
        """The log elements newer than the cursor, in the order they were stored, each
        prefixed by its worker; then a line for each step that has just ended."""
        lines: list[tuple[int, str]] = []
        endings: list[str] = []
        for activity, worker in _activities(details["ActivityLogs"], None):
            for element in activity.get("LogElements") or []:
                number = int(element.get("Id") or 0)
                if number > self.cursor:
                    lines.append((number, _prefixed(worker, element["MessageText"])))
            step = bool(worker and activity.get("Worker"))
            # by its status: Ended alone is not enough (a step's activity may carry one
            # while it is still Pending or Running)
            over = activity.get("Ended") and activity.get("Status") not in UNFINISHED
            over = over and not details.get("HasMoreLogs")  # its lines first
            if step and over and activity["Id"] not in self.ended:
                self.ended.add(activity["Id"])
                endings.append(_prefixed(worker, f"finished: {activity['Status']}"))
        lines.sort(key=lambda line: line[0])
        newest = max((number for number, _ in lines), default=self.cursor)
        self.cursor = max(self.cursor, newest, int(details.get("NextLogCursor") or 0))
        return [text for _, text in lines] + endings


def _activities(
    activities: Sequence[dict[str, Any]], worker: str | None
) -> list[tuple[dict[str, Any], str | None]]:
    """Every activity of the tree with the worker it runs on (a step's, inherited by
    its children; None for the task's own activities)."""
    found: list[tuple[dict[str, Any], str | None]] = []
    for activity in activities:
        own = activity.get("Worker") or worker
        found.append((activity, own))
        found.extend(_activities(activity.get("Children") or [], own))
    return found


def _prefixed(worker: str | None, text: str) -> str:
    return f"[{worker}] {text}" if worker else text


def output_variables(details: dict[str, Any]) -> list[str]:
    """``[worker] Name = Value`` for each step's output variables (sensitive ones masked,
    whatever the hub sent)."""
    lines = []
    for activity, worker in _activities(details["ActivityLogs"], None):
        if not activity.get("Worker"):
            continue
        for variable in activity.get("OutputVariables") or []:
            value = MASKED if variable.get("IsSensitive") else variable.get("Value")
            shown = "" if value is None else value
            lines.append(_prefixed(worker, f"{variable['Name']} = {shown}"))
    return lines


def task_number(text: str) -> str:
    """``ServerTasks-N`` from ``ServerTasks-N`` (any case) or ``N``; BadParameter otherwise."""
    match = TASK_ID.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter(f"expected a task id such as ServerTasks-12, not {text!r}")
    return f"ServerTasks-{int(match.group(1))}"


def outcome_line(task: dict[str, Any]) -> str:
    """Why a task that did not succeed ended as it did, in one line."""
    reason = task.get("ErrorMessage") or "no reason given"
    return f"{task['Id']} {task['State']}: {reason}"


def task_row(task: dict[str, Any]) -> list[str]:
    description = str(task.get("Description") or "")
    if len(description) > DESCRIPTION_WIDTH:
        description = description[: DESCRIPTION_WIDTH - 3] + "..."
    return [
        task["Id"],
        task["Name"],
        task["State"],
        description,
        when(task.get("QueueTime")),
        task.get("Duration") or "",
    ]


TASK_HEADERS = ("ID", "NAME", "STATE", "DESCRIPTION", "QUEUED (UTC)", "DURATION")


def syntax_of(script: Path, chosen: str | None) -> str:
    """The API's Syntax: the one chosen, else from the file's extension (.py is Python,
    .sh and anything else Bash)."""
    if chosen is not None:
        return SYNTAXES[chosen.lower()]
    return "Python" if script.suffix.lower() == ".py" else "Bash"


def variables_of(path: Path) -> list[dict[str, Any]]:
    """A variables file in the executor's JSON form (a list of ``{"name", "value",
    "sensitive"}``, or an object of name -> value) as the API's Variables."""
    try:
        variables = load_variables(path)
    except VariablesError as error:
        raise HubViewError(f"--variables: {error}") from None
    return [
        {"Name": v.name, "Value": "" if v.value is None else v.value, "IsSensitive": v.sensitive}
        for v in variables
    ]


# --- talking to the hub -----------------------------------------------------------------------


async def _scope(
    hub: HubApi, pool: str, workers: tuple[str, ...], all_workers: bool
) -> dict[str, Any]:
    """The Arguments that choose where a task runs, names resolved to ids."""
    await hub.root()
    chosen = resolve(await hub.get("/api/workerpools/all"), pool, "worker pool")
    scope: dict[str, Any] = {"WorkerPoolId": chosen["Id"], "TargetAllWorkers": all_workers}
    if workers:
        known = await hub.get("/api/workers/all")
        scope["MachineIds"] = [resolve(known, w, "worker")["Id"] for w in workers]
    return scope


async def _details(hub: HubApi, task_id: str, since: int, patient: bool = False) -> dict[str, Any]:
    """The task's details since the cursor. ``patient`` (the hub answered already): a hub
    that went away (a restart) is asked again for up to RECONNECT_FOR seconds, saying so
    once on stderr; else an unreachable hub is a HubApiError at once."""
    lost_at: float | None = None
    delay = FIRST_LOOK
    while True:
        try:
            details: dict[str, Any] = await hub.get(
                f"/api/tasks/{task_id}/details", since=str(since)
            )
            if lost_at is not None:
                click.echo(f"Reached the hub again; following {task_id}", err=True)
            return details
        except HubApiError as error:
            if error.status == 404:
                raise _no_such_task(task_id) from None
            if not (patient and error.transient):
                raise
            now = time.monotonic()
            if lost_at is None:
                lost_at = now
                click.echo(f"{error}; trying again for up to {RECONNECT_FOR:g} s", err=True)
            elif now - lost_at > RECONNECT_FOR:
                raise HubViewError(
                    f"{error}; the task may go on on the hub: tentacle hub task {task_id} --follow"
                ) from None
        await asyncio.sleep(delay)  # a hub restarting: no event to wait on from here
        delay = min(delay * LOOK_GROWTH, LONGEST_LOOK * 4)


def _no_such_task(task_id: str) -> HubViewError:
    return HubViewError(f"the hub has no task {task_id} (tentacle hub tasks lists them)")


async def follow(
    hub: HubApi, task_id: str, watch: TaskWatch, echo: Callable[[str], None], patient: bool
) -> dict[str, Any]:
    """Print the task's new lines until it completes; returns the last details.
    ``patient``: the hub answered already (see _details); it is once it answers here."""
    delay = FIRST_LOOK
    while True:
        details = await _details(hub, task_id, watch.cursor, patient)
        patient = True
        lines = watch.news(details)
        for line in lines:
            echo(line)
        if details.get("HasMoreLogs"):
            continue  # one answer holds a bounded part of the log: the rest at once
        if details["Task"]["IsCompleted"]:
            return details
        # the API has no push: look again soon when it prints, less often when it is quiet
        delay = FIRST_LOOK * 2 if lines else min(delay * LOOK_GROWTH, LONGEST_LOOK)
        await asyncio.sleep(delay)


async def _cancel(hub: HubApi, task_id: str) -> dict[str, Any]:
    try:
        return dict(await hub.request("POST", f"/api/tasks/{task_id}/cancel"))
    except HubApiError as error:
        if error.status == 404:
            raise _no_such_task(task_id) from None
        raise


def _interactive() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):  # closed or replaced stdin
        return False


def _ask_cancel(task_id: str) -> bool:
    """Ask whether to cancel the task (True) or only stop following it; Ctrl-C or the
    end of input again means stop following."""
    for _ in range(5):  # a few tries at a typo, then the safe answer
        try:
            answer = click.prompt(
                f"\nCancel {task_id} on the hub, or only stop following it? [cancel/stop]",
                default="stop",
                show_default=False,
            )
        except (click.Abort, EOFError, KeyboardInterrupt):
            return False
        word = str(answer).strip().lower()
        if word in ("c", "cancel"):
            return True
        if word in ("s", "stop", ""):
            return False
        click.echo("Answer cancel or stop")
    return False


def _stopped_note(task_id: str) -> str:
    return (
        f"Stopped following {task_id}; it goes on on the hub. Follow it again with: "
        f"tentacle hub task {task_id} --follow"
    )


def follow_to_the_end(
    connection: Connection, task_id: str, watch: TaskWatch, patient: bool
) -> dict[str, Any]:
    """Follow the task until it completes, under Ctrl-C's question; returns the last
    details. Interrupted when the user only stopped following. ``patient``: the hub
    answered already (it took the task), so a hub gone away is waited for a while."""

    async def following() -> dict[str, Any]:
        async with connection.hub() as hub:
            return await follow(hub, task_id, watch, click.echo, patient)

    try:
        return asyncio.run(until_signalled(following()))
    except Interrupted as stopped:
        if stopped.signum != signal.SIGINT or not _interactive() or not _ask_cancel(task_id):
            raise Interrupted(stopped.signum, _stopped_note(task_id)) from None

    async def cancelling() -> dict[str, Any]:
        async with connection.hub() as hub:
            task = await _cancel(hub, task_id)
            click.echo(f"Cancel requested: {task_id} is {task['State']}")
            return await follow(hub, task_id, watch, click.echo, True)

    try:
        return asyncio.run(until_signalled(cancelling()))
    except Interrupted as stopped:
        raise Interrupted(stopped.signum, _stopped_note(task_id)) from None


def conclude(details: dict[str, Any]) -> None:
    """The output variables, then the outcome: a line on success, HubViewError else."""
    variables = output_variables(details)
    if variables:
        click.echo("Output variables:")
        for line in variables:
            click.echo(f"  {line}")
    task = details["Task"]
    if not task["FinishedSuccessfully"]:
        raise HubViewError(outcome_line(task))
    click.echo(f"{task['Id']} {task['State']} in {task['Duration']}")


def submit_and_follow(
    connection: Connection, submit: Callable[[HubApi], Any], no_wait: bool
) -> None:
    """Submit a task (``submit`` returns its resource), then follow it to its end."""

    async def submitting() -> dict[str, Any]:
        async with connection.hub() as hub:
            return dict(await submit(hub))

    task = asyncio.run(until_signalled(submitting()))
    if no_wait:
        click.echo(task["Id"])
        return
    click.echo(f"{task['Id']}: {task['Description']}")
    conclude(follow_to_the_end(connection, task["Id"], TaskWatch(), patient=True))


# --- the commands -----------------------------------------------------------------------------


def where_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--pool, --all-workers, --worker, --max-parallelism, --timeout, --no-wait."""
    for option in reversed(
        [
            click.option(
                "--pool", required=True, metavar="POOL", help="the worker pool (name or id)"
            ),
            click.option(
                "--all-workers",
                is_flag=True,
                help="run on every healthy worker of the pool (default: the least busy one)",
            ),
            click.option(
                "--worker",
                "workers",
                multiple=True,
                metavar="WORKER",
                help="run on this worker of the pool (name or id); repeat for several",
            ),
            click.option(
                "--max-parallelism",
                type=click.IntRange(1, MAX_PARALLELISM),  # the hub's own limit
                metavar="N",
                help="at most N workers at once (the hub's default: 10)",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(0, None, min_open=True),
                metavar="SECONDS",
                help="fail the task if it runs longer",
            ),
            click.option("--no-wait", is_flag=True, help="print the task's id and return at once"),
        ]
    ):
        function = option(function)
    return function


def _limits(max_parallelism: int | None, timeout: float | None) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    if max_parallelism is not None:
        limits["MaxParallelism"] = max_parallelism
    if timeout is not None:
        limits["Timeout"] = timeout
    return limits


@click.command("run")
@hub_options
@where_options
@click.option(
    "--syntax",
    type=click.Choice(sorted(SYNTAXES), case_sensitive=False),
    help="the script's language (default: python for a .py file, else bash)",
)
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("arguments", nargs=-1)
def run_command(
    server: str,
    api_key: str,
    server_thumbprint: str | None,
    pool: str,
    all_workers: bool,
    workers: tuple[str, ...],
    max_parallelism: int | None,
    timeout: float | None,
    no_wait: bool,
    syntax: str | None,
    script: Path,
    arguments: tuple[str, ...],
) -> None:
    """Run the script SCRIPT on workers of a pool, through the hub, and follow it live.

    Arguments after -- are the script's own: tentacle hub run --pool P deploy.sh -- a b.
    Exit 0 when it succeeded on every worker, 1 naming why otherwise. Ctrl-C asks
    whether to cancel the task or only stop following it.
    """
    try:
        body = script.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise HubViewError(f"{script}: the script must be UTF-8 text") from None
    connection = Connection(server, api_key, server_thumbprint)

    async def submit(hub: HubApi) -> Any:
        scope = await _scope(hub, pool, workers, all_workers)
        task_arguments = {
            "ScriptBody": body,
            "Syntax": syntax_of(script, syntax),
            "ScriptArguments": list(arguments),
            **scope,
            **_limits(max_parallelism, timeout),
        }
        return await hub.request(
            "POST", "/api/tasks", {"Name": "AdHocScript", "Arguments": task_arguments}
        )

    submit_and_follow(connection, submit, no_wait)


async def _packaged(
    hub: HubApi, package: Path, replace: bool, echo: Callable[[str], None]
) -> tuple[str, str]:
    """The package's (PackageId, Version) in the hub's repository, uploaded first unless
    the same id and version are there with the same content; ``echo`` says which."""
    try:
        package_id, version = package_identity(package)
    except DeploymentError as error:
        raise HubViewError(f"--package {error}") from None
    local_hash = await asyncio.to_thread(_sha256, package)
    try:
        held = await hub.get(f"/api/packages/packages-{package_id}.{version}")
    except HubApiError as error:
        if error.status != 404:
            raise
        held = None
    if held is not None and str(held.get("Hash", "")).lower() == local_hash:
        echo(f"{package_id} {version} is in the hub's repository already (same content)")
        return str(held["PackageId"]), str(held["Version"])
    if held is not None and not replace:
        raise HubViewError(
            f"the hub holds {package_id} {version} with another content (sha256 {held['Hash']}):"
            " give the package a new version, or --replace to replace it"
        )
    query = {"replace": "true"} if held is not None else {}
    stored = await hub.upload("/api/packages/raw", package, **query)
    echo(f"Uploaded {package.name} to the hub ({stored['PackageSizeBytes']} bytes)")
    return str(stored["PackageId"]), str(stored["Version"])


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as content:
        while chunk := content.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@click.command("deploy")
@hub_options
@where_options
@click.option(
    "--package",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="the package, named Id.1.2.3.zip (or .tar.gz, .nupkg...)",
)
@click.option(
    "--variables",
    "variables_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help='JSON: [{"name": ..., "value": ..., "sensitive": true|false}, ...]',
)
@click.option(
    "--replace", is_flag=True, help="replace the hub's package of this id and version if it differs"
)
def deploy_command(
    server: str,
    api_key: str,
    server_thumbprint: str | None,
    pool: str,
    all_workers: bool,
    workers: tuple[str, ...],
    max_parallelism: int | None,
    timeout: float | None,
    no_wait: bool,
    package: Path,
    variables_file: Path,
    replace: bool,
) -> None:
    """Deploy a package to workers of a pool, through the hub, and follow it live.

    The package goes into the hub's repository (once: not again when the hub holds
    it with the same content), then each chosen worker runs tentacle calamari
    deploy-package with the variables (sensitive ones never shown). Exit 0 when it
    succeeded on every worker, 1 naming why otherwise.
    """
    variables = variables_of(variables_file)
    connection = Connection(server, api_key, server_thumbprint)

    async def submit(hub: HubApi) -> Any:
        scope = await _scope(hub, pool, workers, all_workers)
        # with --no-wait stdout is the task's id alone (TASK=$(tentacle hub deploy ...))
        say = functools.partial(click.echo, err=no_wait)
        package_id, version = await _packaged(hub, package, replace, say)
        task_arguments = {
            "PackageId": package_id,
            "PackageVersion": version,
            "Variables": variables,
            **scope,
            **_limits(max_parallelism, timeout),
        }
        return await hub.request(
            "POST", "/api/tasks", {"Name": "Deploy", "Arguments": task_arguments}
        )

    submit_and_follow(connection, submit, no_wait)


@click.command("tasks")
@hub_options
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(TASK_STATES, case_sensitive=False),
    help="only tasks in this state; repeat for several",
)
@click.option(
    "--take", type=click.IntRange(1, 10_000), default=30, show_default=True, help="the newest N"
)
@format_option
def tasks_command(
    server: str,
    api_key: str,
    server_thumbprint: str | None,
    states: tuple[str, ...],
    take: int,
    output_format: str,
) -> None:
    """List the hub's tasks, newest first."""
    canonical = {state.lower(): state for state in TASK_STATES}

    async def fetch() -> list[dict[str, Any]]:
        async with HubApi(server, api_key, server_thumbprint) as hub:
            await hub.root()
            query = {"take": str(take)}
            if states:
                query["states"] = ",".join(canonical[s.lower()] for s in states)
            return list((await hub.get("/api/tasks", **query))["Items"])

    tasks = asyncio.run(until_signalled(fetch()))
    if output_format == "json":
        emit_json(tasks)
    elif not tasks:
        click.echo("No tasks" + (" match" if states else ""))
    else:
        emit_table(TASK_HEADERS, [task_row(task) for task in tasks])


@click.command("task")
@hub_options
@click.argument("task_id", metavar="TASK")
@click.option("--follow", is_flag=True, help="follow it live to its end (exit 1 unless Success)")
@format_option
def task_command(
    server: str,
    api_key: str,
    server_thumbprint: str | None,
    task_id: str,
    follow: bool,
    output_format: str,
) -> None:
    """Show a task: its state, each worker's step and its log (TASK: ServerTasks-N).

    With --follow, follow it live as hub run does, from its first line."""
    task_id = task_number(task_id)
    connection = Connection(server, api_key, server_thumbprint)
    if follow:
        click.echo(f"Following {task_id}")
        conclude(follow_to_the_end(connection, task_id, TaskWatch(), patient=False))
        return

    async def fetch() -> dict[str, Any]:
        async with connection.hub() as hub:
            return await _details(hub, task_id, 0)

    details = asyncio.run(until_signalled(fetch()))
    task = details["Task"]
    if output_format == "json":
        emit_json(task)
        return
    emit_fields(
        [
            ("Id", task["Id"]),
            ("Name", task["Name"]),
            ("Description", task["Description"]),
            ("State", task["State"]),
            ("Queued", when(task.get("QueueTime"))),
            ("Started", when(task.get("StartTime"))),
            ("Completed", when(task.get("CompletedTime"))),
            ("Duration", task.get("Duration") or ""),
            *([("Error", task["ErrorMessage"])] if task.get("ErrorMessage") else []),
        ]
    )
    lines = TaskWatch().news(details)
    if lines:
        click.echo("Log:")
        for line in lines:
            click.echo(f"  {line}")
    variables = output_variables(details)
    if variables:
        click.echo("Output variables:")
        for line in variables:
            click.echo(f"  {line}")


@click.command("cancel")
@hub_options
@click.argument("task_id", metavar="TASK")
def cancel_command(server: str, api_key: str, server_thumbprint: str | None, task_id: str) -> None:
    """Cancel a task (TASK: ServerTasks-N): a queued one at once, a running one once its
    workers have stopped its scripts. A finished task stays as it ended."""
    task_id = task_number(task_id)

    async def cancel() -> dict[str, Any]:
        async with HubApi(server, api_key, server_thumbprint) as hub:
            return await _cancel(hub, task_id)

    task = asyncio.run(until_signalled(cancel()))
    if task["State"] in ("Success", "Failed", "TimedOut"):
        click.echo(f"{task_id} had finished already ({task['State']}): nothing to cancel")
    elif task["State"] == "Canceled":
        click.echo(f"{task_id} is Canceled")
    else:
        click.echo(
            f"Cancel requested: {task_id} is {task['State']} until its workers stop "
            f"(tentacle hub task {task_id} --follow shows the end)"
        )


COMMANDS = (run_command, deploy_command, tasks_command, task_command, cancel_command)
