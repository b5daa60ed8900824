"""/api/tasks: server tasks (Octopus's ServerTask), their details and raw log.

Tasks are health checks (``Name: "Health"``) and scripts run on workers
(``Name: "AdHocScript"``, agent.hub.adhoc); the queue, the cancel and the log are
the same for every kind of task. ``/details?since=N`` serves a log incrementally:
every element carries its ``Id`` (increasing), the document the ``NextLogCursor``
to ask from next. One answer holds at most ``LOG_PAGE`` elements (about
``LOG_PAGE_CHARS`` characters): ``HasMoreLogs`` says more follow at once, and the
``NextLogCursor`` is then the last element returned, so a follower pages on with
``since=``; ``PhysicalLogSize`` is the size (characters, a newline each) of the
elements returned, not of the whole log (summing that would scan it on every call).
``/raw`` streams the whole log, read in pages, so its size does not weigh on memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub import ids
from agent.hub.api import deployments, task_arguments
from agent.hub.api.bodies import Fields, json_object
from agent.hub.api.collections import (
    id_filter,
    paging,
    respond_all,
    respond_counted,
)
from agent.hub.api.common import iso, note
from agent.hub.api.context import caller_of, context_of
from agent.hub.api.errors import bad_request, conflict, invalid, not_found
from agent.hub.api.paging import Page
from agent.hub.api.routes import Routes, collection_path, space_of, space_path
from agent.hub.changes import RECHECK
from agent.hub.rules.dispatch import counts_against_cap
from agent.hub.rules.filters import BadFilter, choices
from agent.hub.secrets import shown_arguments
from agent.hub.store import steps as store_steps
from agent.hub.store import tables as t
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import Row, fetch_all
from agent.hub.store.text import LowerText, storable
from agent.hub.store.worker_queries import LARGEST_ID

TASK_NAMES = ("Health", "AdHocScript", "Deploy")
MAX_WAIT = 60.0  # seconds a ?wait= request may ask to wait at most
# a task's description is a line in lists and events (Octopus's are a short sentence)
MAX_DESCRIPTION = 1000


def human_duration(seconds: float) -> str:
    if seconds < 1:
        return "less than a second"
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return ""  # pragma: no cover - seconds >= 1 always matches


def task_resource(row: Row, now: datetime) -> dict[str, Any]:
    task_id = ids.format_id(ids.SERVER_TASK, row["id"])
    base = space_path(row["space_id"], f"tasks/{task_id}")
    state = row["state"]
    completed = state in store_tasks.FINISHED
    start, end = row["start_time"], row["completed_time"]
    duration = human_duration(((end or now) - start).total_seconds()) if start else ""
    return {
        "Id": task_id,
        "SpaceId": ids.format_id(ids.SPACE, row["space_id"]),
        "Name": row["name"],
        "Description": row["description"],
        "Arguments": shown_arguments(row["arguments"]),  # sensitive values masked
        "State": state,
        "Completed": end.strftime("%A, %d %B %Y %H:%M:%S %z") if end else None,
        "QueueTime": iso(row["queue_time"]),
        "QueueTimeExpiry": None,
        "StartTime": iso(start),
        "LastUpdatedTime": iso(end or start or row["queue_time"]),
        "CompletedTime": iso(end),
        "ServerNode": row["server_node"],
        "QueuedBy": row["queued_by"] or "",
        "Duration": duration,
        "ErrorMessage": row["error_message"] or "",
        "HasBeenPickedUpByProcessor": start is not None,
        "IsCompleted": completed,
        "FinishedSuccessfully": state == store_tasks.SUCCESS,
        "HasPendingInterruptions": False,
        "CanRerun": completed,
        "HasWarningsOrErrors": row["has_warnings_or_errors"],
        "Links": {
            "Self": base,
            "Details": f"{base}/details",
            "Raw": f"{base}/raw",
            "Cancel": f"{base}/cancel",
            "State": f"{base}/state",
            "Rerun": space_path(row["space_id"], f"tasks/rerun/{task_id}"),
        },
    }


async def _tasks(
    conn: AsyncConnection, space: int, where: Sequence[sa.ColumnElement[bool]] = ()
) -> list[Row]:
    query = sa.select(t.server_tasks).where(t.server_tasks.c.space_id == space, *where)
    return await fetch_all(conn, query.order_by(t.server_tasks.c.id.desc()))


def _task_filter(request: web.Request) -> list[sa.ColumnElement[bool]]:
    """``states`` (or ``state``) and ``name`` as SQL conditions (a caller waiting for
    the queue to drain reads the few unfinished tasks, not every one): each value one
    the hub knows, else a 400 naming the parameter, the value and the accepted ones."""
    query = request.query
    try:
        states = choices(query, "state" if "state" in query else "states", store_tasks.STATES)
        names = choices(query, "name", TASK_NAMES)
    except BadFilter as error:
        raise bad_request(str(error)) from None
    tasks = t.server_tasks
    where: list[sa.ColumnElement[bool]] = []
    if states is not None:
        where.append(tasks.c.state.in_(sorted(states)))
    if names is not None:
        where.append(tasks.c.name.in_(sorted(names)))
    return where


async def list_tasks(request: web.Request) -> web.Response:
    space = await space_of(request)
    where = [*_task_filter(request), *_page_filter(request)]
    page = paging(request)
    now = context_of(request).now()
    async with context_of(request).store.connect() as conn:
        rows, total = await _task_page(conn, space, where, page)
        counts = await store_tasks.counts_by_state(conn, space)
    return respond_counted(
        request,
        "Task",
        collection_path(request, "tasks"),
        [task_resource(row, now) for row in rows],
        total,
        page,
        ("skip", "take", "ids", "states", "name"),
        {"TotalCounts": counts},
    )


async def _task_page(
    conn: AsyncConnection, space: int, where: Sequence[sa.ColumnElement[bool]], page: Page
) -> tuple[list[Row], int]:
    """The page's tasks, newest first, and how many match in all: both chosen by the
    database (a caller waiting with take=1 for 200 queued tasks to drain read all 200
    on each look, most of the hub's work in P10)."""
    tasks = t.server_tasks
    matching = sa.and_(tasks.c.space_id == space, *where)
    total = (await conn.execute(sa.select(sa.func.count()).where(matching))).scalar_one()
    query = sa.select(tasks).where(matching).order_by(tasks.c.id.desc())
    rows = await fetch_all(conn, query.offset(page.skip).limit(page.take))
    return rows, int(total)


def _page_filter(request: web.Request) -> list[sa.ColumnElement[bool]]:
    """``ids`` and ``partialName`` as SQL conditions, matching as respond_page does: an
    id exactly as the hub writes it (one it could not have written matches nothing),
    a part of the name whatever its case."""
    tasks = t.server_tasks
    where: list[sa.ColumnElement[bool]] = []
    wanted = id_filter(request)
    if wanted is not None:
        numbers = {ids.try_parse_id(ids.SERVER_TASK, text) for text in wanted}
        where.append(tasks.c.id.in_(sorted(
            number for number in numbers
            if number is not None and number <= LARGEST_ID
            and ids.format_id(ids.SERVER_TASK, number) in wanted
        )))  # fmt: skip
    partial = request.query.get("partialName")
    if partial is not None:
        # text a database cannot be asked about (NUL, not UTF-8) is in no name
        where.append(
            LowerText(tasks.c.name).contains(partial.lower(), autoescape=True)
            if storable(partial)
            else sa.false()
        )
    return where


async def all_tasks(request: web.Request) -> web.Response:
    space = await space_of(request)
    where = _task_filter(request)
    now = context_of(request).now()
    async with context_of(request).store.connect() as conn:
        rows = await _tasks(conn, space, where)
    return respond_all(request, [task_resource(row, now) for row in rows])


async def _task_or_404(conn: AsyncConnection, request: web.Request) -> Row:
    """The task the route names, in the request's space; callers resolve that space
    (space_of) BEFORE they open ``conn``: its own connection, taken while ``conn`` is
    held, would deadlock the pool once more than its size came at once."""
    space = await space_of(request)
    text = request.match_info["id"]
    number = ids.try_parse_id(ids.SERVER_TASK, text)
    row = None if number is None else await store_tasks.task(conn, number)
    if row is None or row["space_id"] != space:
        raise not_found(f"there is no task {text!r}")
    return row


async def get_task(request: web.Request) -> web.Response:
    await space_of(request)  # first: _task_or_404 must not take a 2nd connection
    async with context_of(request).store.connect() as conn:
        row = await _task_or_404(conn, request)
    return web.json_response(task_resource(row, context_of(request).now()))


def _element(entry: Row) -> dict[str, Any]:
    return {
        "Id": entry["id"],
        "Category": entry["category"],
        "OccurredAt": iso(entry["occurred"]),
        "MessageText": entry["message"],
        "Detail": None,
    }


LOG_PAGE = 10_000  # log elements in one details answer at most
LOG_PAGE_CHARS = 4 * 1024 * 1024  # characters of messages in one details answer, about
CURSOR_DIGITS = 18  # a log cursor's digits at most (a signed 64-bit id)


def _since(request: web.Request) -> int:
    """``since``: a log element id (NextLogCursor of an earlier answer), 0 if absent."""
    return log_cursor(request.query.get("since"), "since")


def log_cursor(text: str | None, name: str) -> int:
    """A log cursor given as ``name`` (400 naming it unless digits), 0 if absent."""
    if text is None or text == "":
        return 0
    # ASCII digits only (str.isdigit takes '²' and '١٢'), few enough for an SQL integer
    if not (text.isascii() and text.isdigit()) or len(text) > CURSOR_DIGITS:
        shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
        raise bad_request(
            f"{name} must be a log cursor (the NextLogCursor of an earlier answer: at most "
            f"{CURSOR_DIGITS} ASCII digits), not {shown!r}"
        )
    return int(text)


async def _log_page(conn: AsyncConnection, task_id: int, since: int, limit: int) -> list[Row]:
    """At most ``limit`` log elements of the task after the cursor ``since``, in order."""
    log = t.task_log
    # no id is above the column's largest value (PostgreSQL's integer is 32-bit): a
    # larger cursor means the same and would overflow the query's parameter
    since = min(since, 2**31 - 1 if conn.dialect.name == "postgresql" else 2**63 - 1)
    query = (
        sa.select(log)
        .where(log.c.task_id == task_id, log.c.id > since)
        .order_by(log.c.id)
        .limit(limit)
    )
    return await fetch_all(conn, query)


async def _bounded_log(conn: AsyncConnection, task_id: int, since: int) -> tuple[list[Row], bool]:
    """The elements after ``since`` that one answer holds (``LOG_PAGE`` at most, and
    no more once ``LOG_PAGE_CHARS`` are reached, one at least) and whether more follow."""
    rows = await _log_page(conn, task_id, since, LOG_PAGE + 1)
    kept: list[Row] = []
    chars = 0
    for row in rows[:LOG_PAGE]:
        if kept and chars + len(row["message"]) > LOG_PAGE_CHARS:
            break
        kept.append(row)
        chars += len(row["message"]) + 1
    return kept, len(kept) < len(rows)


ROOT_STATUS = {
    "Queued": "Pending",
    "Executing": "Running",
    "Cancelling": "Running",
    "Success": "Success",
    "Failed": "Failed",
    "Canceled": "Canceled",
    "TimedOut": "Failed",
}


async def get_details(request: web.Request) -> web.Response:
    since = _since(request)
    await space_of(request)  # first: _task_or_404 must not take a 2nd connection
    return web.json_response(await details_document(request, since))


async def details_document(request: web.Request, since: int) -> dict[str, Any]:
    """The task's details with its log after the cursor ``since`` (404 if no such
    task); the request's space is resolved already (space_of)."""
    async with context_of(request).store.connect() as conn:
        row = await _task_or_404(conn, request)
        steps = await store_tasks.activities(conn, row["id"])
        workers = {s["activity_id"]: s for s in await store_steps.steps_of(conn, row["id"])}
        entries, more = await _bounded_log(conn, row["id"], since)
    cursor = entries[-1]["id"] if entries else since
    size = sum(len(entry["message"]) + 1 for entry in entries)
    task = task_resource(row, context_of(request).now())
    by_activity: dict[int | None, list[dict[str, Any]]] = {}
    for entry in entries:
        by_activity.setdefault(entry["activity_id"], []).append(_element(entry))
    children = []
    for step in steps:
        child: dict[str, Any] = {
            "Id": f"ServerTasks-{row['id']}_{step['id']}",
            "Name": step["name"],
            "Started": iso(step["started"]),
            "Ended": iso(step["ended"]),
            "Status": step["status"],
            "Children": [],
            "ShowAtSummaryLevel": True,
            "ProgressPercentage": 0,
            "ProgressMessage": None,
            "LogElements": by_activity.get(step["id"], []),
        }
        leased = workers.get(step["id"])
        if leased is not None:
            child["Worker"] = leased["worker_name"]
            child["ExitCode"] = leased["exit_code"]  # None until the script ended
            child["OutputVariables"] = list(leased["output_variables"] or [])
        children.append(child)
    done = sum(step["ended"] is not None for step in steps)
    root_status = ROOT_STATUS[row["state"]]
    if root_status == "Success" and row["has_warnings_or_errors"]:
        root_status = "SuccessWithWarning"
    root = {
        "Id": f"ServerTasks-{row['id']}",
        "Name": row["description"],
        "Status": root_status,
        "Started": task["StartTime"],
        "Ended": task["CompletedTime"],
        "Children": children,
        "ShowAtSummaryLevel": True,
        "LogElements": by_activity.get(None, []),
    }
    percent = 100 if task["IsCompleted"] else (int(100 * done / len(steps)) if steps else 0)
    return {
        "Id": task["Id"],
        "Task": task,
        "ActivityLogs": [root],
        "PhysicalLogSize": size,
        "NextLogCursor": cursor,
        "HasMoreLogs": more,
        "Progress": {"ProgressPercentage": percent, "EstimatedTimeRemaining": None},
        "Links": {"Self": f"{task['Links']['Self']}/details"},
    }


def _wait(request: web.Request) -> float:
    """``wait``: seconds the answer may wait for the task to change (0 if absent)."""
    text = request.query.get("wait")
    if text is None or text == "":
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT:  # NaN too
        raise bad_request(f"wait must be a number of seconds from 0 to {MAX_WAIT:g}, not {text!r}")
    return seconds


async def _changed_row(request: web.Request, wait: float) -> Row:
    """The task's row; with ``wait``, once its state differs from the one it had when
    asked, once it is completed, or once ``wait`` s have passed, whichever is first."""
    context = context_of(request)
    number = ids.try_parse_id(ids.SERVER_TASK, request.match_info["id"])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    first: str | None = None
    while True:
        with context.task_changes.watching(number or 0) as changed:
            async with context.store.connect() as conn:
                row = await _task_or_404(conn, request)
            first = first or row["state"]
            left = deadline - loop.time()
            if row["state"] != first or row["state"] in store_tasks.FINISHED or left <= 0:
                return row
            if context.task_changes.closed:
                return row
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, RECHECK)):
                    await changed.wait()


