"""RecentCallers: an API key's caller remembered for a while after the store found it."""

from __future__ import annotations

from agent.hub.api.callers import RecentCallers
from agent.hub.keys import Permission, key_hash, new_api_key
from agent.hub.store.apikeys import Caller

READER = Caller("reader", Permission.READ_ONLY, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_caller_is_remembered_for_its_seconds_then_looked_up_again() -> None:
    clock = Clock()
    recent = RecentCallers(seconds=10.0, clock=clock)
    hashed = key_hash(new_api_key())
    assert recent.get(hashed) is None  # never found: the store is asked
    recent.put(hashed, READER)
    clock.now += 9.9
    assert recent.get(hashed) == READER
    clock.now += 0.1  # ten seconds after the lookup, however often it was used since
    assert recent.get(hashed) is None
    assert recent.get(hashed) is None  # forgotten, not revived


def test_only_the_most_recently_used_are_kept() -> None:
    recent = RecentCallers(size=2, clock=Clock())
    first, second, third = (key_hash(new_api_key()) for _ in range(3))
    recent.put(first, READER)
    recent.put(second, READER)
    assert recent.get(first) == READER  # used: the second is now the oldest
    recent.put(third, READER)
    assert (recent.get(first), recent.get(second), recent.get(third)) == (READER, None, READER)


def test_a_key_is_kept_by_its_hash_only() -> None:
    recent = RecentCallers(clock=Clock())
    key = new_api_key()
    recent.put(key_hash(key), READER)
    assert recent.get(key) is None
    assert key not in repr(vars(recent))
