"""The callers of API keys found in the store lately: what spares each request a read.

A key is looked up by its hash (agent.hub.store.apikeys); once found, its caller is
remembered for ``KEY_MEMORY`` seconds, so that a client's requests in a row (a task
followed to its end is three or four) cost one lookup, not one each. Keys not found
are not remembered: a key made while the hub runs works at once, and a key removed
from the store stops working within ``KEY_MEMORY`` seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from agent.hub.store.apikeys import Caller

KEY_MEMORY = 10.0  # seconds a key found in the store is trusted without looking again
KEYS_REMEMBERED = 256  # at most: the least recently used is forgotten first


class RecentCallers:
    """The callers of the keys found in the store lately, by the key's hash (never the
    key): each for ``seconds`` after it was looked up, at most ``size`` of them."""

    def __init__(
        self,
        seconds: float = KEY_MEMORY,
        size: int = KEYS_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.size = size
        self.clock = clock
        self._found: OrderedDict[str, tuple[float, Caller]] = OrderedDict()

    def get(self, hashed: str) -> Caller | None:
        """The caller remembered for this hash, or None (never found, or too long ago)."""
        entry = self._found.get(hashed)
        if entry is None:
            return None
        if self.clock() - entry[0] >= self.seconds:
            del self._found[hashed]
            return None
        self._found.move_to_end(hashed)
        return entry[1]

    def put(self, hashed: str, caller: Caller) -> None:
        self._found[hashed] = (self.clock(), caller)
        self._found.move_to_end(hashed)
        while len(self._found) > self.size:
            self._found.popitem(last=False)
