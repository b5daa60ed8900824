"""Workers as Octopus shows them: the legacy Status from the health, and the
collection's filters, as plain functions over a worker's resource."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HEALTH_STATUSES = ("Healthy", "HasWarnings", "Unhealthy", "Unavailable", "Unknown")
COMMUNICATION_STYLES = ("TentaclePassive", "TentacleActive", "Ssh")


def legacy_status(health: str, is_disabled: bool) -> str:
    """Octopus's older ``Status`` enum, derived from the health as its server does."""
    if is_disabled:
        return "Disabled"
    return {"Healthy": "Online", "HasWarnings": "Online", "Unhealthy": "Online",
            "Unavailable": "Offline"}.get(health, "Unknown")  # fmt: skip


def _listed(query: Mapping[str, str], name: str) -> frozenset[str] | None:
    text = query.get(name)
    if text is None or not text.strip():
        return None
    return frozenset(part.strip().lower() for part in text.split(",") if part.strip())


class BadFilter(ValueError):
    pass


@dataclass(frozen=True)
class WorkerFilters:
    """The ``/api/workers`` filters of a query, parsed; None where one is not given.
    ``pools``, ``health`` and ``styles`` are lower-cased (they match whatever the case),
    ``thumbprint`` upper-cased."""

    pools: frozenset[str] | None = None
    health: frozenset[str] | None = None
    styles: frozenset[str] | None = None
    thumbprint: str | None = None
    disabled: bool | None = None


def worker_filters(query: Mapping[str, str]) -> WorkerFilters:
    """The query parameters ``workerpoolIds``, ``healthStatuses``, ``commStyles``,
    ``thumbprint``, ``isDisabled`` (``ids``, ``name`` and ``partialName`` are every
    collection's). BadFilter names a bad one."""
    pools = _listed(query, "workerpoolIds") or _listed(query, "workerPoolIds")
    health = _listed(query, "healthStatuses")
    disabled_text = query.get("isDisabled")
    disabled: bool | None = None
    if disabled_text is not None and disabled_text != "":
        if disabled_text.lower() not in ("true", "false"):
            raise BadFilter(f"isDisabled must be true or false, not {disabled_text!r}")
        disabled = disabled_text.lower() == "true"
    known = {s.lower() for s in HEALTH_STATUSES}
    if health is not None and not health <= known:
        raise BadFilter(f"healthStatuses must be among {', '.join(HEALTH_STATUSES)}")
    return WorkerFilters(
        pools=pools,
        health=health,
        styles=_listed(query, "commStyles"),
        thumbprint=query.get("thumbprint", "").strip().upper() or None,
        disabled=disabled,
    )


def worker_filter(query: Mapping[str, str]) -> Any:
    """A predicate over worker resources for the filters of :func:`worker_filters`:
    what the store's queries (``store.worker_queries``) answer, said in Python."""
    given = worker_filters(query)

    def keep(worker: Mapping[str, Any]) -> bool:
        pools = given.pools
        if pools is not None and not pools & {p.lower() for p in worker["WorkerPoolIds"]}:
            return False
        if given.health is not None and worker["HealthStatus"].lower() not in given.health:
            return False
        style = worker["Endpoint"]["CommunicationStyle"].lower()
        if given.styles is not None and style not in given.styles:
            return False
        thumbprint = given.thumbprint
        if thumbprint is not None and (worker["Thumbprint"] or "").upper() != thumbprint:
            return False
        return given.disabled is None or worker["IsDisabled"] is given.disabled

    return keep
