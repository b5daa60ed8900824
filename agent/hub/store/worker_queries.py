"""Workers as the API lists them, and as the polling port trusts them: the queries,
built by plain functions, so that a page costs what it shows, not what the hub holds.

``/api/workers`` and its relatives filter (``ids``, ``name``, ``partialName``,
``workerpoolIds``, ``healthStatuses``, ``commStyles``, ``thumbprint``,
``isDisabled``), count and page in SQL, and fetch pool memberships only for the
workers of the page; what they answer is what ``rules.workers.worker_filter`` and
``api.collections`` say in Python over every worker (the tests hold them to it).
Names match case-insensitively as Python's ``str.lower`` has it: on SQLite
through a function of the hub's own (``engine.LOWER``); on PostgreSQL its
``lower()``, the same for every name but the few that Python lower-cases by
context (a final sigma).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from agent.hub.rules.workers import WorkerFilters
from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all
from agent.hub.store.text import LowerText, storable

LARGEST_ID = 2**31 - 1  # INTEGER keys: no row has a larger id
LARGEST_OFFSET = 2**62  # beyond what LIMIT and OFFSET take on either database
CHUNK = 500  # ids in one IN (...) at most: both databases bound the parameters of a query
_WORKER_ID = re.compile(r"^Workers-(0|[1-9][0-9]*)$")

W = t.workers.c
M = t.worker_pool_members.c


@dataclass(frozen=True)
class WorkerQuery:
    """Which workers of a space: every filter None (or empty ``filters``) keeps all.

    ``ids`` are ``Workers-N`` texts, matched exactly; ``name`` matches the whole
    name and ``partial_name`` a part of it, both whatever the case; ``pool_id`` and
    ``policy_id`` keep the members of one pool, the workers under one policy."""

    space_id: int
    ids: frozenset[str] | None = None
    name: str | None = None
    partial_name: str | None = None
    filters: WorkerFilters = field(default_factory=WorkerFilters)
    pool_id: int | None = None
    policy_id: int | None = None


def _numbers(texts: Iterable[str], pattern: re.Pattern[str]) -> list[int]:
    """The row numbers of the ids among ``texts`` written as the API writes them."""
    found = (pattern.match(text) for text in texts)
    return sorted({int(m.group(1)) for m in found if m and int(m.group(1)) <= LARGEST_ID})


def _in_pools(numbers: list[int]) -> ColumnElement[bool]:
    return W.id.in_(sa.select(M.worker_id).where(M.pool_id.in_(numbers)))


def conditions(query: WorkerQuery) -> list[ColumnElement[bool]]:
    """The WHERE clauses of ``query``, one a filter given."""
    where: list[ColumnElement[bool]] = [W.space_id == query.space_id]
    if query.ids is not None:
        where.append(W.id.in_(_numbers(query.ids, _WORKER_ID)))
    for text, exact in ((query.name, True), (query.partial_name, False)):
        if text is None:
            continue
        if not storable(text):
            where.append(sa.false())
        elif exact:
            where.append(LowerText(W.name) == text.lower())
        else:
            where.append(LowerText(W.name).contains(text.lower(), autoescape=True))
    given = query.filters
    if given.pools is not None:
        where.append(_in_pools(sorted(n for n in given.pools if n <= LARGEST_ID)))
    if given.health is not None:  # the accepted spellings, as the store keeps them
        where.append(W.health_status.in_(sorted(given.health)))
    if given.styles is not None:
        where.append(W.communication_style.in_(sorted(given.styles)))
    if given.thumbprint is not None:
        # the API stores thumbprints upper-case, as the filter is made
        askable = storable(given.thumbprint)
        where.append(W.thumbprint == given.thumbprint if askable else sa.false())
    if given.disabled is not None:
        where.append(W.is_disabled == given.disabled)
    if query.pool_id is not None:
        where.append(_in_pools([query.pool_id]))
    if query.policy_id is not None:
        where.append(W.machine_policy_id == query.policy_id)
    return where


def rows_select(query: WorkerQuery, skip: int = 0, take: int | None = None) -> sa.Select[Any]:
    """The workers of ``query`` by name (as the API lists them), ``take`` from ``skip``."""
    select = sa.select(t.workers).where(*conditions(query)).order_by(W.name, W.id)
    if skip:
        select = select.offset(min(skip, LARGEST_OFFSET))
    if take is not None:
        select = select.limit(min(take, LARGEST_OFFSET))
    return select


def count_select(query: WorkerQuery) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(t.workers).where(*conditions(query))


def chunks(numbers: Sequence[int]) -> Iterable[Sequence[int]]:
    return (numbers[start : start + CHUNK] for start in range(0, len(numbers), CHUNK))


async def memberships(conn: AsyncConnection, worker_ids: Sequence[int]) -> dict[int, list[int]]:
    """The pools of each of ``worker_ids`` (those in none are left out)."""
    members: dict[int, list[int]] = {}
    for part in chunks(worker_ids):
        rows = await fetch_all(conn, sa.select(M.worker_id, M.pool_id).where(M.worker_id.in_(part)))
        for row in rows:
            members.setdefault(row["worker_id"], []).append(row["pool_id"])
    return members


async def worker_rows(
    conn: AsyncConnection, query: WorkerQuery, skip: int = 0, take: int | None = None
) -> list[tuple[Row, list[int]]]:
    """The rows of ``query`` (``take`` from ``skip``), each with its pools."""
    if skip >= LARGEST_OFFSET:
        return []
    rows = await fetch_all(conn, rows_select(query, skip, take))
    members = await memberships(conn, [row["id"] for row in rows])
    return [(row, members.get(row["id"], [])) for row in rows]


async def count(conn: AsyncConnection, query: WorkerQuery) -> int:
    return int((await conn.execute(count_select(query))).scalar_one())


# The polling port's trust ------------------------------------------------------------


def trusted_select(worker_ids: Sequence[int] | None = None) -> sa.Select[Any]:
    """(id, thumbprint) of the workers the polling port trusts: enabled polling workers
    whose certificate the hub holds (the API keeps a thumbprint its certificate's);
    of ``worker_ids`` only, if given."""
    select = sa.select(W.id, W.thumbprint).where(
        W.communication_style == "TentacleActive",
        W.is_disabled.is_(False),
        W.certificate.is_not(None),
    )
    return select if worker_ids is None else select.where(W.id.in_(worker_ids))


async def trusted_workers(
    conn: AsyncConnection, worker_ids: Sequence[int] | None = None
) -> dict[int, str]:
    """Thumbprint by worker id, of the workers :func:`trusted_select` says."""
    if worker_ids is None:
        return {row["id"]: row["thumbprint"] for row in await fetch_all(conn, trusted_select())}
    found: dict[int, str] = {}
    for part in chunks(worker_ids):
        for row in await fetch_all(conn, trusted_select(part)):
            found[row["id"]] = row["thumbprint"]
    return found


async def certificates(conn: AsyncConnection, worker_ids: Sequence[int]) -> dict[int, str]:
    """The certificate (PEM) of each of ``worker_ids`` that has one."""
    found: dict[int, str] = {}
    for part in chunks(worker_ids):
        select = sa.select(W.id, W.certificate).where(W.id.in_(part), W.certificate.is_not(None))
        for row in await fetch_all(conn, select):
            found[row["id"]] = row["certificate"]
    return found
