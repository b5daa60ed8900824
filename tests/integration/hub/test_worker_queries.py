"""The workers' queries (store.worker_queries) answer what the API's filters say in
Python over every worker (rules.workers.worker_filter, api.collections), page by
page, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from multidict import MultiDict

from agent.hub.api.collections import query_name_matches
from agent.hub.api.workers import worker_resource
from agent.hub.rules.workers import worker_filter, worker_filters
from agent.hub.store import Store, open_store
from agent.hub.store import tables as t
from agent.hub.store.records import default_space_id, fetch_all, initialise, insert
from agent.hub.store.worker_queries import WorkerQuery, count, worker_rows

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ASCII_NAMES = ["alpha", "Alpha-2", "BETA", "beta_1", "beta%2", "gamma", "web-01", "Web-02",
               "web_03", "x", "X-ray", "100%", "a_b", "a.b", "zeta"]  # fmt: skip
# Python lower-cases these beyond ASCII; SQLite through the hub's function, PostgreSQL
# by its locale (not compared there)
WIDER_NAMES = ["Ärger", "ärger-2", "STRASSE", "straße", "İstanbul", "\u212aelvin"]
HEALTH = ["Healthy", "HasWarnings", "Unhealthy", "Unavailable", "Unknown"]
STYLES = ["TentaclePassive", "TentacleActive", "Ssh"]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await open_store(database_url)
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


async def populate(store: Store, names: list[str]) -> int:
    """Workers of every kind, in 1 to 3 pools, under two policies; returns the space."""
    async with store.transaction() as conn:
        await initialise(conn, NOW)
        space = await default_space_id(conn)
        stamp = {"modified_on": NOW, "modified_by": "test"}
        pools = [
            row["id"] for row in await fetch_all(conn, t.worker_pools.select())
        ] + [
            await insert(conn, t.worker_pools, {"space_id": space, "name": f"P{n}", **stamp})
            for n in (2, 3)
        ]  # fmt: skip
        [policy] = [row["id"] for row in await fetch_all(conn, t.machine_policies.select())]
        other = await insert(
            conn,
            t.machine_policies,
            {"space_id": space, "name": "Other", "settings": {}, **stamp},
        )
        for number, name in enumerate(names):
            worker = await insert(
                conn,
                t.workers,
                {
                    "space_id": space,
                    "name": name,
                    "thumbprint": f"{number:040X}",
                    "communication_style": STYLES[number % 3],
                    "uri": "https://127.0.0.1:10933/",
                    "is_disabled": number % 4 == 1,
                    "machine_policy_id": other if number % 5 == 2 else policy,
                    "health_status": HEALTH[number % 5],
                    "status_summary": "",
                    "facts": {},
                    "connection_log": [],
                    **stamp,
                },
            )
            for pool in pools[: 1 + number % 3]:
                await conn.execute(
                    t.worker_pool_members.insert().values(worker_id=worker, pool_id=pool)
                )
    return space


def queries(names: list[str]) -> list[dict[str, str]]:
    """Query strings to compare: each filter alone, some together, and odd values."""
    single: list[dict[str, str]] = [
        {},
        {"ids": "Workers-3,Workers-5, Workers-99,workers-4,Workers-05,Workers-0"},
        {"ids": ""},
        {"ids": "Workers-99999999999999999"},
        {"workerpoolIds": "WorkerPools-2"},
        {"workerpoolIds": "workerpools-3, WORKERPOOLS-1"},
        {"workerpoolIds": ","},
        {"workerPoolIds": "WorkerPools-2"},
        {"workerpoolIds": "WorkerPools-99999999999999"},
        {"healthStatuses": "healthy,UNKNOWN"},
        {"healthStatuses": ","},
        {"commStyles": "tentacleactive,Ssh"},
        {"thumbprint": f" {3:040x} "},
        {"thumbprint": "nothing\x00"},
        {"isDisabled": "TRUE"},
        {"isDisabled": " false "},
        {"name": ""},
        {"partialName": ""},
        {"name": "nul\x00"},
        {"partialName": "%"},
        {"partialName": "_"},
        {"partialName": "a.b"},
        {"partialName": "\udcff"},
    ]
    for name in names:
        single += [{"name": name.upper()}, {"name": name.lower()}, {"partialName": name[1:3]}]
    combined = [
        {"workerpoolIds": "WorkerPools-2", "healthStatuses": "Healthy,Unknown,HasWarnings"},
        {"commStyles": "TentaclePassive", "isDisabled": "false", "partialName": "A"},
        {"ids": "Workers-1,Workers-2,Workers-7", "workerpoolIds": "WorkerPools-1"},
    ]
    return single + combined


def reference(every: list[dict[str, Any]], query: MultiDict[str]) -> list[str]:
    """What the API answered before its filters reached the database: Python over all."""
    values = query.getall("ids", [])
    wanted = {p.strip() for v in values for p in v.split(",") if p.strip()} if values else None
    keep = worker_filter(query)
    return [
        w["Id"]
        for w in every
        if (wanted is None or w["Id"] in wanted)
        and query_name_matches(query, w["Name"])
        and keep(w)
    ]


def asked(space: int, query: MultiDict[str], **scope: Any) -> WorkerQuery:
    values = query.getall("ids", [])
    wanted = {p.strip() for v in values for p in v.split(",") if p.strip()} if values else None
    return WorkerQuery(
        space_id=space,
        ids=None if wanted is None else frozenset(wanted),
        name=query.get("name"),
        partial_name=query.get("partialName"),
        filters=worker_filters(query),
        **scope,
    )


async def test_the_queries_answer_what_the_filters_say_in_python(
    store: Store, database_url: str
) -> None:
    names = ASCII_NAMES + (WIDER_NAMES if database_url.startswith("sqlite") else [])
    space = await populate(store, names)
    async with store.connect() as conn:
        every = [
            worker_resource(row, pools, 0)
            for row, pools in await worker_rows(conn, WorkerQuery(space))
        ]
        assert sorted(w["Name"] for w in every) == sorted(names)
        for given in queries(names):
            query = MultiDict(given)
            expected = reference(every, query)
            chosen = asked(space, query)
            found = [row["id"] for row, _ in await worker_rows(conn, chosen)]
            assert [f"Workers-{n}" for n in found] == expected, given
            assert await count(conn, chosen) == len(expected), given
            for skip, take in itertools.product((0, 1, 4, 40), (0, 1, 3, 2**31 - 1)):
                page = [row["id"] for row, _ in await worker_rows(conn, chosen, skip, take)]
                assert [f"Workers-{n}" for n in page] == expected[skip : skip + take], given
        # a pool's members and a policy's workers, as their routes ask
        for pool in (1, 2, 3):
            query = MultiDict({"healthStatuses": "Healthy,Unknown"})
            members = [w for w in every if f"WorkerPools-{pool}" in w["WorkerPoolIds"]]
            found = [
                row["id"] for row, _ in await worker_rows(conn, asked(space, query, pool_id=pool))
            ]
            assert [f"Workers-{n}" for n in found] == reference(members, query)
        for policy in (1, 2):
            query = MultiDict({"partialName": "a", "healthStatuses": "Healthy"})
            under = [w for w in every if w["MachinePolicyId"] == f"MachinePolicies-{policy}"]
            chosen = asked(space, query, policy_id=policy)
            found = [row["id"] for row, _ in await worker_rows(conn, chosen)]
            assert [f"Workers-{n}" for n in found] == reference(under, query)
        assert await worker_rows(conn, WorkerQuery(space), 2**63, 1) == []
