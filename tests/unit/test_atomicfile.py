from __future__ import annotations

import asyncio
import errno
import os
import stat
from pathlib import Path

import pytest

from agent.atomicfile import TEMPORARY_SUFFIX, temporary_beside, write_atomic


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


def test_a_temporary_left_by_a_crash_of_an_earlier_process_with_our_pid_is_no_obstacle(
    tmp_path: Path,
) -> None:
    """In a container the agent is pid 1 every time: a kill -9 mid-write left a
    temporary whose name the next write must not need."""
    target = tmp_path / "tentacle.yaml"
    (tmp_path / f".{target.name}.{os.getpid()}.tmp").write_bytes(b"half")
    write_atomic(target, b"whole")
    assert target.read_bytes() == b"whole"


def test_a_temporary_beside_is_hidden_unique_and_in_the_same_folder(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    with temporary_beside(target) as first, temporary_beside(target) as second:
        assert first != second
        assert first.parent == second.parent == tmp_path
        assert first.name.startswith(".file.bin.")
        assert first.name.endswith(TEMPORARY_SUFFIX)
        first.write_bytes(b"new")
        first.replace(target)
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_a_temporary_beside_is_removed_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def write_half() -> None:
        with temporary_beside(target) as temporary:
            temporary.write_bytes(b"half of the new")
            raise OSError(errno.ENOSPC, "disk full")

    with pytest.raises(OSError, match="disk full"):
        write_half()
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
    assert target.read_bytes() == b"old"


async def test_a_temporary_beside_is_removed_when_the_writer_is_cancelled(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    written = asyncio.Event()

    async def writer() -> None:
        with temporary_beside(target) as temporary:
            temporary.write_bytes(b"half")
            written.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(writer())
    await written.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(tmp_path.iterdir()) == []
