from __future__ import annotations

import pytest

from agent.hub.rules.dispatch import (
    Member,
    Selection,
    counts_against_cap,
    free_slots,
    reroute,
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


DRAINING = Member(7, "drained", False, "Healthy", busy=0, draining=True)


@pytest.mark.parametrize(
    ("members", "machines", "target_all", "expected"),
    [
        # the least busy worker would be the draining one: the next one instead
        ([WEB1, DRAINING, WEB3], None, False, Selection(workers=(WEB3,))),
        # every worker: the draining one left out
        ([DRAINING, WEB1, WEB3], None, True, Selection(workers=(WEB1, WEB3))),
        # only a draining one: the task fails saying so, never the built-in worker
        ([DRAINING], None, False, Selection(error="no healthy worker in Web (drained draining)")),
        # asked for by name: refused naming why
        (
            [WEB1, DRAINING],
            [7],
            False,
            Selection(error="cannot run on the workers asked for: drained (Workers-7) is draining"),
        ),
    ],
)
def test_a_draining_worker_is_no_candidate(
    members: list[Member], machines: list[int] | None, target_all: bool, expected: Selection
) -> None:
    shown = {n: f"Workers-{n}" for n in range(1, 10)}
    assert select("Web", members, machines, target_all, True, shown) == expected


def test_draining_comes_after_disabled_in_the_reason() -> None:
    both = Member(8, "both", True, "Healthy", draining=True)
    assert (
        select("Web", [both], None, False, True).error == "no healthy worker in Web (both disabled)"
    )


# the worker that refused, as the store still saw it when the step was leased
REFUSED = Member(1, "web-1", False, "Healthy", busy=2)


@pytest.mark.parametrize(
    ("members", "machines", "target_all", "expected"),
    [
        # the least busy other candidate, even if the refused one looks idle
        ([REFUSED, WEB2, WEB3], None, False, Selection(workers=(WEB2,))),
        ([REFUSED, DOWN, WEB3], None, False, Selection(workers=(WEB3,))),
        # nobody else: an error naming the refusal and every other member's state
        (
            [REFUSED, DOWN, DRAINING],
            None,
            False,
            Selection(
                error="web-1 is draining (it starts no new scripts), and no other worker in "
                "Web can run it (down Unavailable, drained draining)"
            ),
        ),
        (
            [REFUSED],
            None,
            False,
            Selection(
                error="web-1 is draining (it starts no new scripts), and no other worker in Web "
                "can run it"
            ),
        ),
        # a step of a task that named its workers, or runs on all, is not moved
        (
            [REFUSED, WEB2],
            [1],
            False,
            Selection(
                error="web-1 is draining (it starts no new scripts), and the task asked for it "
                "by name"
            ),
        ),
        (
            [REFUSED, WEB2],
            None,
            True,
            Selection(
                error="web-1 is draining (it starts no new scripts); the task runs on every "
                "worker, so it is not moved"
            ),
        ),
    ],
)
def test_a_step_refused_for_draining_goes_to_another_candidate(
    members: list[Member], machines: list[int] | None, target_all: bool, expected: Selection
) -> None:
    assert reroute("Web", members, REFUSED, machines, target_all) == expected
