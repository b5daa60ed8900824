from __future__ import annotations

import pytest

from agent.hub.rules.health import CheckOutcome, judge, task_status


@pytest.mark.parametrize(
    ("outcome", "status", "summary"),
    [
        (
            CheckOutcome(reachable=False, error="connection refused"),
            "Unavailable",
            "connection refused",
        ),
        (CheckOutcome(reachable=True, script_exit_code=3), "Unhealthy", "exited with code 3"),
        (
            CheckOutcome(reachable=True, script_exit_code=0, errors=["disk on fire"]),
            "Unhealthy",
            "disk on fire",
        ),
        (
            CheckOutcome(reachable=True, script_exit_code=0, warnings=["old kernel"]),
            "HasWarnings",
            "old kernel",
        ),
        (
            CheckOutcome(reachable=True, facts={"FreeDiskSpaceMegabytes": 100}),
            "HasWarnings",
            "under the policy's 500 MB",
        ),
        (
            CheckOutcome(reachable=True, facts={"FreeDiskSpaceMegabytes": 9000}),
            "Healthy",
            "Healthy",
        ),
        (CheckOutcome(reachable=True, script_exit_code=0), "Healthy", "Healthy"),
    ],
)
def test_a_check_is_judged_as_octopus_judges_it(
    outcome: CheckOutcome, status: str, summary: str
) -> None:
    verdict = judge(outcome, free_disk_threshold_mb=500)
    assert verdict.status == status
    assert summary in verdict.summary


@pytest.mark.parametrize(
    ("statuses", "skippable", "expected"),
    [
        (["Healthy", "Healthy"], False, (True, False)),
        (["Healthy", "HasWarnings"], False, (True, True)),
        (["Healthy", "Unavailable"], False, (False, True)),
        (["Healthy", "Unavailable"], True, (True, True)),
        (["Unhealthy"], True, (False, True)),
        ([], False, (True, False)),
    ],
)
def test_a_health_task_fails_as_octopus_fails_it(
    statuses: list[str], skippable: bool, expected: tuple[bool, bool]
) -> None:
    assert task_status(statuses, skippable) == expected


DRAINING = {"Draining": True, "DrainingSince": "2026-12-01T09:48:18.123+00:00"}


@pytest.mark.parametrize(
    ("facts", "status", "summary"),
    [
        (DRAINING, "Healthy",
         "Healthy; draining since 2026-12-01T09:48:18.123+00:00 (runs no new steps)"),
        ({**DRAINING, "FreeDiskSpaceMegabytes": 100}, "HasWarnings",
         "Has warnings: free disk space is 100 MB, under the policy's 500 MB; draining since "
         "2026-12-01T09:48:18.123+00:00 (runs no new steps)"),
        ({"Draining": False}, "Healthy", "Healthy"),
    ],
)  # fmt: skip
def test_a_draining_worker_keeps_its_health_and_says_it_drains(
    facts: dict[str, object], status: str, summary: str
) -> None:
    verdict = judge(CheckOutcome(reachable=True, facts=facts), 500)
    assert (verdict.status, verdict.summary) == (status, summary)
