"""Ids never reused on SQLite, names unique whatever their case, and the hub nodes'
leases.

- SQLite gives a deleted row's id to the next row unless the table is
  AUTOINCREMENT; a document id (``Workers-3``) must never name two documents,
  as on PostgreSQL and in Octopus. SQLite cannot alter that, so each document
  table is rebuilt (every row kept, ids included) and its sequence starts
  after the highest id the table or the events log ever named. Nothing changes
  on PostgreSQL: its sequences never go back.
- Workers, worker pools, machine policies (per space) and API keys get a unique
  index on lower(name) instead of a unique name: "Pool A" and "pool a" are one
  name, as in Octopus. Names that already differ only in case are told apart
  first (the later one gets its id appended, and the events log says so), so
  the upgrade never fails on data it was given.
- ``hub_nodes``: one row per running hub node, its lease on its name (its
  process's host, pid and start time, and its lease time); ``server_tasks``
  records the lease token of the process executing each task, so that only that
  process writes the task's end.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from agent.hub.store.tables import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# table -> the document id's prefix (the events log names documents by it)
DOCUMENT_TABLES = {
    "spaces": "Spaces",
    "worker_pools": "WorkerPools",
    "machine_policies": "MachinePolicies",
    "workers": "Workers",
    "api_keys": "APIKeys",
    "events": "Events",
    "server_tasks": "ServerTasks",
    "task_activities": None,
    "task_log": None,
}
# table -> (its r0001 unique name constraint, the columns that scope a name, what it is)
NAMED = {
    "worker_pools": ("uq_worker_pools_space_name", ("space_id",), "Worker pool"),
    "machine_policies": ("uq_machine_policies_space_name", ("space_id",), "Machine policy"),
    "workers": ("uq_workers_space_name", ("space_id",), "Worker"),
    "api_keys": ("uq_api_keys_name", (), "API key"),
}
MAX_NAME = 200
UPGRADER = "hub upgrade"
_DOCUMENT_ID = re.compile(r"^([A-Za-z]+)-([0-9]{1,18})$")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, (constraint, _, _) in NAMED.items():
        _tell_apart_names_differing_in_case(table)
        if not sqlite:
            op.drop_constraint(constraint, table, type_="unique")
    if sqlite:
        for table in DOCUMENT_TABLES:
            _rebuild_autoincrement(table, NAMED.get(table, (None,))[0])
        _start_sequences_after_every_id_named()
    for table, (_, scope, _) in NAMED.items():
        op.create_index(
            f"ix_{table}_lower_name", table, [*scope, sa.text("lower(name)")], unique=True
        )
    op.create_table(
        "hub_nodes",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("process_started", sa.Float(), nullable=True),
        sa.Column("lease_seconds", sa.Float(), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_hub_nodes")),
    )
    op.create_index("ix_hub_nodes_lower_name", "hub_nodes", [sa.text("lower(name)")], unique=True)
    op.add_column("server_tasks", sa.Column("server_token", sa.String(length=64), nullable=True))
    if sqlite:
        _check_foreign_keys()


def _rebuild_autoincrement(table: str, unique_name: str | None) -> None:
    """The table made again as AUTOINCREMENT, every row copied with its id (Alembic's
    batch mode: a new table, INSERT ... SELECT, drop, rename). The store turns
    SQLite's foreign keys off while it migrates, so that dropping the old table
    neither cascades to nor is refused by the rows that refer to it."""
    with op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        if unique_name is not None:
            batch.drop_constraint(unique_name, type_="unique")


def _tell_apart_names_differing_in_case(table: str) -> None:
    """Rename every row whose name equals an earlier row's but for case (as Python's
    str.lower() sees it, as the API compares names: "Élan" and "éLAN" are one,
    though SQLite's lower() folds ASCII only; names one for the API are one for
    the new index too): "pool a" becomes "pool a (WorkerPools-3)", noted in the
    events log. The new name is
    one no other row of its kind in its space has, whatever its case (an
    operator may have named one "pool a (WorkerPools-3)" already, or this run
    may have given it to another): " 2", " 3" ... is added inside the
    parentheses until it is free, and every new name fits the column."""
    _, scope, what = NAMED[table]
    connection = op.get_bind()
    rows = sa.table(table, sa.column("id", sa.Integer), sa.column("name", sa.String))
    columns = [sa.column(name, sa.Integer) for name in scope]
    query = sa.select(rows.c.id, rows.c.name, *columns).order_by(rows.c.id)
    found = [
        {**row, "folded": str(row["name"]).lower()} for row in connection.execute(query).mappings()
    ]
    taken = {(*(row[name] for name in scope), row["folded"]) for row in found}
    seen: set[tuple[object, ...]] = set()
    for row in found:
        space = tuple(row[name] for name in scope)
        if (*space, row["folded"]) not in seen:
            seen.add((*space, row["folded"]))
            continue
        document = f"{DOCUMENT_TABLES[table]}-{row['id']}"
        renamed, folded = _free_name(row["name"], document, space, taken)
        taken.add((*space, folded))
        connection.execute(sa.update(rows).where(rows.c.id == row["id"]).values(name=renamed))
        _note(
            f"{what} {row['name']} renamed {renamed}: names are unique whatever their case",
            document,
        )


def _free_name(
    name: str, document: str, space: tuple[object, ...], taken: set[tuple[object, ...]]
) -> tuple[str, str]:
    """``name (document)``, or ``name (document N)`` for the first N making it free in
    ``taken`` (space, folded name); cut to fit MAX_NAME. Returns it and its folding
    by Python's str.lower(), as the API folds names."""
    for attempt in range(1, len(taken) + 2):  # at most len(taken) are taken: one is free
        suffix = f" ({document})" if attempt == 1 else f" ({document} {attempt})"
        candidate = name[: MAX_NAME - len(suffix)] + suffix
        folded = candidate.lower()
        if (*space, folded) not in taken:
            return candidate, folded
    raise AssertionError("unreachable: more names tried than are taken")


