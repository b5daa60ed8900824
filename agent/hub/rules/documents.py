"""What may be changed or deleted: the rules that keep one default pool and policy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """Why a change is refused: the API answers 409 with ``message``."""

    message: str


def pool_deletion(name: str, is_default: bool, workers: int) -> Refusal | None:
    if is_default:
        return Refusal(f"{name!r} is the default worker pool: make another pool the default first")
    if workers:
        return Refusal(
            f"{name!r} still has {workers} worker(s): move or delete them before deleting the pool"
        )
    return None


def policy_deletion(name: str, is_default: bool, workers: int) -> Refusal | None:
    if is_default:
        return Refusal(f"{name!r} is the default machine policy and cannot be deleted")
    if workers:
        return Refusal(
            f"{name!r} is the policy of {workers} worker(s): give them another policy first"
        )
    return None


def default_change(name: str, was_default: bool, wants_default: bool) -> Refusal | None:
    """A default stops being one only by another becoming the default."""
    if was_default and not wants_default:
        return Refusal(
            f"{name!r} is the default: make another one the default instead of unsetting it"
        )
    return None
