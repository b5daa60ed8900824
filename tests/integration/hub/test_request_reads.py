"""What a request costs the store before its own work: a client's key is looked up
once for its requests in a row, and the default space is not read at all (the node
read it as it started); a key unknown is looked up each time, so one made while the
hub runs works at once."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa

from agent.hub.keys import Permission, key_hash, new_api_key
from agent.hub.store import tables as t
from tests.helpers.hub import RunningHub, statements_run
from tests.integration.hub.test_task_reads_at_once import status_of

KEY_LOOKUP = re.compile(r"\bFROM api_keys\b", re.IGNORECASE)
SPACE_LOOKUP = re.compile(r"\bFROM spaces\b", re.IGNORECASE)


async def test_requests_in_a_row_look_their_key_up_once(hub: RunningHub) -> None:
    """Five requests of one client: before, a lookup of its key and one of the default
    space for each (two read transactions before each request's own)."""
    with statements_run(hub) as seen:
        for _ in range(5):
            await hub.api.get("/api/tasks", params={"take": "1"})
    assert len([s for s in seen if KEY_LOOKUP.search(s)]) <= 1, seen
    assert [s for s in seen if SPACE_LOOKUP.search(s)] == [], seen


async def test_a_key_unknown_then_stored_works_at_once(hub: RunningHub) -> None:
    """A refused key is not remembered as refused: stored a moment later (as
    `tentacle hub create-api-key` does beside a running hub), it is let in."""
    key = new_api_key()
    headers = {"X-Octopus-ApiKey": key}
    async with hub.api.session.get(hub.api.url + "/api/tasks", headers=headers) as answer:
        assert answer.status == 401, await answer.text()
    assert hub.server.store is not None
    async with hub.server.store.transaction() as conn:
        await conn.execute(
            sa.insert(t.api_keys).values(
                name="late", permission=Permission.READ_ONLY.value, key_hash=key_hash(key),
                created=datetime.now(UTC),
            )
        )  # fmt: skip
    async with hub.api.session.get(hub.api.url + "/api/tasks", headers=headers) as answer:
        assert answer.status == 200, await answer.text()
    # remembered as what it is: a read-only key may not change anything
    async with hub.api.session.post(
        hub.api.url + "/api/tasks", headers=headers, json={"Name": "Health"}
    ) as answer:
        assert answer.status == 403, await answer.text()


async def test_a_wrong_key_is_refused_every_time(hub: RunningHub) -> None:
    """A right key remembered lets no other in (looked up by the whole key's hash), and
    a wrong one is looked up, and refused, every time."""
    right = str(hub.api.key)
    assert (await status_of(hub, "GET", "/api/tasks"))[0] == 200
    wrong = right[:-1] + ("A" if right[-1] != "A" else "B")
    with statements_run(hub) as seen:
        for _ in range(2):
            headers = {"X-Octopus-ApiKey": wrong}
            async with hub.api.session.get(hub.api.url + "/api/tasks", headers=headers) as answer:
                assert answer.status == 401, await answer.text()
    # looked up each time: a refusal is not remembered
    assert len([s for s in seen if KEY_LOOKUP.search(s)]) == 2, seen


WORKERS_LOOKUP = re.compile(r"\bFROM workers\b", re.IGNORECASE)


async def test_a_tasks_workers_are_checked_in_one_query(hub: RunningHub) -> None:
    """MachineIds of three workers, none of them there: each named in the 422, all
    looked up at once (before: a query for each, and again for the description)."""
    machines = ["Workers-901", "Workers-902", "Workers-903"]
    with statements_run(hub) as seen:
        status, body = await hub.api.request(
            "POST", "/api/tasks", json={"Name": "Health", "Arguments": {"MachineIds": machines}}
        )
    assert status == 422, body
    for machine in machines:
        assert f"there is no worker {machine!r} in this space" in str(body), body
    assert len([s for s in seen if WORKERS_LOOKUP.search(s)]) == 1, seen


async def test_more_machine_ids_than_a_query_takes_are_still_a_422(hub: RunningHub) -> None:
    """33,000 MachineIds, more than asyncpg's 32,767 arguments to one query: checked in
    queries of IDS_PER_QUERY (one IN list for all of them answered 503 on PostgreSQL;
    SQLite's limit is 32,766 or, as Debian builds it, 250,000), and in time linear in
    their number (a duplicate check against the ids before each was not)."""
    machines = [f"Workers-{number}" for number in range(1, 33_001)]
    status, body = await hub.api.request(
        "POST", "/api/tasks", json={"Name": "Health", "Arguments": {"MachineIds": machines}}
    )
    assert status == 422, str(body)[:500]
    text = str(body)
    for machine in (machines[0], machines[-1]):
        assert f"there is no worker {machine!r} in this space" in text, text[:500]