def _note(message: str, document: str) -> None:
    events = sa.table(
        "events",
        sa.column("occurred", UtcDateTime()),
        sa.column("username", sa.String),
        sa.column("category", sa.String),
        sa.column("message", sa.Text),
        sa.column("related_document_ids", sa.JSON),
    )
    op.get_bind().execute(
        sa.insert(events).values(
            occurred=datetime.now(UTC),
            username=UPGRADER,
            category="Modified",
            message=message,
            related_document_ids=[document],
        )
    )


def _start_sequences_after_every_id_named() -> None:
    """Each rebuilt table's next id comes after the highest id it holds and after
    the highest the events log names (a worker deleted before this upgrade is
    named there), so not even a document deleted before the upgrade has its id
    given again."""
    connection = op.get_bind()
    highest: dict[str, int] = {}
    for (related,) in connection.execute(
        sa.select(sa.column("related_document_ids", sa.JSON)).select_from(sa.table("events"))
    ):
        for document in related or []:
            match = _DOCUMENT_ID.match(str(document))
            if match:
                prefix, number = match.group(1), int(match.group(2))
                highest[prefix] = max(highest.get(prefix, 0), number)
    for table, prefix in DOCUMENT_TABLES.items():
        ids = sa.table(table, sa.column("id", sa.Integer))
        held = int(
            connection.execute(sa.select(sa.func.coalesce(sa.func.max(ids.c.id), 0))).scalar_one()
        )
        start = max(held, highest.get(prefix or "", 0))
        connection.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
        connection.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :s)"),
            {"t": table, "s": start},
        )


def _check_foreign_keys() -> None:
    """The rebuilt tables' rows still refer to rows that exist (the foreign keys were
    off while they were copied): an upgrade that broke one fails, and rolls back."""
    broken = op.get_bind().execute(sa.text("PRAGMA foreign_key_check")).fetchall()
    if broken:
        raise RuntimeError(f"the upgrade broke foreign keys: {broken[:5]}")


def downgrade() -> None:
    with op.batch_alter_table("server_tasks") as batch:
        batch.drop_column("server_token")
    op.drop_table("hub_nodes")
    for table, (constraint, scope, _) in NAMED.items():
        op.drop_index(f"ix_{table}_lower_name", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.create_unique_constraint(constraint, [*scope, "name"])
    # SQLite's tables stay AUTOINCREMENT: r0001's code works on them unchanged
