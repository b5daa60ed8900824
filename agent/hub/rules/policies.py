"""Machine policies: checking a policy document, and the decisions a policy makes
(when a worker is due for a health check, when an unavailable one is deleted)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from agent.hub.timespan import BadTimeSpan, parse_timespan

HEALTH_CHECK_TYPES = ("RunScript", "OnlyConnectivity")
CONNECTIVITY = ("ExpectedToBeOnline", "MayBeOfflineAndCanBeSkipped")
CLEANUP = ("DoNotDelete", "DeleteUnavailableMachines")
RUN_TYPES = ("InheritFromDefault", "Inline", "OnlyConnectivity")
MIN_INTERVAL = timedelta(minutes=1)


def merge(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` over ``defaults``, nested objects merged key by key (unknown keys kept
    only where the defaults know them: Octopus's clients send extras)."""
    merged: dict[str, Any] = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        if isinstance(default, dict) and isinstance(value, dict):
            merged[key] = merge(default, value)
        else:
            merged[key] = value
    return merged


def _choice(errors: list[str], where: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        errors.append(f"{where} must be one of {', '.join(choices)}, not {value!r}")


def _span(errors: list[str], where: str, value: Any, least: timedelta | None = None) -> None:
    try:
        span = parse_timespan(value)
    except BadTimeSpan as error:
        errors.append(f"{where}: {error}")
        return
    if least is not None and span < least:
        errors.append(f"{where} must be at least {least}, not {value!r}")


def policy_errors(settings: dict[str, Any]) -> list[str]:
    """Every problem of a merged policy document, each naming its field."""
    errors: list[str] = []
    health = settings["MachineHealthCheckPolicy"]
    if not isinstance(health, dict):
        return ["MachineHealthCheckPolicy must be an object"]
    _span(
        errors,
        "MachineHealthCheckPolicy.HealthCheckInterval",
        health["HealthCheckInterval"],
        MIN_INTERVAL,
    )
    _choice(
        errors,
        "MachineHealthCheckPolicy.HealthCheckType",
        health["HealthCheckType"],
        HEALTH_CHECK_TYPES,
    )
    bash = health["BashHealthCheckPolicy"]
    if not isinstance(bash, dict) or not isinstance(bash.get("ScriptBody"), str):
        errors.append("MachineHealthCheckPolicy.BashHealthCheckPolicy.ScriptBody must be a string")
    else:
        _choice(
            errors,
            "MachineHealthCheckPolicy.BashHealthCheckPolicy.RunType",
            bash.get("RunType"),
            RUN_TYPES,
        )
    connectivity = settings["MachineConnectivityPolicy"]
    _choice(
        errors,
        "MachineConnectivityPolicy.MachineConnectivityBehavior",
        connectivity.get("MachineConnectivityBehavior") if isinstance(connectivity, dict) else None,
        CONNECTIVITY,
    )
    cleanup = settings["MachineCleanupPolicy"]
    if not isinstance(cleanup, dict):
        errors.append("MachineCleanupPolicy must be an object")
    else:
        _choice(
            errors,
            "MachineCleanupPolicy.DeleteMachinesBehavior",
            cleanup.get("DeleteMachinesBehavior"),
            CLEANUP,
        )
        _span(
            errors,
            "MachineCleanupPolicy.DeleteMachinesElapsedTimeSpan",
            cleanup.get("DeleteMachinesElapsedTimeSpan"),
        )
    threshold = settings.get("FreeDiskSpaceWarningMegabytes")
    if (
        not isinstance(threshold, int)
        or isinstance(threshold, bool)
        or threshold < 0
        or threshold > 2**31 - 1
    ):
        errors.append(
            f"FreeDiskSpaceWarningMegabytes must be a whole number from 0 to {2**31 - 1}, "
            f"not {threshold!r}"
        )
    return errors


def check_interval(settings: dict[str, Any]) -> timedelta:
    return parse_timespan(settings["MachineHealthCheckPolicy"]["HealthCheckInterval"])


def connectivity_only(settings: dict[str, Any]) -> bool:
    return bool(settings["MachineHealthCheckPolicy"]["HealthCheckType"] == "OnlyConnectivity")


def health_script(settings: dict[str, Any]) -> str:
    return str(settings["MachineHealthCheckPolicy"]["BashHealthCheckPolicy"]["ScriptBody"])


def due_for_check(settings: dict[str, Any], last_checked: datetime | None, now: datetime) -> bool:
    """A worker never checked is due at once; otherwise once the interval has passed."""
    return last_checked is None or now - last_checked >= check_interval(settings)


def should_delete(
    settings: dict[str, Any], unavailable_since: datetime | None, now: datetime
) -> bool:
    """Whether a worker unavailable since then is to be deleted now, by this policy."""
    cleanup = settings["MachineCleanupPolicy"]
    if (
        cleanup["DeleteMachinesBehavior"] != "DeleteUnavailableMachines"
        or unavailable_since is None
    ):
        return False
    return now - unavailable_since >= parse_timespan(cleanup["DeleteMachinesElapsedTimeSpan"])


def due_workers(
    workers: list[dict[str, Any]], policies: dict[int, dict[str, Any]], now: datetime
) -> list[int]:
    """Ids of the enabled workers whose policy says a health check is due."""
    return [
        worker["id"]
        for worker in workers
        if not worker["is_disabled"]
        and due_for_check(policies[worker["machine_policy_id"]], worker["last_checked"], now)
    ]
