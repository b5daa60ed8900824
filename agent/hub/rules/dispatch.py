"""Dispatch rules (pure): which tasks may start, and which workers run a task's steps.

The task cap: at most ``cap`` tasks of a hub node run at once, the rest wait in
the queue in order (oldest first). Health tasks count against neither the cap
nor the queue order: they start at once, so that a full queue never delays a
health check. Within a task, at most MaxParallelism (default 10) steps run at once.

Workers: the members of the task's pool that are enabled, not draining
(``tentacle drain``: the worker starts no new scripts) and Healthy (or
HasWarnings) are its candidates. ``MachineIds`` names the workers to run on
(each must be a candidate, else the task fails saying which and why);
``TargetAllWorkers`` takes every candidate; otherwise the one with the fewest
active steps runs it (ties: the lowest id). A pool with no members at all runs
the task on the hub's built-in worker, if there is one; a pool with members but
no candidate fails the task and never falls back to the built-in worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

OUTSIDE_CAP = frozenset({"Health"})
DEFAULT_MAX_PARALLELISM = 10
RUNNABLE = ("Healthy", "HasWarnings")


def counts_against_cap(name: str) -> bool:
    """Whether a task of this name takes one of the node's ``cap`` slots."""
    return name not in OUTSIDE_CAP


def free_slots(running: Iterable[str], cap: int) -> int:
    """How many more capped tasks may start, given the names of the running ones."""
    return max(0, cap - sum(1 for name in running if counts_against_cap(name)))


@dataclass(frozen=True)
class Member:
    """A worker of the task's pool as selection sees it. ``busy``: its active steps."""

    id: int
    name: str
    disabled: bool
    health: str
    busy: int = 0
    draining: bool = False  # its agent refuses new scripts (its last capabilities said)


@dataclass(frozen=True)
class Selection:
    """Who runs the steps: ``workers`` (one step each), or the built-in worker
    (``builtin``), or nobody (``error``, the task's message)."""

    workers: tuple[Member, ...] = ()
    builtin: bool = False
    error: str | None = None


def _why_not(member: Member) -> str | None:
    if member.disabled:
        return "disabled"
    if member.draining:
        return "draining"
    if member.health not in RUNNABLE:
        return member.health
    return None


def select(
    pool: str,
    members: Sequence[Member],
    machine_ids: Sequence[int] | None,
    target_all: bool,
    has_builtin: bool,
    shown_ids: dict[int, str] | None = None,
) -> Selection:
    """The workers of the pool named ``pool`` that run a task (see the module's doc).
    ``shown_ids``: how the ids in ``machine_ids`` are named in messages."""
    shown = shown_ids or {}
    if not members and not machine_ids:
        if has_builtin:
            return Selection(builtin=True)
        error = f"the pool {pool} has no workers and the built-in worker is disabled"
        return Selection(error=error)
    by_id = {member.id: member for member in members}
    if machine_ids:
        problems = []
        for number in machine_ids:
            member = by_id.get(number)
            name = shown.get(number, str(number))
            if member is None:
                problems.append(f"{name} is not a worker of {pool}")
            elif (why := _why_not(member)) is not None:
                problems.append(f"{member.name} ({name}) is {why}")
        if problems:
            return Selection(error="cannot run on the workers asked for: " + "; ".join(problems))
        return Selection(workers=tuple(by_id[number] for number in machine_ids))
    candidates = sorted((m for m in members if _why_not(m) is None), key=lambda m: m.id)
    if not candidates:
        states = ", ".join(f"{m.name} {_why_not(m)}" for m in sorted(members, key=lambda m: m.id))
        return Selection(error=f"no healthy worker in {pool} ({states})")
    if target_all:
        return Selection(workers=tuple(candidates))
    return Selection(workers=(min(candidates, key=lambda m: (m.busy, m.id)),))


def reroute(
    pool: str,
    members: Sequence[Member],
    refused: Member,
    machine_ids: Sequence[int] | None,
    target_all: bool,
) -> Selection:
    """Who runs a step instead of ``refused``, whose agent drains (it refused the start).

    A step of a task that named its workers (``MachineIds``) or runs on every worker
    (``TargetAllWorkers``) is not moved: another worker runs it already, or was not
    asked for; ``error`` says so. Otherwise the least busy candidate but ``refused``
    (which counts as draining whatever ``members`` says), or ``error`` naming each
    member's state if there is none; never the built-in worker."""
    drained = f"{refused.name} is draining (it starts no new scripts)"
    if machine_ids:
        return Selection(error=f"{drained}, and the task asked for it by name")
    if target_all:
        return Selection(error=f"{drained}; the task runs on every worker, so it is not moved")
    others = [m for m in members if m.id != refused.id]
    candidates = [m for m in others if _why_not(m) is None]
    if not candidates:
        states = ", ".join(f"{m.name} {_why_not(m)}" for m in sorted(others, key=lambda m: m.id))
        return Selection(error=f"{drained}, and no other worker in {pool} can run it"
                               + (f" ({states})" if states else ""))  # fmt: skip
    return Selection(workers=(min(candidates, key=lambda m: (m.busy, m.id)),))
