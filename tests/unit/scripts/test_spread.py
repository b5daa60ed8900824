"""The top-directory flag on a real folder: set where the filesystem has it, harmless elsewhere."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.scripts.spread import spread_subfolders


def lsattr(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["lsattr", "-d", str(folder)], check=False, capture_output=True,
                          text=True)  # fmt: skip


def test_the_flag_is_set_and_read_back_by_lsattr(tmp_path: Path) -> None:
    listed = lsattr(tmp_path)
    if listed.returncode != 0:
        pytest.skip(f"no file attributes on {tmp_path}: {listed.stderr.strip()}")
    assert spread_subfolders(tmp_path)
    assert spread_subfolders(tmp_path)  # again: already set
    flags = lsattr(tmp_path)
    assert "T" in flags.stdout.split()[0], flags.stdout


def test_a_filesystem_without_it_or_no_folder_is_no_error(tmp_path: Path) -> None:
    if os.path.isdir("/dev/shm"):
        memory = Path("/dev/shm") / f"spread-{os.getpid()}"
        memory.mkdir()
        try:
            assert spread_subfolders(memory) is False  # tmpfs has no such flag
        finally:
            memory.rmdir()
    assert spread_subfolders(tmp_path / "missing") is False
