"""/proc/PID/stat, read for real processes: our own, a zombie, one that is gone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.scripts.procstat import parse_stat, read_stat
from tests.helpers.eventually import eventually


def test_our_own_process() -> None:
    stat = read_stat(os.getpid())
    assert stat is not None
    assert stat.session == os.getsid(0)
    assert stat.state in "RS"
    assert not stat.is_zombie
    assert read_stat(os.getpid()) == stat  # the start time tells a reused pid apart: stable


async def test_a_child_that_exited_unreaped_is_a_zombie_and_a_reaped_one_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        await eventually(
            lambda: (stat := read_stat(child.pid)) is not None and stat.is_zombie,
            "the child to exit and wait to be reaped",
        )
    finally:
        child.wait()
    assert read_stat(child.pid) is None


def test_a_command_name_with_spaces_and_parentheses() -> None:
    fields = ["S", "1", "42", "43", *["0"] * 15, "987654"]
    stat = parse_stat(f"42 (a) b (c)) {' '.join(fields)} 0 0\n")
    assert (stat.state, stat.session, stat.start_time) == ("S", 43, 987654)


def test_a_line_that_is_not_a_stat_line_is_named() -> None:
    with pytest.raises(ValueError, match="not a /proc/PID/stat line: 'garbage'"):
        parse_stat("garbage")
