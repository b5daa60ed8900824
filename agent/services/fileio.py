"""Blocking file work for the file service, kept off the event loop and checked.

Three things the file service needs and asyncio does not give:

- ``in_thread``: run a blocking call in a worker thread, and on cancellation
  still wait for it, so a descriptor is never closed (and its number reused)
  while a thread is writing to it.
- ``open_regular``: open a file for reading without ever blocking in
  ``open()`` (a FIFO with no writer would block it forever), refusing
  anything but a regular file and naming what it is.
- ``SpaceLedger``: bytes promised to uploads in flight, per file system, so
  two concurrent uploads cannot both pass a free-space check that only one
  of them fits.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from agent.errors import CallError
from agent.protocol.messages import NOT_FOUND, REFUSED

T = TypeVar("T")

INSUFFICIENT_SPACE = "insufficient_space"

# A full disk, or a full quota: both mean "not enough space" to the caller.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


async def in_thread(function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` in a worker thread.

    If the caller is cancelled the thread cannot be stopped, so this waits for
    it to finish before re-raising CancelledError: whatever the thread uses
    (a descriptor) stays valid until it is done with it.
    """
    task = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():  # bounded: the thread's call ends on its own
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        raise


def file_kind(mode: int) -> str:
    """What a file of ``mode`` is, for messages: "a FIFO (named pipe)", "a directory"..."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def refuse_unless_regular(path: Path, mode: int, action: str) -> None:
    """Raises CallError(refused) naming the file type unless ``mode`` is a regular file's."""
    if not stat.S_ISREG(mode):
        raise CallError(REFUSED, f"cannot {action} {path}: it is {file_kind(mode)}, "
                                 "not a regular file")  # fmt: skip


def open_regular(path: Path) -> tuple[int, int]:
    """Open ``path`` for reading; returns ``(descriptor, size)``. Blocking: call in a thread.

    Never blocks in ``open()``: the type is checked with lstat before opening
    (so a device is not even opened), and the open itself is non-blocking and
    does not follow a link, with fstat checking again what was opened (a file
    swapped in between). Raises CallError not_found, or refused naming the type.
    """
    try:
        refuse_unless_regular(path, os.lstat(path).st_mode, "download")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CallError(NOT_FOUND, f"no file at {path}") from None
    except OSError as error:
        raise CallError(REFUSED, f"cannot read {path}: {error.strerror}") from None
    try:
        opened = os.fstat(fd)
        refuse_unless_regular(path, opened.st_mode, "download")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, opened.st_size


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data``: a short write is continued, never ignored."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # a regular file that takes nothing is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Reservation:
    """Space one upload still needs: what it announced less what it has written."""

    def __init__(self, ledger: SpaceLedger, device: int, length: int) -> None:
        self._ledger = ledger
        self._device = device
        self.outstanding = length

    def wrote(self, count: int) -> None:
        """``count`` more bytes are on disk: they now show in the free space itself."""
        count = min(count, self.outstanding)
        self.outstanding -= count
        self._ledger.release(self._device, count)


class SpaceLedger:
    """Bytes promised to uploads in flight, per file system (``st_dev``), in this process.

    Check and reservation happen in one step without an ``await`` between
    them, so on one event loop two uploads cannot both pass the same check.
    """

    def __init__(self) -> None:
        self._promised: dict[int, int] = {}

    def promised(self, device: int) -> int:
        return self._promised.get(device, 0)

    def release(self, device: int, count: int) -> None:
        left = self._promised.get(device, 0) - count
        if left > 0:
            self._promised[device] = left
        else:
            self._promised.pop(device, None)

    @contextlib.contextmanager
    def reserve(
        self, device: int, length: int, free: int, needed: int, describe: Callable[[int, int], str]
    ) -> Iterator[Reservation]:
        """Promise ``length`` bytes on ``device`` for the ``with`` block.

        ``free`` is the file system's free space now and ``needed`` what the
        upload requires of it; space other uploads were promised but have not
        written yet does not count as free. Raises CallError(insufficient_space)
        with ``describe(free, promised)`` if it does not fit.
        """
        promised = self.promised(device)
        if free - promised < needed:
            raise CallError(INSUFFICIENT_SPACE, describe(free, promised))
        self._promised[device] = promised + length
        reservation = Reservation(self, device, length)
        try:
            yield reservation
        finally:
            reservation.wrote(reservation.outstanding)
