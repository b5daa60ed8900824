"""Workers as Octopus shows them: the legacy Status from the health, and the
collection's filters, as plain functions over a worker's resource."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.hub import ids
from agent.hub.rules.filters import choices, flag, id_values

HEALTH_STATUSES = ("Healthy", "HasWarnings", "Unhealthy", "Unavailable", "Unknown")
COMMUNICATION_STYLES = ("TentaclePassive", "TentacleActive", "Ssh")  # Octopus's, to filter by
# what a worker may be registered as
SUPPORTED_STYLES = COMMUNICATION_STYLES


def legacy_status(health: str, is_disabled: bool) -> str:
    """Octopus's older ``Status`` enum, derived from the health as its server does."""
    if is_disabled:
        return "Disabled"
    return {"Healthy": "Online", "HasWarnings": "Online", "Unhealthy": "Online",
            "Unavailable": "Offline"}.get(health, "Unknown")  # fmt: skip


@dataclass(frozen=True)
class WorkerFilters:
    """The ``/api/workers`` filters of a query, parsed; None where one is not given.
    ``pools`` are row numbers, ``health`` and ``styles`` the accepted spellings,
    ``thumbprint`` upper-cased."""

    pools: frozenset[int] | None = None
    health: frozenset[str] | None = None
    styles: frozenset[str] | None = None
    thumbprint: str | None = None
    disabled: bool | None = None


def worker_filters(query: Mapping[str, str]) -> WorkerFilters:
    """The query parameters ``workerpoolIds``, ``healthStatuses``, ``commStyles``,
    ``thumbprint``, ``isDisabled`` (``ids``, ``name`` and ``partialName`` are every
    collection's). BadFilter names a parameter whose value is not one the hub knows,
    the value and what is accepted."""
    pool_name = "workerPoolIds" if "workerPoolIds" in query else "workerpoolIds"
    pools = id_values(query, pool_name, ids.WORKER_POOL)
    health = choices(query, "healthStatuses", HEALTH_STATUSES)
    styles = choices(query, "commStyles", COMMUNICATION_STYLES)
    return WorkerFilters(
        pools=None if pools is None else frozenset(pools),
        health=None if health is None else frozenset(health),
        styles=None if styles is None else frozenset(styles),
        thumbprint=query.get("thumbprint", "").strip().upper() or None,
        disabled=flag(query, "isDisabled"),
    )


def worker_filter(query: Mapping[str, str]) -> Any:
    """A predicate over worker resources for the filters of :func:`worker_filters`:
    what the store's queries (``store.worker_queries``) answer, said in Python."""
    given = worker_filters(query)
    pool_ids = (
        None if given.pools is None else {ids.format_id(ids.WORKER_POOL, p) for p in given.pools}
    )

    def keep(worker: Mapping[str, Any]) -> bool:
        if pool_ids is not None and not pool_ids & set(worker["WorkerPoolIds"]):
            return False
        if given.health is not None and worker["HealthStatus"] not in given.health:
            return False
        style = worker["Endpoint"]["CommunicationStyle"]
        if given.styles is not None and style not in given.styles:
            return False
        thumbprint = given.thumbprint
        if thumbprint is not None and (worker["Thumbprint"] or "").upper() != thumbprint:
            return False
        return given.disabled is None or worker["IsDisabled"] is given.disabled

    return keep