async def get_state(request: web.Request) -> web.Response:
    """The task's state; ``?wait=S`` answers when it changes (or is completed) within S
    seconds, else after them: a long poll instead of the caller's looks."""
    wait = _wait(request)
    await space_of(request)  # first: _task_or_404 must not take a 2nd connection
    row = await _changed_row(request, wait)
    task = task_resource(row, context_of(request).now())
    keys = ("Id", "State", "IsCompleted", "FinishedSuccessfully", "HasWarningsOrErrors")
    return web.json_response(
        {**{key: task[key] for key in keys}, "ErrorMessage": row["error_message"] or ""}
    )


RAW_PAGE = 2000  # log elements read from the store at once for /raw


async def get_raw(request: web.Request) -> web.StreamResponse:
    """The whole log as text, streamed: read in pages of ``RAW_PAGE`` elements, each
    page written (and its connection given back) before the next is read."""
    store = context_of(request).store
    await space_of(request)  # first: _task_or_404 must not take a 2nd connection
    async with store.connect() as conn:
        row = await _task_or_404(conn, request)
        steps = {s["id"]: s["name"] for s in await store_tasks.activities(conn, row["id"])}
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    since = 0
    while True:
        async with store.connect() as conn:
            entries = await _log_page(conn, row["id"], since, RAW_PAGE)
        if not entries:
            break
        since = entries[-1]["id"]
        text = "".join(
            f"{entry['occurred']:%H:%M:%S}   {entry['category']:<8} |   "
            f"{steps.get(entry['activity_id'], row['description'])}: {entry['message']}\n"
            for entry in entries
        )
        await response.write(text.encode())
    await response.write_eof()
    return response


