"""A hub node's lease on its name, judged without a database or a network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.hub.rules.lease import LeaseState, abandoned, lease_state, refusal, renew_interval

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def row(seen_ago: float, token: str = "theirs") -> dict[str, object]:
    seen = NOW - timedelta(seconds=seen_ago)
    return {"name": "hub", "token": token, "host": "box-1", "pid": 4242,
            "started": NOW - timedelta(hours=1), "last_seen": seen}  # fmt: skip


@pytest.mark.parametrize(
    ("found", "state"),
    [
        (None, LeaseState.FREE),  # nobody, or its holder stopped cleanly (the row deleted)
        (row(0), LeaseState.HELD),
        (row(59.9), LeaseState.HELD),
        (row(60), LeaseState.HELD),  # renewed exactly a lease ago: still alive
        (row(60.1), LeaseState.EXPIRED),
        (row(3600), LeaseState.EXPIRED),
        (row(-5), LeaseState.HELD),  # its clock a little ahead of ours: alive
        (row(3600, token="mine"), LeaseState.MINE),
    ],
)
def test_lease_state(found: dict[str, object] | None, state: LeaseState) -> None:
    assert lease_state(found, NOW, 60, token="mine") is state


def test_the_lease_is_renewed_four_times_a_lease() -> None:
    assert renew_interval(60) == 15


def test_a_refusal_names_the_node_its_host_pid_and_when_and_says_what_to_do() -> None:
    message = refusal(row(3), NOW)
    assert message == (
        "the hub node 'hub' is running already: process 4242 on box-1, last seen 3 s ago"
        " (2026-12-01T11:59:57+00:00); stop it, or give this hub another --node-name"
    )


def test_an_abandoned_task_says_which_process_stopped_and_that_its_lease_expired() -> None:
    message = abandoned(row(75), NOW, LeaseState.EXPIRED)
    assert "the hub node 'hub' (process 4242 on box-1) stopped while this task ran" in message
    assert "last seen 75 s ago" in message
    assert "its lease expired" in message


def test_an_abandoned_task_of_a_process_gone_from_this_host_says_so() -> None:
    assert abandoned(row(5), NOW, LeaseState.GONE) == (
        "the hub node 'hub' (process 4242 on box-1) stopped while this task ran:"
        " that process is no longer running"
    )


def test_a_holder_is_judged_by_its_own_lease_time_not_the_readers() -> None:
    slow = {**row(90), "lease_seconds": 120}
    assert lease_state(slow, NOW, 60) is LeaseState.HELD
    assert lease_state({**slow, "lease_seconds": 60}, NOW, 60) is LeaseState.EXPIRED
