"""Names are unique whatever their case, as Octopus's are: workers (per space), worker
pools, machine policies and API keys; "Pool A" and "pool a" cannot both exist, in
the API (409 naming the one that exists) and in the database (an index on
lower(name), so requests at the same time cannot both win). On SQLite and on a
real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from agent.hub.keys import Permission
from agent.hub.store import open_store
from agent.hub.store import tables as t
from agent.hub.store.apikeys import DuplicateKeyName, create_api_key
from agent.hub.store.records import initialise
from tests.helpers.hub import RunningHub

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
THUMBPRINTS = iter(f"{n:040X}" for n in range(1, 10_000))


def _body(collection: str, name: str) -> dict[str, Any]:
    if collection == "workers":
        return {
            "Name": name,
            "Thumbprint": next(THUMBPRINTS),
            "Endpoint": {"CommunicationStyle": "TentaclePassive", "Uri": "https://127.0.0.1:1/"},
            "WorkerPoolIds": ["WorkerPools-1"],
        }
    return {"Name": name}


COLLECTIONS = ["workerpools", "machinepolicies", "workers"]
WHAT = {"workerpools": "worker pool", "machinepolicies": "machine policy", "workers": "worker"}


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_a_name_differing_only_in_case_is_409_naming_the_one_that_exists(
    hub: RunningHub, collection: str
) -> None:
    status, first = await hub.api.request(
        "POST", f"/api/{collection}", json=_body(collection, "Pool A")
    )
    assert status == 201, first
    status, refused = await hub.api.request(
        "POST", f"/api/{collection}", json=_body(collection, "pool a")
    )
    assert status == 409, refused
    assert refused["ErrorMessage"] == (
        f"a {WHAT[collection]} named 'Pool A' exists already ({first['Id']})"
    )
    status, other = await hub.api.request("POST", f"/api/{collection}", json=_body(collection, "B"))
    assert status == 201, other
    renamed = {**other, "Name": "POOL a"}
    status, refused = await hub.api.request("PUT", f"/api/{collection}/{other['Id']}", json=renamed)
    assert status == 409, refused
    assert f"named 'Pool A' exists already ({first['Id']})" in refused["ErrorMessage"]
    # the same record changing only the case of its own name is a rename like any other
    status, recased = await hub.api.request(
        "PUT", f"/api/{collection}/{first['Id']}", json={**first, "Name": "POOL A"}
    )
    assert status == 200, recased
    assert recased["Name"] == "POOL A"
    names = [item["Name"] for item in await hub.api.get(f"/api/{collection}/all")]
    assert sorted(n for n in names if n.lower() in ("pool a", "b")) == ["B", "POOL A"]


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_requests_at_the_same_time_with_one_name_in_several_cases_make_one(
    hub: RunningHub, collection: str
) -> None:
    cases = ["Race", "race", "RACE", "rAcE", "RaCe", "racE"]
    answers = await asyncio.gather(
        *(hub.api.request("POST", f"/api/{collection}", json=_body(collection, c)) for c in cases)
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] + [409] * (len(cases) - 1), answers
    [winner] = [body for status, body in answers if status == 201]
    for status, body in answers:
        if status == 409:
            assert body["ErrorMessage"] == (
                f"a {WHAT[collection]} named {winner['Name']!r} exists already ({winner['Id']})"
            )


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_letters_beyond_ascii_differ_in_case_on_both_databases(
    hub: RunningHub, collection: str
) -> None:
    # SQLite's own lower() folds ASCII only: "Élan" and "éLAN" were two names there
    status, first = await hub.api.request(
        "POST", f"/api/{collection}", json=_body(collection, "Élan Ü")
    )
    assert status == 201, first
    status, refused = await hub.api.request(
        "POST", f"/api/{collection}", json=_body(collection, "éLAN ü")
    )
    assert status == 409, refused
    assert f"named 'Élan Ü' exists already ({first['Id']})" in refused["ErrorMessage"]


async def test_an_api_key_name_differing_only_in_case_is_refused(empty_database_url: str) -> None:
    store = await open_store(empty_database_url)
    try:
        await store.migrate()
        async with store.transaction() as conn:
            await create_api_key(conn, "Deployer", Permission.READ_ONLY, NOW)
        with pytest.raises(DuplicateKeyName, match="named 'Deployer' exists already"):
            async with store.transaction() as conn:
                await create_api_key(conn, "deployer", Permission.READ_ONLY, NOW)
        async with store.transaction() as conn:
            await create_api_key(conn, "Ärger", Permission.READ_ONLY, NOW)
        with pytest.raises(DuplicateKeyName, match="named 'Ärger' exists already"):
            async with store.transaction() as conn:
                await create_api_key(conn, "ärger", Permission.READ_ONLY, NOW)
    finally:
        await store.close()


@pytest.mark.parametrize("table", ["worker_pools", "machine_policies", "workers", "api_keys"])
async def test_the_database_refuses_a_name_differing_only_in_case(
    empty_database_url: str, table: str
) -> None:
    """The index itself, without the API's check: what stops two requests at once."""
    store = await open_store(empty_database_url)
    stamp = {"modified_on": NOW, "modified_by": "test"}
    rows: dict[str, Any] = {
        "worker_pools": {"space_id": 1, "description": "", "is_default": False,
                         "sort_order": 5, "pool_type": "StaticWorkerPool", **stamp},
        "machine_policies": {"space_id": 1, "description": "", "is_default": False,
                             "settings": {}, **stamp},
        "workers": {"space_id": 1, "communication_style": "TentaclePassive", "uri": "https://h:1/",
                    "is_disabled": False, "machine_policy_id": 1, "health_status": "Unknown",
                    "status_summary": "", "facts": {}, "connection_log": [], **stamp},
        "api_keys": {"permission": "ReadOnly", "created": NOW},
    }  # fmt: skip
    unique = {"workers": "thumbprint", "api_keys": "key_hash"}
    try:
        await store.migrate()
        async with store.transaction() as conn:
            await initialise(conn, NOW)
        target = t.metadata.tables[table]
        for number, name in enumerate(("Same Name", "same name")):
            values = {**rows[table], "name": name}
            if table in unique:
                values[unique[table]] = f"{number:040X}"
            if number == 0:
                async with store.transaction() as conn:
                    await conn.execute(sa.insert(target).values(**values))
            else:
                with pytest.raises(sa.exc.IntegrityError):
                    async with store.transaction() as conn:
                        await conn.execute(sa.insert(target).values(**values))
    finally:
        await store.close()
