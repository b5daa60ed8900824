"""A real small filesystem (tmpfs) for full-disk tests; needs root (as the tests and CI run)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(directory: Path, mebibytes: int) -> Iterator[Path]:
    """Mount a tmpfs of ``mebibytes`` MiB on ``directory`` (created), unmounted after.

    Fails the test with what to do if mounting is not permitted.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={mebibytes}m,mode=0700", "tmpfs",
               str(directory)]  # fmt: skip
    mounted = subprocess.run(command, check=False, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(
            "full-disk tests mount a small tmpfs and need root with CAP_SYS_ADMIN: "
            f"{' '.join(command)} failed: {mounted.stderr.strip() or mounted.returncode}"
        )
    try:
        yield directory
    finally:
        unmounted = subprocess.run(["umount", str(directory)], check=False, capture_output=True,
                                   text=True)  # fmt: skip
        if unmounted.returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=False)
            pytest.fail(f"could not unmount {directory} (files still open?): "
                        f"{unmounted.stderr.strip()}")  # fmt: skip


def fill(path: Path) -> None:
    """Write ``path`` until its filesystem has not one byte left (bounded by its size)."""
    with path.open("wb", buffering=0) as file:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                for _ in range(1 << 16):
                    if file.write(b"\0" * size) == 0:
                        break