async def create_task(request: web.Request) -> web.Response:
    space = await space_of(request)
    body = await json_object(request)
    fields = Fields(body)
    name = fields.choice("Name", TASK_NAMES, None)
    if name is None and not fields.errors:
        fields.errors.append(f"Name is required: one of {', '.join(TASK_NAMES)}")
    arguments = body.get("Arguments")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict):
        fields.errors.append(
            'Arguments must be an object (e.g. {"WorkerpoolId": "WorkerPools-1"} or '
            f'{{"MachineIds": ["Workers-1"]}}), not {task_arguments.shown(arguments)}'
        )
        arguments = {}
    description = fields.text("Description") or ""
    if len(description) > MAX_DESCRIPTION:
        fields.errors.append(
            f"Description must be at most {MAX_DESCRIPTION} characters, not {len(description)}"
        )
    context = context_of(request)
    known: dict[str, str] = {}  # the names of the pool and workers named, by id
    async with context.store.transaction() as conn:
        errors = fields.errors + await task_arguments.errors_in(conn, space, arguments, known, name)
        if name == "Deploy":  # the package exists; sensitive values sealed before stored
            more, arguments = await deployments.deploy_arguments(conn, space, arguments, request)
            errors += more
        if errors:
            raise invalid(errors)
        assert name is not None
        description = description or await task_arguments.describe(conn, name, arguments, known)
        row = await store_tasks.queue(
            conn, space, name, description, arguments, context.now(), caller_of(request).name
        )
        task_id = ids.format_id(ids.SERVER_TASK, row["id"])
        await note(conn, request, "TaskQueued", f"Task {description} queued", task_id)
    await context.changed(_queued(name))
    return web.json_response(task_resource(row, context.now()), status=201)


