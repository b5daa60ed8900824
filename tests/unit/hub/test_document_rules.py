from __future__ import annotations

import pytest

from agent.hub.rules.documents import default_change, policy_deletion, pool_deletion


@pytest.mark.parametrize(
    ("is_default", "workers", "refused_with"),
    [
        (False, 0, None),
        (True, 0, "is the default worker pool"),
        (False, 2, "still has 2 worker(s)"),
        (True, 2, "is the default worker pool"),
    ],
)
def test_pool_deletion(is_default: bool, workers: int, refused_with: str | None) -> None:
    refusal = pool_deletion("P", is_default, workers)
    if refused_with is None:
        assert refusal is None
    else:
        assert refusal is not None
        assert refused_with in refusal.message


@pytest.mark.parametrize(
    ("is_default", "workers", "refused"),
    [(False, 0, False), (True, 0, True), (False, 1, True)],
)
def test_policy_deletion(is_default: bool, workers: int, refused: bool) -> None:
    assert (policy_deletion("P", is_default, workers) is not None) is refused


@pytest.mark.parametrize(
    ("was", "wants", "refused"),
    [(True, True, False), (True, False, True), (False, True, False), (False, False, False)],
)
def test_default_change(was: bool, wants: bool, refused: bool) -> None:
    assert (default_change("P", was, wants) is not None) is refused
