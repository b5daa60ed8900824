"""A hub node's lease on its name: plain rules over a ``hub_nodes`` row and a clock.

A running node renews ``last_seen`` every ``renew_interval``; a row renewed
within the lease time is a live holder, which a second process given the same
name must not displace (it would fail the tasks the first is running). A row
older than that is a holder that died without stopping (kill -9, a lost
machine): it may be taken over, and only then are its unfinished tasks failed.
A node that stops cleanly deletes its row, so the next start takes over at once.
A holder on this very host whose process is gone (its pid not running, or
running a process started at another time: the pid was reused) is dead at
once, whatever its lease says. Each row carries its holder's lease time: a
reader with a shorter one must not judge a slower holder dead.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

DEFAULT_LEASE_SECONDS = 60
MIN_LEASE_SECONDS = 2
MAX_LEASE_SECONDS = 3600
RENEWALS_PER_LEASE = 4  # a holder may miss three renewals (a slow database) and keep it


class LeaseState(enum.Enum):
    FREE = "free"  # no row: nobody holds the name (or its holder stopped cleanly)
    HELD = "held"  # another process renewed it within the lease time
    EXPIRED = "expired"  # its holder stopped renewing it: it may be taken over
    GONE = "gone"  # its holder's process, on this host, is no longer running: taken over
    MINE = "mine"  # this process holds it (the row has its token)


def lease_state(
    row: Mapping[str, Any] | None, now: datetime, lease_seconds: float, token: str | None = None
) -> LeaseState:
    """What the row means for a process with ``token`` at ``now``."""
    if row is None:
        return LeaseState.FREE
    if token is not None and row["token"] == token:
        return LeaseState.MINE
    if now - row["last_seen"] <= timedelta(seconds=held_for(row, lease_seconds)):
        return LeaseState.HELD
    return LeaseState.EXPIRED


def held_for(row: Mapping[str, Any], lease_seconds: float) -> float:
    """The row's own lease time (its holder's setting), else the reader's."""
    return float(row.get("lease_seconds") or lease_seconds)


def expired_before(row: Mapping[str, Any], now: datetime, lease_seconds: float) -> datetime:
    """A row last seen at or before this has expired."""
    return now - timedelta(seconds=held_for(row, lease_seconds))


def renew_interval(lease_seconds: float) -> float:
    """Seconds between a holder's renewals."""
    return lease_seconds / RENEWALS_PER_LEASE


def _ago(row: Mapping[str, Any], now: datetime) -> str:
    seconds = max(0.0, (now - row["last_seen"]).total_seconds())
    return f"{seconds:.0f} s ago ({row['last_seen'].isoformat(timespec='seconds')})"


def refusal(row: Mapping[str, Any], now: datetime) -> str:
    """The one line a start refused by a live holder prints: who holds the name, where,
    since when, and what to do."""
    return (
        f"the hub node {row['name']!r} is running already: process {row['pid']} on"
        f" {row['host']}, last seen {_ago(row, now)}; stop it, or give this hub another"
        " --node-name"
    )


def abandoned(row: Mapping[str, Any], now: datetime, state: LeaseState) -> str:
    """Why a task the dead holder was running is failed by the node taking over (its
    lease EXPIRED, or its process is GONE)."""
    why = (
        "that process is no longer running"
        if state is LeaseState.GONE
        else f"it was last seen {_ago(row, now)} and its lease expired"
    )
    return (
        f"the hub node {row['name']!r} (process {row['pid']} on {row['host']}) stopped while"
        f" this task ran: {why}"
    )
