"""The pure parts of the hub's views: names to ids, table cells, a followed task's news."""

from __future__ import annotations

from typing import Any

import pytest

from agent.cli.hub_views import HubViewError, TaskWatch, resolve, summary_of, task_failure

POOLS = [
    {"Id": "WorkerPools-1", "Name": "Default Worker Pool"},
    {"Id": "WorkerPools-2", "Name": "Builders"},
]


def test_resolve_by_id_name_or_unambiguous_case() -> None:
    assert resolve(POOLS, "WorkerPools-2", "worker pool")["Name"] == "Builders"
    assert resolve(POOLS, "Builders", "worker pool")["Id"] == "WorkerPools-2"
    assert resolve(POOLS, "builders", "worker pool")["Id"] == "WorkerPools-2"
    with pytest.raises(
        HubViewError, match=r"no worker pool 'x' \(it has 'Default Worker Pool', 'Builders'\)"
    ):
        resolve(POOLS, "x", "worker pool")
    with pytest.raises(HubViewError, match=r"\(it has none\)"):
        resolve([], "w", "worker")


def test_the_summary_drops_what_the_health_column_says_and_fits() -> None:
    assert summary_of({"HealthStatus": "Healthy", "StatusSummary": "Healthy"}) == ""
    warned = {"HealthStatus": "HasWarnings", "StatusSummary": "Has warnings: low disk"}
    assert summary_of(warned) == "low disk"
    long = {"HealthStatus": "Unavailable", "StatusSummary": "Unavailable: " + "x" * 100}
    assert summary_of(long) == "x" * 57 + "..."
    assert summary_of({"HealthStatus": "Unknown", "StatusSummary": "Not checked yet"}) == (
        "Not checked yet"
    )


def activity(
    number: int, name: str, ended: str | None, status: str, verdict: str
) -> dict[str, Any]:
    elements = [{"OccurredAt": ended, "MessageText": verdict}] if ended else []
    return {
        "Id": f"a{number}",
        "Name": f"Check {name}",
        "Ended": ended,
        "Status": status,
        "LogElements": elements,
    }


def details(children: list[dict[str, Any]], root_lines: list[tuple[str, str]]) -> dict[str, Any]:
    elements = [{"OccurredAt": at, "MessageText": text} for at, text in root_lines]
    return {"ActivityLogs": [{"Children": children, "LogElements": elements}]}


def test_a_watch_shows_each_line_once_in_the_order_it_happened() -> None:
    watch = TaskWatch()
    start = ("2026-01-01T00:00:01+00:00", "Checking the health of 2 worker(s)")
    first = details(
        [
            activity(1, "a", "2026-01-01T00:00:02+00:00", "Success", "Healthy"),
            activity(2, "b", None, "Running", ""),
        ],
        [start],
    )
    assert watch.news(first) == ["Checking the health of 2 worker(s)", "  a: Healthy"]
    end = ("2026-01-01T00:00:04+00:00", "Health check finished: 1 Healthy, 1 Unavailable")
    second = details(
        [
            activity(1, "a", "2026-01-01T00:00:02+00:00", "Success", "Healthy"),
            activity(2, "b", "2026-01-01T00:00:03+00:00", "Failed", "Unavailable: gone"),
        ],
        [start, end],
    )
    assert watch.news(second) == ["  b: Unavailable: gone", end[1]]
    assert watch.news(second) == []
    assert watch.failed == ["b"]


def test_a_failure_names_the_workers_or_says_why() -> None:
    task = {
        "Id": "ServerTasks-3",
        "State": "Failed",
        "ErrorMessage": "Health check failed: 1 Unavailable",
    }
    assert task_failure(task, ["b"], {"b": "Unavailable"}) == (
        "health check ServerTasks-3 failed: b (Unavailable)"
    )
    timed_out = {**task, "State": "TimedOut", "ErrorMessage": "took too long"}
    assert (
        task_failure(timed_out, [], {})
        == "health check ServerTasks-3 ended TimedOut: took too long"
    )
