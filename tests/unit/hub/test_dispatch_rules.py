from __future__ import annotations

import pytest

from agent.hub.rules.dispatch import (
    Member,
    Selection,
    counts_against_cap,
    free_slots,
    select,
)

WEB1 = Member(1, "web-1", False, "Healthy", busy=2)
WEB2 = Member(2, "web-2", False, "HasWarnings", busy=1)
WEB3 = Member(3, "web-3", False, "Healthy", busy=1)
DOWN = Member(4, "down", False, "Unavailable")
OFF = Member(5, "off", True, "Healthy")
NEW = Member(6, "new", False, "Unknown")


@pytest.mark.parametrize(
    ("running", "cap", "free"),
    [
        ([], 5, 5),
        (["AdHocScript"] * 4, 5, 1),
        (["AdHocScript"] * 5, 5, 0),
        (["AdHocScript"] * 5 + ["Health"] * 3, 5, 0),
        (["Health"] * 30, 5, 5),  # health never takes a slot
        (["Deploy", "AdHocScript", "Health"], 2, 0),
        (["AdHocScript"] * 7, 5, 0),  # re-attached over the cap: none more, never negative
    ],
)
def test_the_task_cap_counts_every_task_but_health(running: list[str], cap: int, free: int) -> None:
    assert free_slots(running, cap) == free


def test_health_is_outside_the_cap_and_the_rest_inside() -> None:
    assert not counts_against_cap("Health")
    assert counts_against_cap("AdHocScript")
    assert counts_against_cap("Deploy")


@pytest.mark.parametrize(
    ("members", "machines", "target_all", "builtin", "expected"),
    [
        # one worker: the least busy candidate, ties to the lowest id
        ([WEB1, WEB2, WEB3], None, False, True, Selection(workers=(WEB2,))),
        ([WEB1, WEB3], None, False, False, Selection(workers=(WEB3,))),
        # every candidate, in id order; the down and disabled ones left out
        ([WEB3, DOWN, WEB1, OFF], None, True, False, Selection(workers=(WEB1, WEB3))),
        # the named ones, in the order named
        ([WEB1, WEB2, WEB3], [3, 1], False, False, Selection(workers=(WEB3, WEB1))),
        # an empty pool: the built-in worker if there is one
        ([], None, False, True, Selection(builtin=True)),
        ([], None, True, True, Selection(builtin=True)),
        (
            [],
            None,
            False,
            False,
            Selection(error="the pool Web has no workers and the built-in worker is disabled"),
        ),
        # members but no candidate: fails, never the built-in worker
        (
            [DOWN, OFF, NEW],
            None,
            False,
            True,
            Selection(
                error="no healthy worker in Web (down Unavailable, off disabled, new Unknown)"
            ),
        ),
        (
            [WEB1, DOWN],
            [4, 9],
            False,
            True,
            Selection(
                error="cannot run on the workers asked for: down (Workers-4) is Unavailable; "
                "Workers-9 is not a worker of Web"
            ),
        ),
        (
            [],
            [1],
            False,
            True,
            Selection(
                error="cannot run on the workers asked for: Workers-1 is not a worker of Web"
            ),
        ),
    ],
)
def test_workers_are_selected_as_the_contract_says(
    members: list[Member],
    machines: list[int] | None,
    target_all: bool,
    builtin: bool,
    expected: Selection,
) -> None:
    shown = {n: f"Workers-{n}" for n in range(1, 10)}
    assert select("Web", members, machines, target_all, builtin, shown) == expected
