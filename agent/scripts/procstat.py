"""One reader for /proc/PID/stat: the fields the script runner needs, parsed once.

The second field (the command name, in parentheses) may itself hold spaces
and parentheses, so the fields are counted from the *last* ``)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# Indexes after the command name: proc(5) numbers them 3 (state) onwards.
_STATE, _SESSION, _START_TIME = 0, 3, 19


@dataclass(frozen=True)
class ProcessStat:
    """``state`` (R, S, Z...), ``session`` id, ``start_time`` in clock ticks since boot."""

    state: str
    session: int
    start_time: int

    @property
    def is_zombie(self) -> bool:
        return self.state == "Z"


def parse_stat(text: str) -> ProcessStat:
    """The fields of one /proc/PID/stat line. Raises ValueError if it is not one."""
    try:
        fields = text[text.rindex(")") + 2 :].split()
        return ProcessStat(fields[_STATE], int(fields[_SESSION]), int(fields[_START_TIME]))
    except (IndexError, ValueError):
        raise ValueError(f"not a /proc/PID/stat line: {text[:80]!r}") from None


def read_stat(pid: int | str, proc: Path = PROC) -> ProcessStat | None:
    """The process's stat, or None if there is no such process (any more)."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return parse_stat(text)