def _queued(name: str) -> str:
    """What ``HubContext.changed`` is told of a task of this name queued."""
    return "capped-task-queued" if counts_against_cap(name) else "tasks"


async def rerun_task(request: web.Request) -> web.Response:
    """A new queued task with the same name, description and arguments (as stored:
    sensitive values stay as they are kept, never shown)."""
    context = context_of(request)
    await space_of(request)  # first: _task_or_404 must not take a 2nd connection
    async with context.store.transaction() as conn:
        old = await _task_or_404(conn, request)
        if old["state"] not in store_tasks.FINISHED:  # CanRerun is false: one at a time
            shown = ids.format_id(ids.SERVER_TASK, old["id"])
            raise conflict(
                f"{shown} is {old['state']}: only a completed task can be rerun "
                "(wait for its end, or cancel it first)"
            )
        row = await store_tasks.queue(
            conn, old["space_id"], old["name"], old["description"], old["arguments"],
            context.now(), caller_of(request).name,
        )  # fmt: skip
        task_id = ids.format_id(ids.SERVER_TASK, row["id"])
        shown = ids.format_id(ids.SERVER_TASK, old["id"])
        await note(conn, request, "TaskQueued", f"Task {old['description']} queued again "
                   f"(a rerun of {shown})", task_id)  # fmt: skip
    await context.changed(_queued(old["name"]))
    return web.json_response(task_resource(row, context.now()), status=201)


