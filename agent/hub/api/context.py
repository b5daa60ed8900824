"""What every handler may use: the store, the hub's facts and a clock, kept on the app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from agent.client import ChannelSettings
from agent.hub.api.callers import RecentCallers
from agent.hub.api.stopping import Serving
from agent.hub.changes import TaskChanges
from agent.hub.store import Store
from agent.hub.store.apikeys import Caller


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class HubContext:
    store: Store
    version: str
    installation_id: str
    thumbprint: str
    certificate_pem: str = ""  # the hub's identity: what workers trust
    polling_port: int = 0  # where this node accepts polling workers (0: nowhere)
    node_name: str = "hub"
    now: Callable[[], datetime] = utc_now
    # called after a change the live parts must see at once (trust, schedules)
    on_change: Callable[[str, Sequence[int]], Awaitable[None]] | None = None
    # how this node dials agents (its identity), for /api/workers/discover
    channel: ChannelSettings | None = None
    builtin_worker: bool = False  # whether this node has its built-in worker on
    # news of this process's tasks' changes (the runner's), for ?wait= requests
    task_changes: TaskChanges = field(default_factory=TaskChanges)
    # the space of routes without one (0: read it from the store each time); no request
    # changes which space is the default, so the node reads it once, as it starts
    default_space: int = 0
    callers: RecentCallers = field(default_factory=RecentCallers)  # API keys found lately
    serving: Serving = field(default_factory=Serving)  # stopped first as the node stops
    extras: dict[str, Any] = field(default_factory=dict)

    async def changed(self, what: str, ids: Sequence[int] = ()) -> None:
        """Tell the live parts, once the change is committed: ``"workers"`` with the
        ids of the workers changed or deleted (the polling port's trust follows them,
        the scheduler looks whether one is due for a check), ``"workers-added"`` with
        the ids of new workers (their first check is queued already), ``"policies"``,
        ``"tasks"`` (queued or cancelled), ``"capped-task-queued"`` (a task that counts
        against the task cap queued, nothing cancelled: the runner looks only if the cap
        has room). Costs what the ids do, not the hub's size."""
        if self.on_change is not None:
            await self.on_change(what, ids)


CONTEXT: web.AppKey[HubContext] = web.AppKey("hub", HubContext)
CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)
SPACE: web.RequestKey[int] = web.RequestKey("space_id", int)


def context_of(request: web.Request) -> HubContext:
    return request.app[CONTEXT]


def caller_of(request: web.Request) -> Caller:
    caller = request.get(CALLER)
    assert isinstance(caller, Caller), "route reached without the auth middleware"
    return caller
