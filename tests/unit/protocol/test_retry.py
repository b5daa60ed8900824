"""The one retry policy (agent.protocol.retry), with an injected clock and rng."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.protocol.retry import CLIENT, POLLING, Backoff, Retry


class Highest(random.Random):
    """An rng that always draws the top of the range: the delays are the ceilings."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    ("policy", "ceilings"),
    [
        (Backoff(first=1.0, cap=60.0), [1, 2, 4, 8, 16, 32, 60, 60]),
        (Backoff(first=0.5, cap=8.0), [0.5, 1, 2, 4, 8, 8]),
        (Backoff(first=0.0, cap=0.0), [0, 0, 0]),
    ],
)
def test_delays_double_up_to_the_cap(policy: Backoff, ceilings: list[float]) -> None:
    retry = Retry(policy, Highest())
    assert [retry.failed(now=0.0) for _ in ceilings] == ceilings


def test_the_poller_retries_within_a_second_first_and_jitters() -> None:
    """Kept from the poller's own backoff: the first redial within a second, capped at 60 s."""
    rng = random.Random(7)
    first = [Retry(POLLING, rng).failed(0.0) for _ in range(1000)]
    assert max(d for d in first if d is not None) < 1.0
    assert len({round(d, 6) for d in first if d is not None}) > 990  # not a thundering herd
    late = Retry(POLLING, rng)
    delays = [late.failed(0.0) for _ in range(1030)][30:]
    assert max(d for d in delays if d is not None) <= POLLING.cap
    assert sum(d for d in delays if d is not None) / len(delays) > POLLING.cap / 3


def test_a_success_starts_again_from_the_first_delay() -> None:
    retry = Retry(Backoff(first=1.0, cap=60.0, deadline=10.0), Highest())
    assert [retry.failed(now) for now in (0.0, 1.0, 3.0)] == [1.0, 2.0, 4.0]
    retry.succeeded()
    assert retry.failures == 0
    # the deadline counts from the first failure of the new run, not the old one
    assert [retry.failed(now) for now in (100.0, 101.0)] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("failures_at", "expected"),
    [
        # the last delay ends at the deadline
        ([0.0, 1.0, 3.0, 7.0, 10.0], [1.0, 2.0, 4.0, 3.0, None]),
        ([0.0, 9.5], [1.0, 0.5]),
        ([0.0, 10.0], [1.0, None]),
        ([5.0, 20.0], [1.0, None]),
    ],
)
def test_the_deadline_counts_from_the_first_failure_in_a_row(
    failures_at: list[float], expected: list[float | None]
) -> None:
    retry = Retry(Backoff(first=1.0, cap=60.0, deadline=10.0), Highest())
    assert [retry.failed(now) for now in failures_at] == expected


def test_a_zero_deadline_never_retries() -> None:
    assert Retry(Backoff(deadline=0.0)).failed(123.0) is None


def test_the_client_retries_first_within_half_a_second_as_before() -> None:
    rng = random.Random(3)
    assert all(0 <= (Retry(CLIENT, rng).failed(0.0) or -1) <= 0.5 for _ in range(1000))


@pytest.mark.parametrize(
    ("first", "cap", "deadline"), [(-1.0, 1.0, None), (2.0, 1.0, None), (1.0, 2.0, -1.0)]
)
def test_an_impossible_policy_is_refused_naming_the_values(
    first: float, cap: float, deadline: float | None
) -> None:
    with pytest.raises(ValueError, match="expected"):
        Backoff(first=first, cap=cap, deadline=deadline)


@given(
    first=st.floats(0, 10),
    extra=st.floats(0, 100),
    deadline=st.none() | st.floats(0, 1000),
    gaps=st.lists(st.floats(0, 100), min_size=1, max_size=60),
    seed=st.integers(0, 2**32),
)
def test_every_delay_is_within_its_ceiling_and_never_past_the_deadline(
    first: float, extra: float, deadline: float | None, gaps: list[float], seed: int
) -> None:
    policy = Backoff(first=first, cap=first + extra, deadline=deadline)
    retry = Retry(policy, random.Random(seed))
    now = 0.0
    for failures, gap in enumerate(gaps, start=1):
        delay = retry.failed(now)
        if delay is None:
            assert deadline is not None
            assert now >= deadline
            return
        assert 0 <= delay <= policy.ceiling(failures) <= policy.cap
        if deadline is not None:
            assert now + delay <= deadline + 1e-9
        now += delay + gap


def test_a_polling_agent_is_never_more_than_15_s_from_its_next_dial() -> None:
    """However long the server was away, its agents are back within seconds of its
    return (P5b: 99% of 10,000 within 30 s of a restart): the ceiling stops at 15 s."""
    retry = Retry(POLLING, Highest())
    assert [retry.failed(now=0.0) for _ in range(8)] == [1, 2, 4, 8, 15, 15, 15, 15]


def test_ten_thousand_agents_dropped_at_once_spread_their_redials_over_the_ceiling() -> None:
    """A restarted listener sees the returning agents spread out, not in one instant:
    after n failures, their next dials fill the whole range below the ceiling."""
    rng = random.Random(11)
    for failures, ceiling in ((1, 1.0), (3, 4.0), (6, 15.0)):
        delays = []
        for _ in range(10_000):
            retry = Retry(POLLING, rng)
            for _ in range(failures - 1):
                retry.failed(0.0)
            delays.append(retry.failed(0.0) or 0.0)
        per_tenth = [0] * 10
        for delay in delays:
            per_tenth[min(9, int(delay / ceiling * 10))] += 1
        assert max(delays) < ceiling
        assert min(per_tenth) > 800, f"after {failures} failures: {per_tenth}"  # ~1,000 each