async def cancel_task(request: web.Request) -> web.Response:
    context = context_of(request)
    await space_of(request)  # first: _task_or_404 must not take a 2nd connection
    async with context.store.transaction() as conn:
        row = await _task_or_404(conn, request)
        state = await store_tasks.request_cancel(conn, row["id"], context.now())
        # a task that had finished (before, or meanwhile) has nothing to cancel, and one
        # Cancelling has its cancel on its way: no event
        acted = (row["state"] != store_tasks.CANCELLING and state == store_tasks.CANCELLING) or (
            row["state"] == store_tasks.QUEUED and state == store_tasks.CANCELED
        )
        if acted:
            await note(
                conn,
                request,
                "TaskCanceled",
                f"Task {row['description']} cancel requested",
                ids.format_id(ids.SERVER_TASK, row["id"]),
            )
        after = await store_tasks.task(conn, row["id"])
    assert after is not None
    answer = task_resource(after, context.now())
    if acted:
        context.task_changes.changed(after["id"])
        await context.changed("tasks")
    elif after["state"] in store_tasks.FINISHED:
        answer["Message"] = f"the task had already finished ({after['state']}): nothing to cancel"
    elif after["state"] == store_tasks.CANCELLING:
        answer["Message"] = "the task is being cancelled already: its cancel is on its way"
    return web.json_response(answer)


def add_routes(routes: Routes) -> None:
    routes.get("/tasks", list_tasks)
    routes.get("/tasks/all", all_tasks)
    routes.post("/tasks", create_task)
    routes.get("/tasks/{id:ServerTasks-[0-9]+}", get_task)
    routes.get("/tasks/{id:ServerTasks-[0-9]+}/details", get_details)
    routes.get("/tasks/{id:ServerTasks-[0-9]+}/raw", get_raw)
    routes.post("/tasks/{id:ServerTasks-[0-9]+}/cancel", cancel_task)
    routes.get("/tasks/{id:ServerTasks-[0-9]+}/state", get_state)
    routes.post("/tasks/rerun/{id:ServerTasks-[0-9]+}", rerun_task)
