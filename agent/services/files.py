"""The file transfer service: upload into, and download from, the allowed roots.

An upload goes to a hidden temporary file beside the target and is renamed
over it only once every byte has arrived, the length matches and the bytes are
on disk (fsync), so a failed, cancelled or cut-off upload leaves no partial
file behind and a success means the file is whole and durable. Blocking file
work runs in worker threads (``agent.services.fileio``): one slow or stuck
file never holds up the event loop, and so every other caller.

The instance's own files (its identity, configuration and state) are never
read or written here, even inside the home, and the scripts' ``Work`` folder
is not written: its state files decide what a script reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from agent.atomicfile import temporary_beside
from agent.errors import CallError
from agent.filechunks import read_chunks
from agent.protocol.calls import IncomingCall, Reply
from agent.protocol.messages import BAD_PARAMS, REFUSED
from agent.protocol.services import Download, DownloadRequest, Uploaded, UploadRequest
from agent.scripts.paths import open_folder, parts_below, resolve_within
from agent.scripts.users import DEFAULT_GROUP, GroupAccount, GroupUsers, check_group
from agent.services.fileio import (
    INSUFFICIENT_SPACE,
    NO_SPACE_ERRNOS,
    Reservation,
    SpaceLedger,
    file_kind,
    fsync_directory,
    in_thread,
    open_regular,
    refuse_unless_regular,
    write_all,
)

if TYPE_CHECKING:
    from agent.observability.metrics import AgentMetrics

__all__ = ["INSUFFICIENT_SPACE", "FileService", "required_free_space"]

DOWNLOAD_CHUNK = 256 * 1024
WRITE_BATCH = 1024 * 1024  # stream chunks are written in batches: fewer thread hand-offs
MIB = 1024 * 1024


def required_free_space(length: int) -> int:
    """Free bytes an upload of ``length`` needs: the file plus 10% plus 1 MiB (Tentacle's rule)."""
    return length + length // 10 + MIB


class FileService:
    """``files.upload`` and ``files.download`` within ``home`` and ``roots``.

    ``private`` maps the instance's own files (identity, configuration, state)
    to what each is; they are refused both ways. ``script_folders`` are
    folders whose contents only the agent writes (the scripts' ``Work``):
    uploads into them are refused, downloads are allowed.
    """

    def __init__(
        self,
        home: Path,
        roots: Sequence[Path] = (),
        private: Mapping[Path, str] | None = None,
        script_folders: Sequence[Path] = (),
        users: GroupUsers | None = None,
        refuse_groups: str | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        """``metrics``: where the bytes uploaded (once whole) and downloaded (as sent)
        are counted (None: not counted)."""
        self.metrics = metrics
        self.home = home
        self.roots = tuple(roots)
        self.private = {path.resolve(): what for path, what in (private or {}).items()}
        self.script_folders = tuple(folder.resolve() for folder in script_folders)
        self._ledger = SpaceLedger()
        self.users = users  # scripts run as their groups' uids: an upload may be a group's
        self.refuse_groups = refuse_groups  # why an upload naming a group is refused

    def methods(self) -> dict[str, Callable[[IncomingCall], Any]]:
        return {"upload": self.upload, "download": self.download}

    async def upload(self, call: IncomingCall) -> Reply:
        """Params ``Path`` and ``Length``, data on the call's stream.

        Returns ``{FullPath, Length, Sha256}`` once the file is whole, synced
        and in place. Raises CallError refused (path outside the roots, the
        instance's own files, the scripts' Work folder, a directory, FIFO or
        device), insufficient_space (before writing, or when the disk fills
        while writing: nothing is left behind), bad_params (missing stream, a
        negative length, or a length that does not match what arrived).
        """
        request = UploadRequest.parse(call.params)
        group = self._group(request.isolation_group) or self._default_group(request.path)
        if group is None:
            target = resolve_within(request.path, self.home, self.roots)
        else:  # the group's own folder only: its scripts' TentacleHome (the package cache)
            target = resolve_within(request.path, group.folder, ())
        length = request.length
        if call.stream is None:
            raise CallError(BAD_PARAMS, "files.upload needs the file's bytes on a stream")
        self._refuse_private(target, "write")
        self._refuse_script_folders(target)
        # Metadata work stays on the loop: lstat and mkdir do not block on a FIFO
        # or device, and the temporary then exists as soon as the call is taken.
        _check_upload_target(target)
        with self._reserve(target, length) as reservation:
            if group is None:
                target.parent.mkdir(parents=True, exist_ok=True)
                with temporary_beside(target) as temporary:
                    fd = _create(temporary)
                    digest = await _receive(call, fd, target, length, reservation)
                    await in_thread(_put_in_place, temporary, target)
            else:
                digest = await _receive_into_group(call, group, target, length, reservation)
        if self.metrics is not None:
            self.metrics.transfer_bytes.labels("upload").inc(length)
        return Reply(Uploaded(str(target), length, digest).to_wire())

    def _group(self, group: str | None) -> GroupAccount | None:
        """The account of an upload's IsolationGroup (None without one, or when scripts all
        run as the agent's user by the operator's choice); CallError as scripts.start's."""
        if group is None:
            return None
        check_group(group)
        if self.refuse_groups is not None:
            raise CallError(REFUSED, f"IsolationGroup {group!r}: {self.refuse_groups}")
        return None if self.users is None else self.users.account(group)

    def _default_group(self, path: str) -> GroupAccount | None:
        """The default group's account for a relative path sent without a group while
        scripts run as their groups' uids: such a path means what a script without a
        group sees as ``$TentacleHome`` (its group folder), not the agent's home, which
        no script may read. None otherwise (an absolute path keeps its meaning)."""
        if self.users is None or os.path.isabs(path.replace("\\", "/")):
            return None
        return self.users.account(DEFAULT_GROUP)

    async def download(self, call: IncomingCall) -> Reply:
        """Param ``Path``. Returns ``{FullPath, Length}`` and the bytes on a stream.

        Raises CallError not_found if there is no such file, refused if the path
        is outside the roots, is one of the instance's own files, or is not a
        regular file (a FIFO is refused at once, without waiting for a writer).
        """
        request = DownloadRequest.parse(call.params)
        path = request.path
        owner = self._group(request.isolation_group)
        group = owner if owner is not None else self._default_group(path)
        if group is None or os.path.isabs(path.replace("\\", "/")):
            target = resolve_within(path, self.home, self.roots)
        else:  # as upload's: the group's folder, its scripts' TentacleHome
            target = resolve_within(path, group.folder, ())
        self._refuse_private(target, "read")
        fd, size = await in_thread(open_regular, target)
        if owner is not None:
            _refuse_unless_owned(fd, target, owner)
        file = os.fdopen(fd, "rb", buffering=0)  # closed by the stream, or when dropped
        return Reply(Download(str(target), size).to_wire(), _read_chunks(file, size, self.metrics))

    def _refuse_private(self, target: Path, verb: str) -> None:
        for path, what in self.private.items():
            if target == path or _same_file(target, path):
                message = f"{target} is this instance's {what}; the file service never {verb}s it"
                raise CallError(REFUSED, message)

    def _refuse_script_folders(self, target: Path) -> None:
        for folder in self.script_folders:
            if target == folder or target.is_relative_to(folder):
                raise CallError(
                    REFUSED,
                    f"{target} is inside {folder}, which only the script service writes (its "
                    "state, exit codes and logs); send a script's files with scripts.start Files "
                    "(`tentacle client run-script --file PATH`)",
                )

    def _reserve(self, target: Path, length: int) -> contextlib.AbstractContextManager[Reservation]:
        """Check the free space and promise ``length`` bytes of it to this upload.

        The free space is read here, on the loop, right before the ledger's
        check: a read in a thread could be stale by the time the check runs.
        """
        existing = next(p for p in (target.parent, *target.parents) if p.exists())
        device = os.stat(existing).st_dev
        free = shutil.disk_usage(existing).free
        needed = required_free_space(length)

        def describe(free: int, promised: int) -> str:
            others = f" ({promised} of them promised to uploads in flight)" if promised else ""
            return (
                f"uploading {length} bytes to {target} needs {needed} bytes free, "
                f"but only {free} are{others}"
            )

        return self._ledger.reserve(device, length, free, needed, describe)


def _refuse_unless_owned(fd: int, target: Path, group: GroupAccount) -> None:
    """Close ``fd`` and refuse unless the group's uid owns the file it opened (not
    through a link: open_regular's O_NOFOLLOW): a group's script names only its own
    files, as it cannot make a file another uid's nor reach another group's 0700
    folders to link one (an artifact naming another project's file is refused)."""
    owner = os.fstat(fd).st_uid
    if owner != group.uid:
        os.close(fd)
        raise CallError(
            REFUSED,
            f"{target} is not group {group.group!r}'s file (owned by uid {owner}, not "
            f"{group.uid}): a download naming an IsolationGroup serves only that group's files",
        )


def _same_file(one: Path, other: Path) -> bool:
    """True if both exist and are one file (a hard link counts)."""
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


def _check_upload_target(target: Path) -> None:
    """Refuse replacing anything but a regular file (a directory, FIFO, device...),
    and a target below something that is not a folder."""
    try:
        mode = os.lstat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        parent = next(p for p in target.parents if p.exists())
        if not parent.is_dir():
            kind = file_kind(os.lstat(parent).st_mode)
            raise CallError(REFUSED, f"cannot upload to {target}: {parent} is {kind}") from None
        return
    refuse_unless_regular(target, mode, "upload to")


TEMPORARY_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _create(temporary: Path | str, folder: int | None = None) -> int:
    """A new temporary (never an existing file, never through a link), 0600.
    Creating a new regular file does not block: on the loop, a cancel cannot lose the fd."""
    return os.open(temporary, TEMPORARY_FLAGS, 0o600, dir_fd=folder)


async def _receive_into_group(
    call: IncomingCall, group: GroupAccount, target: Path, length: int, reservation: Reservation
) -> str:
    """Receive an upload into ``target`` inside the group's folder, which the group's
    scripts write: every folder is opened by descriptor without following links (made
    the group's when missing), the temporary is created beside the target relative to
    its folder's descriptor and given to the group by that descriptor (fchown), and
    renamed relative to it; a folder or temporary swapped for a link meanwhile is never
    followed, so no other file is ever given to the group's uid. Returns the SHA-256."""
    root = group.folder.resolve()
    *parents, name = parts_below(target, root)
    folder = open_folder(root, parents, (group.uid, group.gid), create=True)
    temporary = f".{name}.{secrets.token_hex(6)}.partial"
    try:
        fd = _create(temporary, folder)
        try:
            os.fchown(fd, group.uid, group.gid)
        except BaseException:
            os.close(fd)
            raise
        digest = await _receive(call, fd, target, length, reservation)
        await in_thread(_replace_within, folder, temporary, name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=folder)
        raise
    finally:
        os.close(folder)
    return digest


def _replace_within(folder: int, temporary: str, name: str, target: Path) -> None:
    """Rename ``temporary`` over ``name``, both in the open ``folder``, and sync it."""
    try:
        os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        os.fsync(folder)
    except OSError as error:
        if error.errno in NO_SPACE_ERRNOS:
            message = f"no space to put {target} in place: {error.strerror}"
            raise CallError(INSUFFICIENT_SPACE, message) from None
        raise


async def _receive(
    call: IncomingCall, fd: int, target: Path, length: int, reservation: Reservation
) -> str:
    """Store the call's stream in the new temporary ``fd`` (closed here), synced to
    disk; returns its SHA-256.

    Every write is checked (a short write is continued); a full disk is
    CallError(insufficient_space). The caller removes the temporary on failure.
    """
    assert call.stream is not None
    digest = hashlib.sha256()
    received = 0
    batch: list[bytes] = []
    batched = 0
    try:
        async for chunk in call.stream:
            received += len(chunk)
            if received > length:
                raise CallError(BAD_PARAMS, f"more than the announced Length of {length} bytes")
            batch.append(chunk)
            batched += len(chunk)
            if batched >= WRITE_BATCH:
                await _write(fd, batch, digest, target, received - batched, length)
                reservation.wrote(batched)
                batch, batched = [], 0
        await _write(fd, batch, digest, target, received - batched, length)
        reservation.wrote(batched)
        if received != length:
            raise CallError(BAD_PARAMS, f"received {received} bytes, but Length said {length}")
        await _no_space_is_refused(in_thread(os.fsync, fd), target, received, length)
    finally:
        os.close(fd)
    return digest.hexdigest()


async def _write(
    fd: int, batch: list[bytes], digest: Any, target: Path, before: int, length: int
) -> None:
    def write() -> None:
        for chunk in batch:
            write_all(fd, chunk)
            digest.update(chunk)  # hashlib releases the GIL: this costs the loop nothing

    if batch:
        await _no_space_is_refused(in_thread(write), target, before, length)


async def _no_space_is_refused(
    work: Awaitable[object], target: Path, written: int, length: int
) -> None:
    """Await ``work``; a full disk or quota becomes CallError(insufficient_space)."""
    try:
        await work
    except OSError as error:
        if error.errno not in NO_SPACE_ERRNOS:
            raise
        raise CallError(
            INSUFFICIENT_SPACE,
            f"the disk holding {target} filled up while uploading ({error.strerror}) after "
            f"about {written} of {length} bytes; nothing was kept",
        ) from None


def _put_in_place(temporary: Path, target: Path) -> None:
    """Rename the synced temporary over the target, and sync the folder so the rename lasts."""
    try:
        os.replace(temporary, target)
        fsync_directory(target.parent)
    except OSError as error:
        if error.errno in NO_SPACE_ERRNOS:
            message = f"no space to put {target} in place: {error.strerror}"
            raise CallError(INSUFFICIENT_SPACE, message) from None
        raise


async def _read_chunks(
    file: BinaryIO, size: int, metrics: AgentMetrics | None = None
) -> AsyncIterator[bytes]:
    """Up to ``size`` bytes of ``file`` (the Length announced), read in a worker thread;
    each chunk counted in ``metrics`` as it is handed to the stream."""
    with file:
        chunks = read_chunks(file, DOWNLOAD_CHUNK, size)
        while chunk := await in_thread(next, chunks, b""):
            if metrics is not None:
                metrics.transfer_bytes.labels("download").inc(len(chunk))
            yield chunk
