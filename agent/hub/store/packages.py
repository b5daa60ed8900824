"""The packages table: which package id and version name which content (a hash), and
the artifacts table: files a task's steps reported, fetched into the hub.

Ids and versions are one package whatever their case ("Acme.Web" 1.0.0 and
"acme.web" 1.0.0), compared as Python's ``str.lower``; the unique index on
their lower() backs that against two uploads at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent.hub.store import tables as t
from agent.hub.store.records import Row, fetch_all, fetch_one, insert
from agent.hub.store.text import LowerText


def _same(package_id: str, version: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        LowerText(t.packages.c.package_id) == package_id.lower(),
        LowerText(t.packages.c.version) == version.lower(),
    )


async def find(conn: AsyncConnection, space: int, package_id: str, version: str) -> Row | None:
    query = sa.select(t.packages).where(t.packages.c.space_id == space, _same(package_id, version))
    return await fetch_one(conn, query)


async def add(conn: AsyncConnection, values: dict[str, Any]) -> int:
    """A new package row (``space_id``, ``package_id``, ``version``, ``file_extension``,
    ``sha256``, ``size``, ``published``); IntegrityError if it exists."""
    return await insert(conn, t.packages, values)


async def replace(conn: AsyncConnection, number: int, values: dict[str, Any]) -> None:
    await conn.execute(sa.update(t.packages).where(t.packages.c.id == number).values(**values))


async def in_use(conn: AsyncConnection, sha256: str) -> bool:
    """Whether any package (of any space) still names this content."""
    query = sa.select(t.packages.c.id).where(t.packages.c.sha256 == sha256).limit(1)
    return await fetch_one(conn, query) is not None


async def listed(conn: AsyncConnection, space: int, filter_text: str | None = None) -> list[Row]:
    """The space's packages, newest first; ``filter_text``: part of the id, any case."""
    query = sa.select(t.packages).where(t.packages.c.space_id == space)
    rows = await fetch_all(conn, query.order_by(t.packages.c.id.desc()))
    if filter_text:
        wanted = filter_text.lower()
        rows = [row for row in rows if wanted in row["package_id"].lower()]
    return rows


async def add_artifact(conn: AsyncConnection, values: dict[str, Any]) -> int:
    """A new artifact row (``space_id``, ``task_id``, ``step_id``, ``filename``,
    ``sha256``, ``size``, ``created``); returns its id."""
    return await insert(conn, t.artifacts, values)


async def artifacts_of(conn: AsyncConnection, space: int, task_id: int | None) -> list[Row]:
    query = sa.select(t.artifacts).where(t.artifacts.c.space_id == space)
    if task_id is not None:
        query = query.where(t.artifacts.c.task_id == task_id)
    return await fetch_all(conn, query.order_by(t.artifacts.c.id))


async def artifact(conn: AsyncConnection, number: int) -> Row | None:
    return await fetch_one(conn, sa.select(t.artifacts).where(t.artifacts.c.id == number))


def package_values(
    space: int, package_id: str, version: str, extension: str, sha256: str, size: int, now: datetime
) -> dict[str, Any]:
    return {
        "space_id": space,
        "package_id": package_id,
        "version": version,
        "file_extension": extension,
        "sha256": sha256,
        "size": size,
        "published": now,
    }
