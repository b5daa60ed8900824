"""A task's ``Arguments`` as the API takes them: what is wrong with them, each error
naming its field, and the description that names the task's pool or workers as
people know them. The pool and the workers named are read once, in queries of up to
IDS_PER_QUERY ids, and their names kept (``known``, by id) for the description.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub import ids
from agent.hub.api import deployments
from agent.hub.rules.adhoc import adhoc_errors, is_seconds, project_errors
from agent.hub.store import tables as t
from agent.hub.store.records import fetch_all

# ids a query's IN list holds at most: asyncpg takes 32767 arguments, SQLite 32766 or more
IDS_PER_QUERY = 1000


async def _in_space(
    conn: AsyncConnection,
    table: sa.Table,
    kind: str,
    numbers: list[int],
    space: int,
    known: dict[str, str],
) -> None:
    """Put the names of the rows of ``table`` numbered ``numbers`` that are in ``space``
    into ``known``, by their ids (``Workers-1``): one query for up to IDS_PER_QUERY
    of them, whose answer the description reuses (``_names``)."""
    for start in range(0, len(numbers), IDS_PER_QUERY):
        chunk = numbers[start : start + IDS_PER_QUERY]
        rows = await fetch_all(conn, _named_in_space(table), {"rows": chunk, "space": space})
        known.update({ids.format_id(kind, row["id"]): row["name"] for row in rows})


@functools.cache
def _named_in_space(table: sa.Table) -> sa.Select[Any]:
    # built once per table (each POST makes it): agent.hub.store.tasks says why
    return sa.select(table.c.id, table.c.name).where(
        table.c.id.in_(sa.bindparam("rows", expanding=True)),
        table.c.space_id == sa.bindparam("space"),
    )


@functools.cache
def _named(table: sa.Table) -> sa.Select[Any]:
    return sa.select(table.c.id, table.c.name).where(
        table.c.id.in_(sa.bindparam("rows", expanding=True))
    )


async def _pool_errors(
    conn: AsyncConnection, space: int, arguments: dict[str, Any], known: dict[str, str]
) -> list[str]:
    """``WorkerpoolId`` (or ``WorkerPoolId``): absent, null or "" for every pool, else
    the id of a pool of this space (its name put into ``known``)."""
    errors, given = [], []
    for key in ("WorkerpoolId", "WorkerPoolId"):  # Octopus's clients spell it both ways
        pool = arguments.get(key)
        if pool is None or pool == "":
            continue
        number = exact_id(ids.WORKER_POOL, pool) if isinstance(pool, str) else None
        if number is None:
            errors.append(
                f"Arguments.{key} must be a worker pool id (WorkerPools-N), not {shown(pool)}"
            )
        else:
            given.append((key, pool, number))
    await _in_space(conn, t.worker_pools, ids.WORKER_POOL, [n for *_, n in given], space, known)
    for key, pool, _ in given:
        if pool not in known:
            errors.append(f"Arguments.{key}: there is no worker pool {pool!r} in this space")
    return errors


async def _machine_errors(
    conn: AsyncConnection, space: int, arguments: dict[str, Any], known: dict[str, str]
) -> list[str]:
    """``MachineIds``: absent, null or [] for every worker, else a list of the ids of
    workers of this space (their names put into ``known``)."""
    machines = arguments.get("MachineIds")
    if machines is None:
        return []
    expected = 'a list of worker ids (e.g. ["Workers-1"])'
    if not isinstance(machines, list) or not all(isinstance(m, str) for m in machines):
        return [f"Arguments.MachineIds must be {expected}, not {shown(machines)}"]
    numbers = {machine: exact_id(ids.WORKER, machine) for machine in machines}
    wanted = [number for number in numbers.values() if number is not None]
    await _in_space(conn, t.workers, ids.WORKER, wanted, space, known)
    errors, seen = [], set()
    for machine in machines:
        if numbers[machine] is None:
            errors.append(f"Arguments.MachineIds: {machine!r} is not a worker id (Workers-N)")
        elif machine in seen:
            errors.append(f"Arguments.MachineIds: {machine!r} is given more than once")
        elif machine not in known:
            errors.append(f"Arguments.MachineIds: there is no worker {machine!r} in this space")
        seen.add(machine)
    return errors


def exact_id(kind: str, text: str) -> int | None:
    """The row number of an id in exactly Octopus's form (``Workers-2``), else None.

    A task keeps its arguments as given and shows them (its description, its log),
    and the routes take ids in this form only (GET /api/workers/workers-2 is a 404),
    so ``workers-2`` or `` Workers-2`` is refused rather than kept as another id."""
    number = ids.try_parse_id(kind, text)
    return number if number is not None and ids.format_id(kind, number) == text else None


def _timeout_errors(arguments: dict[str, Any]) -> list[str]:
    errors = []
    for name in ("Timeout", "MachineTimeout"):
        value = arguments.get(name)
        number = is_seconds(value)
        if value is not None and (not number or value <= 0):
            errors.append(f"Arguments.{name} must be a number of seconds > 0, not {shown(value)}")
    return errors


def shown(value: Any) -> str:
    """A value as a message quotes it: JSON, cut at 80 characters."""
    return json.dumps(value)[:80]


async def errors_in(
    conn: AsyncConnection,
    space: int,
    arguments: dict[str, Any],
    known: dict[str, str],
    name: str | None = None,
) -> list[str]:
    """What is wrong with a task's ``Arguments``, each naming its field. Unknown
    ids are 422s, as for a worker's ``WorkerPoolIds``: the body names them, the route does
    not (a 404 would say the route /api/tasks is missing). The names of the pool and
    workers named are put into ``known``, by id."""
    own = adhoc_errors(arguments) if name == "AdHocScript" else []
    if name in ("AdHocScript", "Deploy"):
        own += project_errors(arguments)  # the isolation group its scripts run in
    return (
        own
        + await _pool_errors(conn, space, arguments, known)
        + await _machine_errors(conn, space, arguments, known)
        + _timeout_errors(arguments)
    )


async def describe(
    conn: AsyncConnection, name: str, arguments: dict[str, Any], known: dict[str, str]
) -> str:
    """A task's description, naming its pool or workers as people know them
    (``arguments`` is valid: every id exists; ``known``: names already read, by id)."""
    scope = str(arguments.get("WorkerpoolId") or arguments.get("WorkerPoolId") or "")
    machines = arguments.get("MachineIds") or []

    async def workers() -> list[str]:
        return await _names(conn, t.workers, machines, ids.WORKER, known) if machines else []

    async def pool() -> str:
        return (await _names(conn, t.worker_pools, [scope], ids.WORKER_POOL, known))[0]

    if name == "Deploy":
        return deployments.describe(arguments, await pool() if scope else "", await workers())
    if name == "AdHocScript":
        if machines:
            return f"Run a script on {', '.join(await workers())}"
        which = "every worker" if arguments.get("TargetAllWorkers") else "a worker"
        return f"Run a script on {which} of {await pool() if scope else 'the default pool'}"
    if scope:
        return f"Check health of the workers in {await pool()}"
    if machines:
        return f"Check health of {', '.join(await workers())}"
    return "Check health of every worker"


async def _names(
    conn: AsyncConnection, table: sa.Table, wanted: list[str], kind: str, known: dict[str, str]
) -> list[str]:
    """The names of the rows of ``table`` with the ids ``wanted``, in that order (from
    ``known`` when it has them all: no query)."""
    if all(one in known for one in wanted):
        return [known[one] for one in wanted]
    numbers = [ids.try_parse_id(kind, one) for one in wanted]
    rows = await fetch_all(conn, _named(table), {"rows": numbers})
    names = {row["id"]: row["name"] for row in rows}
    return [names.get(number, one) for number, one in zip(numbers, wanted, strict=True)]
