""".NET TimeSpan text, as Octopus's API writes durations: ``[d.]hh:mm:ss[.fffffff]``."""

from __future__ import annotations

import re
from datetime import timedelta

from agent.errors import TentacleError

_TIMESPAN = re.compile(
    r"(?:([0-9]{1,8})\.)?([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.([0-9]{1,7}))?"
)
MAX_DAYS = 10675199  # .NET's TimeSpan.MaxValue, in whole days


class BadTimeSpan(TentacleError):
    pass


def parse_timespan(text: str) -> timedelta:
    """``01:00:00`` -> 1 h, ``1.00:00:00`` -> 1 day; BadTimeSpan for anything else."""
    match = _TIMESPAN.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise BadTimeSpan(f"{text!r} is not a time span (expected [d.]hh:mm:ss, e.g. 01:00:00)")
    days, hours, minutes, seconds, fraction = match.groups()
    if int(days or 0) > MAX_DAYS:
        raise BadTimeSpan(f"{text!r} is longer than a time span can be ({MAX_DAYS} days)")
    if int(minutes) > 59 or int(seconds) > 59 or int(hours) > 23:
        raise BadTimeSpan(f"{text!r} is not a time span: hours < 24, minutes and seconds < 60")
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(7, "0")[:6]),
    )


def format_timespan(value: timedelta) -> str:
    total = int(value.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{days}.{clock}" if days else clock
