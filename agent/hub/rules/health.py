"""A worker's health from what its check found, as Octopus decides it.

Unavailable: the worker could not be reached. Unhealthy: the health script
failed (a non-zero exit, or ``fail_healthcheck``). HasWarnings: the script
warned (``echo_warning``, a line on stderr) or free disk space is under the
policy's threshold. Healthy otherwise. A draining worker (``tentacle drain``) keeps
its health (its health script is not run: it would be refused) and its summary says
since when it drains; dispatch leaves it out (rules.dispatch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

HEALTHY = "Healthy"
HAS_WARNINGS = "HasWarnings"
UNHEALTHY = "Unhealthy"
UNAVAILABLE = "Unavailable"


@dataclass(frozen=True)
class CheckOutcome:
    """What one check of one worker found.

    ``facts`` come from the worker's capabilities (OperatingSystem, Architecture,
    ShellName, AgentVersion, FreeDiskSpaceMegabytes...). ``script_exit_code`` is
    None when no script ran (OnlyConnectivity, or the worker was unreachable).
    """

    reachable: bool
    error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    script_exit_code: int | None = None
    warnings: Sequence[str] = ()
    errors: Sequence[str] = ()


@dataclass(frozen=True)
class Verdict:
    status: str
    summary: str


def judge(outcome: CheckOutcome, free_disk_threshold_mb: int) -> Verdict:
    """The health status and a one-line summary for people."""
    if not outcome.reachable:
        return Verdict(UNAVAILABLE, f"Unavailable: {outcome.error or 'the worker did not answer'}")
    if outcome.script_exit_code not in (None, 0) or outcome.errors:
        why = (
            outcome.errors[0]
            if outcome.errors
            else f"the health script exited with code {outcome.script_exit_code}"
        )
        return Verdict(UNHEALTHY, f"Unhealthy: {why}")
    notes = list(outcome.warnings)
    free = outcome.facts.get("FreeDiskSpaceMegabytes")
    if isinstance(free, int | float) and free < free_disk_threshold_mb:
        notes.insert(
            0, f"free disk space is {free:.0f} MB, under the policy's {free_disk_threshold_mb} MB"
        )
    draining = ""
    if outcome.facts.get("Draining"):
        draining = f"; draining since {outcome.facts.get('DrainingSince')} (runs no new steps)"
    if notes:
        return Verdict(HAS_WARNINGS, f"Has warnings: {notes[0]}{draining}")
    return Verdict(HEALTHY, f"Healthy{draining}")


def task_status(verdicts: Sequence[str], skippable_unavailable: bool) -> tuple[bool, bool]:
    """(succeeded, has warnings) of a whole health task from its workers' statuses.

    An unavailable worker fails the task unless the policy says machines may be
    offline (MayBeOfflineAndCanBeSkipped); an unhealthy one always fails it.
    """
    failed = any(
        v == UNHEALTHY or (v == UNAVAILABLE and not skippable_unavailable) for v in verdicts
    )
    warned = any(v in (HAS_WARNINGS, UNAVAILABLE) for v in verdicts)
    return not failed, warned or failed
