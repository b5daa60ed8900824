import random

from agent.transport.poller import BACKOFF_CAP, backoff_delay


def test_first_retry_is_within_a_second_and_growth_is_capped() -> None:
    rng = random.Random(7)
    first = [backoff_delay(1, rng) for _ in range(1000)]
    assert max(first) < 1.0
    assert len({round(d, 6) for d in first}) > 990  # jittered, not a thundering herd
    late = [backoff_delay(30, rng) for _ in range(1000)]
    assert max(late) <= BACKOFF_CAP
    assert sum(late) / len(late) > BACKOFF_CAP / 3
    assert max(backoff_delay(4, rng) for _ in range(1000)) <= 8.0
