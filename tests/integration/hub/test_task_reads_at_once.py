"""Many callers looking at one task at once (followers of `tentacle hub run`): every
look is answered, none waits for a pooled connection held by another look."""

from __future__ import annotations

import asyncio

from tests.helpers.hub import RunningHub

CALLERS = 60  # far more than the database pool's 15 connections


async def test_many_looks_at_a_task_at_once_are_all_answered(hub: RunningHub) -> None:
    """A route that held a pooled connection while it asked for a second one (the
    space's, inside _task_or_404) deadlocked the pool once more than 15 came at once:
    each waited 30 s and answered 500."""
    status, task = await hub.api.request("POST", "/api/tasks", json={"Name": "Health"})
    assert status == 201, task
    base = f"/api/tasks/{task['Id']}"
    paths = [base, f"{base}/details", f"{base}/state", f"{base}/raw"]
    looks = [status_of(hub, "GET", paths[n % len(paths)]) for n in range(CALLERS)]
    looks += [status_of(hub, "POST", f"{base}/cancel") for _ in range(CALLERS // 4)]
    answers = await asyncio.gather(*looks)  # a deadlocked pool answers 500 after 30 s
    assert {status for status, _ in answers} == {200}, [a for a in answers if a[0] != 200][:2]


async def status_of(hub: RunningHub, method: str, path: str) -> tuple[int, str]:
    """The status and the body as text (/raw is text, the others JSON)."""
    headers = {"X-Octopus-ApiKey": str(hub.api.key)}
    async with hub.api.session.request(method, hub.api.url + path, headers=headers) as answer:
        return answer.status, (await answer.text())[:300]
