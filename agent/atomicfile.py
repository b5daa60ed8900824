"""Atomic file replacement: readers see the old file or the new one, never a mix.

Used for every file whose loss or truncation would hurt (configs, identities,
script state). The data goes to a temporary file in the same directory, created
with the final mode from the start (a secret is never world-readable, not even
for an instant), is flushed to disk, then renamed over the target.

Also whole-record appends, for files that only grow (a journal of small
records): cheaper than a new file per record, and never torn by the death of
the writer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

PRIVATE = 0o600
TEMPORARY_SUFFIX = ".partial"
# Added to every open of a file someone else may have planted something at (a
# script run as another uid owns its workspace): never through a link, and never
# waiting for a FIFO's other end (that would stop the agent's whole event loop)
GUARD_FLAGS = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


class NotRegularFile(OSError):
    """A FIFO, socket or device where a regular file was expected."""


def open_regular(path: Path, flags: int, mode: int = PRIVATE) -> int:
    """``os.open(path, flags, mode)`` that only ever yields a regular file's descriptor.

    Never blocks and never follows a link: a link raises OSError (ELOOP), anything
    else that is not a regular file raises :class:`NotRegularFile` (a FIFO without
    a reader may already refuse a write open with ENXIO). The caller treats both as
    the file being absent or damaged.
    """
    fd = os.open(path, flags | GUARD_FLAGS, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path) -> bytes:
    """The content of the regular file ``path`` (OSError as :func:`open_regular`)."""
    with os.fdopen(open_regular(path, os.O_RDONLY), "rb") as file:
        return file.read()


@contextlib.contextmanager
def temporary_beside(path: Path) -> Iterator[Path]:
    """A new temporary path to write ``path``'s next content to, then rename over it.

    It is in the same folder (so the rename is atomic and never crosses a file
    system), hidden and unique (``.NAME.RANDOM.partial``: concurrent writers of
    one file never collide). The block creates the file and renames it; if the
    block raises or is cancelled, whatever it left at the temporary path is
    removed, so a failed write leaves nothing behind.
    """
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}{TEMPORARY_SUFFIX}"
    try:
        yield temporary
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def write_atomic(path: Path, data: bytes, mode: int = PRIVATE, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data``, created with permission bits ``mode``.

    Raises OSError (for instance ENOSPC on a full disk) and then guarantees that
    ``path`` still holds its previous content and that no temporary file is left
    behind. With ``durable`` (the default) the new content and the rename are
    fsynced; without, they survive the process's death but not a power cut.
    """
    with temporary_beside(path) as temporary:
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except OSError as error:  # name the file the caller asked for, not our temporary
            raise OSError(error.errno, error.strerror, str(path)) from None
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed the bits os.open set
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    if durable:
        _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable; a no-op where the OS cannot."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def append_record(path: Path, record: bytes, mode: int = PRIVATE) -> None:
    """Append ``record`` (one line, a few KiB at most) to ``path`` whole or not at all.

    One write call, so the death of the process never leaves half a record;
    a failed or short write (a full disk) is cut off again before OSError is
    raised. Not fsynced: the record survives the process's death, not a power cut.
    """
    # a script run as another uid may put a link or a FIFO in its workspace
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, record)
        except OSError:
            os.ftruncate(fd, size)  # nothing of a failed record may stay
            raise
        if written != len(record):
            os.ftruncate(fd, size)
            raise OSError(errno.ENOSPC, "short write of a record", str(path))
    finally:
        os.close(fd)


def whole_records(path: Path) -> list[bytes]:
    """The complete lines of a file written by :func:`append_record` (none if it is missing).

    A torn last line (a power cut) is cut off the file, so that the next record
    starts on a line of its own.
    """
    try:
        fd = open_regular(path, os.O_RDWR)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "r+b") as file:
        content = file.read()
        good = content.rfind(b"\n") + 1
        if good < len(content):
            os.ftruncate(fd, good)  # the file read, not whatever is at its name now
    return content[:good].splitlines()
