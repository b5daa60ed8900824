"""The ``/all`` form of a collection filters by ``name`` and ``partialName`` as the
paged form does: register-worker looks a name up so, and a second worker with
another name was refused as "exists already" when ``/all`` ignored the filter."""

from __future__ import annotations

import pytest

from tests.helpers.hub import RunningHub
from tests.integration.hub.test_workers_api import add, listening


@pytest.mark.parametrize("prefix", ["/api", "/api/Spaces-1"])
async def test_workers_all_keeps_only_the_named_worker(hub: RunningHub, prefix: str) -> None:
    await add(hub, listening("demo-listening", 10933))
    await add(hub, listening("demo-polling", 10934))
    named = await hub.api.get(f"{prefix}/workers/all", params={"name": "demo-polling"})
    assert [w["Name"] for w in named] == ["demo-polling"]
    assert await hub.api.get(f"{prefix}/workers/all", params={"name": "nobody"}) == []
    partial = await hub.api.get(f"{prefix}/workers/all", params={"partialName": "LISTEN"})
    assert [w["Name"] for w in partial] == ["demo-listening"]


async def test_pools_all_keeps_only_the_named_pool(hub: RunningHub) -> None:
    pools = await hub.api.get("/api/workerpools/all", params={"name": "no such pool"})
    assert pools == []
