from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from agent.atomicfile import write_atomic


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_new_file_with_private_mode_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    old_umask = os.umask(0)
    try:
        write_atomic(target, b"key")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"key"
    assert mode_of(target) == 0o600


def test_replaces_content_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")
    target.chmod(0o666)
    write_atomic(target, b"new", mode=0o644)
    assert target.read_bytes() == b"new"
    assert mode_of(target) == 0o644


@pytest.mark.parametrize("failing_call", ["write", "fsync"])
def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: str
) -> None:
    target = tmp_path / "config.yaml"
    target.write_bytes(b"old content")
    real_write = os.write

    def disk_full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def half_then_full(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", disk_full)
        return real_write(fd, bytes(data[: len(data) // 2]))

    monkeypatch.setattr(os, failing_call, half_then_full if failing_call == "write" else disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new content that will not fit")
    monkeypatch.undo()
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_missing_directory_raises_without_creating_anything(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "file", b"x")
    assert list(tmp_path.iterdir()) == []
