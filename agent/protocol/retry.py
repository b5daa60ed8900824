"""The one retry policy: jittered exponential backoff with a deadline, reset on success.

Sans-I/O: :class:`Retry` is told when an attempt failed (and what time it is)
and answers how long to wait before the next one, or that it is time to give
up; the caller does the waiting. Every retrying loop uses it: the agent's
poller, ``AgentClient``'s idempotent operations and ``execute_script``.

The delay is "full jitter": uniform in [0, min(cap, first * 2^(failures-1))),
so that a thousand callers that failed together do not return together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """How to retry: ``first`` bounds the first delay, ``cap`` every delay (seconds).

    ``deadline``: give up once a failure comes this long after the first
    failure in a row (None: never give up). The last delay is shortened so that
    the last attempt starts at the deadline, not after it.
    """

    first: float = 1.0
    cap: float = 60.0
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.first < 0 or self.cap < self.first:
            raise ValueError(f"expected 0 <= first <= cap, got first={self.first} cap={self.cap}")
        if self.deadline is not None and self.deadline < 0:
            raise ValueError(f"expected a deadline >= 0 or None, got {self.deadline}")

    def ceiling(self, failures: int) -> float:
        """The largest delay after ``failures`` (>= 1) failures in a row."""
        if failures < 1:
            raise ValueError(f"expected failures >= 1, got {failures}")
        # 2 ** 1100 overflows a float: past the cap, the exponent no longer matters
        return min(self.cap, self.first * 2.0 ** min(failures - 1, 1000))


# The agent's poller: the first redial within a second, then never more than 15 s apart,
# so that agents are back within seconds of a server's return, however long it was
# away; a server down for good sees each of them once every 7.5 s on average.
POLLING = Backoff(first=1.0, cap=15.0)
# A server's client (every idempotent operation on an agent, scripts included):
# quick retries through a blip, long enough to outlast an agent's restart.
CLIENT = Backoff(first=0.5, cap=8.0, deadline=120.0)


class Retry:
    """The failures in a row of one operation (or one connection) under a :class:`Backoff`."""

    def __init__(self, policy: Backoff, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._since: float | None = None  # when the first failure in a row happened

    def failed(self, now: float) -> float | None:
        """Count a failure at time ``now`` (any monotonic clock, seconds).

        Returns the delay before the next attempt, or None when the deadline
        has passed: give up (raise the failure).
        """
        if self._since is None:
            self._since = now
        self.failures += 1
        delay = self._rng.uniform(0, self.policy.ceiling(self.failures))
        if self.policy.deadline is None:
            return delay
        remaining = self._since + self.policy.deadline - now
        if remaining <= 0:
            return None
        return min(delay, remaining)

    def succeeded(self) -> None:
        """An attempt succeeded: the next failure is the first again."""
        self.failures = 0
        self._since = None
