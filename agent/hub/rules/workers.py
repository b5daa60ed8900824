"""Workers as Octopus shows them: the legacy Status from the health, and the
collection's filters, as plain functions over a worker's resource."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEALTH_STATUSES = ("Healthy", "HasWarnings", "Unhealthy", "Unavailable", "Unknown")
COMMUNICATION_STYLES = ("TentaclePassive", "TentacleActive", "Ssh")


def legacy_status(health: str, is_disabled: bool) -> str:
    """Octopus's older ``Status`` enum, derived from the health as its server does."""
    if is_disabled:
        return "Disabled"
    return {"Healthy": "Online", "HasWarnings": "Online", "Unhealthy": "Online",
            "Unavailable": "Offline"}.get(health, "Unknown")  # fmt: skip


def _listed(query: Mapping[str, str], name: str) -> set[str] | None:
    text = query.get(name)
    if text is None or not text.strip():
        return None
    return {part.strip().lower() for part in text.split(",") if part.strip()}


class BadFilter(ValueError):
    pass


def worker_filter(query: Mapping[str, str]) -> Any:
    """A predicate over worker resources for the ``/api/workers`` query parameters
    ``workerpoolIds``, ``healthStatuses``, ``commStyles``, ``thumbprint``, ``isDisabled``
    (``ids``, ``name`` and ``partialName`` are every collection's). BadFilter names a bad one."""
    pools = _listed(query, "workerpoolIds") or _listed(query, "workerPoolIds")
    health = _listed(query, "healthStatuses")
    styles = _listed(query, "commStyles")
    thumbprint = query.get("thumbprint", "").strip().upper() or None
    disabled_text = query.get("isDisabled")
    disabled: bool | None = None
    if disabled_text is not None and disabled_text != "":
        if disabled_text.lower() not in ("true", "false"):
            raise BadFilter(f"isDisabled must be true or false, not {disabled_text!r}")
        disabled = disabled_text.lower() == "true"
    known = {s.lower() for s in HEALTH_STATUSES}
    if health is not None and not health <= known:
        raise BadFilter(f"healthStatuses must be among {', '.join(HEALTH_STATUSES)}")

    def keep(worker: Mapping[str, Any]) -> bool:
        if pools is not None and not pools & {p.lower() for p in worker["WorkerPoolIds"]}:
            return False
        if health is not None and worker["HealthStatus"].lower() not in health:
            return False
        style = worker["Endpoint"]["CommunicationStyle"].lower()
        if styles is not None and style not in styles:
            return False
        if thumbprint is not None and (worker["Thumbprint"] or "").upper() != thumbprint:
            return False
        return disabled is None or worker["IsDisabled"] is disabled

    return keep
