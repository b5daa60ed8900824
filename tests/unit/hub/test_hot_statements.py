"""The statements every task runs bind their fixed lists (states, names) as plain
values: an expanding parameter ("post-compile") is rendered into the SQL again at each
run, which cost a hot statement about twice its run (records.among). Only the lists
that vary from run to run (ids) stay expanding."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from agent.hub import adhoc
from agent.hub.rules.dispatch import OUTSIDE_CAP
from agent.hub.store import steps as store_steps
from agent.hub.store import tables as t
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import among

EXPANDING = re.compile(r"POSTCOMPILE_(\w+)")

HOT_CAP, NONE = OUTSIDE_CAP, frozenset[str]()
HOT = {
    "ensure_owned": (store_tasks._ENSURE_OWNED, set()),
    "finish (owned)": (store_tasks._FINISH_OWNED, set()),
    "finish (states)": (store_tasks._finishing(store_tasks.RUNNING), set()),
    "the queue's look": (store_tasks._oldest_of(None, None, HOT_CAP, 1), set()),
    "the queue's look, the cap full": (store_tasks._oldest_of(HOT_CAP, None, HOT_CAP, 2), set()),
    "the queue's look, excluding": (store_tasks._oldest_of(None, HOT_CAP, NONE, 1), set()),
    "busy steps": (store_steps._BUSY, {"workers"}),
    "the cancels asked": (store_tasks._CANCELS, {"tasks"}),
    "a pool's members": (adhoc._MEMBERS, set()),
}  # fmt: skip


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
@pytest.mark.parametrize("name", list(HOT))
def test_only_the_lists_that_vary_are_expanding(name: str, dialect: sa.Dialect) -> None:
    statement, varying = HOT[name]
    sql = str(statement.compile(dialect=dialect))
    assert set(EXPANDING.findall(sql)) == varying, sql


def test_among_binds_one_value_each() -> None:
    condition = among(t.server_tasks.c.state, ("Executing", "Cancelling"))
    compiled = condition.compile(dialect=sqlite.dialect())
    assert str(compiled) == "server_tasks.state IN (?, ?)"
    assert sorted(compiled.params.values()) == ["Cancelling", "Executing"]


def test_among_matches_its_values_and_an_empty_list_nothing() -> None:
    """Run on SQLite: the rows whose value is listed, and none for an empty list (as
    ``column.in_([])``, whose empty IN SQLAlchemy renders as false)."""
    table = sa.Table("rows", sa.MetaData(), sa.Column("state", sa.String))
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), [{"state": s} for s in ("Queued", "Executing", "Failed")])

        def matched(values: tuple[str, ...]) -> list[str]:
            query = sa.select(table.c.state).where(among(table.c.state, values))
            return sorted(conn.execute(query).scalars())

        assert matched(("Executing", "Cancelling")) == ["Executing"]
        assert matched(("Queued", "Failed")) == ["Failed", "Queued"]
        assert matched(()) == []
        negated = sa.select(table.c.state).where(sa.not_(among(table.c.state, ("Failed",))))
        assert sorted(conn.execute(negated).scalars()) == ["Executing", "Queued"]
    engine.dispose()


def test_choosing_a_worker_decodes_none_of_its_documents() -> None:
    """A lease reads each pool member's selection facts and what reaching it needs,
    not its certificate, facts or last check's log (JSON decoded for every member at
    every lease): only the facts' Draining flag, extracted by the database."""
    read = set(adhoc._MEMBERS.selected_columns.keys())
    assert not read & {"certificate", "facts", "connection_log", "status_summary"}, read
    assert {"draining", "uri", "thumbprint", "communication_style", "ssh_host"} <= read
