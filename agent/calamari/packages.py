"""Extracting packages (zip, nupkg, tar, tar.gz, tar.bz2, tar.xz) safely.

Every entry is checked before anything is written: an entry that would land
outside the destination (``..``, an absolute path, a link pointing out) or is
a device or FIFO is refused, naming it. Extraction goes to a temporary sibling
folder renamed into place at the end, so a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

Progress = Callable[[int, int], None]  # bytes written so far, bytes in all
ZIP_SUFFIXES = (".zip", ".nupkg", ".whl", ".jar", ".war", ".ear")
TAR_SUFFIXES = {
    ".tar": "r:", ".tar.gz": "r:gz", ".tgz": "r:gz", ".tar.bz2": "r:bz2", ".tar.bz": "r:bz2",
    ".tbz": "r:bz2", ".tar.xz": "r:xz", ".txz": "r:xz",
}  # fmt: skip
NUGET_METADATA = ("_rels/", "package/services/metadata/", "[content_types].xml")
CHUNK = 1024 * 1024


class PackageError(Exception):
    """A package cannot be extracted; the message names the entry or the problem."""


@dataclass(frozen=True)
class Entry:
    name: str  # relative, normalised, with '/' separators
    size: int
    kind: str  # "file", "dir", "symlink", "hardlink"
    target: str = ""  # for links


def package_kind(package: Path) -> str:
    """``zip`` or a tarfile mode, from the file name. Raises PackageError."""
    name = package.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    for suffix, mode in sorted(TAR_SUFFIXES.items(), key=lambda item: -len(item[0])):
        if name.endswith(suffix):
            return mode
    known = ", ".join(sorted({*ZIP_SUFFIXES, *TAR_SUFFIXES}))
    raise PackageError(f"{package.name}: unknown package format (expected one of {known})")


def extract(package: Path, destination: Path, progress: Progress | None = None) -> int:
    """Extract ``package`` into ``destination`` (absent or empty); returns the number of files.

    Raises PackageError (unsafe entry, unknown format, damaged archive, not
    enough space) without leaving anything in ``destination``.
    """
    kind = package_kind(package)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise PackageError(f"destination {destination} exists and is not an empty folder")
    try:
        entries = list(_zip_entries(package) if kind == "zip" else _tar_entries(package, kind))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise PackageError(
            f"{package.name} is not a readable {kind.strip('r:') or 'tar'} archive: {error}"
        ) from None
    if package.name.lower().endswith(".nupkg"):
        entries = [entry for entry in entries if not _is_nuget_metadata(entry.name)]
    for entry in entries:
        _check(entry)
    total = sum(entry.size for entry in entries if entry.kind == "file")
    destination.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(destination.parent).free
    if total > free:
        raise PackageError(
            f"{package.name} needs {total} bytes but {destination.parent} has {free} free"
        )
    staging = destination.parent / f".{destination.name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        if kind == "zip":
            _extract_zip(package, entries, staging, total, progress)
        else:
            _extract_tar(package, kind, entries, staging, total, progress)
        if destination.exists():
            destination.rmdir()
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sum(1 for entry in entries if entry.kind == "file")


def _is_nuget_metadata(name: str) -> bool:
    lowered = name.lower()
    return (
        lowered.startswith(NUGET_METADATA)
        or lowered.endswith(".nupkg.sha512")
        or lowered == "[content_types].xml"
    )


def _check(entry: Entry) -> None:
    """Raise PackageError if ``entry`` could write outside the destination."""
    if entry.kind == "special":
        raise PackageError(
            f"entry {entry.name!r} is a device or FIFO; "
            "packages may hold only files, folders and links"
        )
    _inside(entry.name, entry.name, "lands")
    if entry.kind == "symlink":
        if entry.target.startswith("/") or PurePosixPath(entry.target).is_absolute():
            raise PackageError(
                f"entry {entry.name!r} is a link to the absolute path {entry.target!r}"
            )
        _inside(posixpath.join(posixpath.dirname(entry.name), entry.target), entry.name, "points")
    elif entry.kind == "hardlink":
        _inside(entry.target, entry.name, "points")


def _inside(path: str, name: str, verb: str) -> None:
    if path.startswith("/") or (len(path) > 1 and path[1] == ":") or "\\" in path:
        raise PackageError(
            f"entry {name!r} {verb} outside the destination (absolute path {path!r})"
        )
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise PackageError(f"entry {name!r} {verb} outside the destination ({path!r})")


def _zip_entries(package: Path) -> Iterator[Entry]:
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                yield Entry(info.filename, 0, "symlink", archive.read(info).decode())
            elif info.is_dir():
                yield Entry(info.filename.rstrip("/"), 0, "dir")
            else:
                yield Entry(info.filename, info.file_size, "file")


def _tar_entries(package: Path, mode: str) -> Iterator[Entry]:
    with tarfile.open(package, mode) as archive:  # type: ignore[call-overload]
        for member in archive:
            if member.isreg():
                yield Entry(member.name, member.size, "file")
            elif member.isdir():
                yield Entry(member.name, 0, "dir")
            elif member.issym():
                yield Entry(member.name, 0, "symlink", member.linkname)
            elif member.islnk():
                yield Entry(member.name, 0, "hardlink", member.linkname)
            else:
                yield Entry(member.name, 0, "special")


def _target(staging: Path, name: str, link: str | None = None) -> Path:
    """Where ``name`` goes, after checking that it (and ``link``, for a symlink) really
    stays inside ``staging`` once the links extracted before it are followed."""
    target = staging / name
    root = os.path.realpath(staging)
    real = (
        os.path.realpath(target.parent / link)
        if link is not None
        else os.path.realpath(target.parent)
    )
    if real != root and not real.startswith(root + os.sep):
        raise PackageError(f"entry {name!r} leads outside the destination through a link")
    return target


class _Counter:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done, self.total, self.progress = 0, total, progress

    def copy(self, source: IO[bytes], target: Path) -> None:
        with target.open("xb") as out:
            while chunk := source.read(CHUNK):
                out.write(chunk)
                self.done += len(chunk)
                if self.progress is not None:
                    self.progress(self.done, self.total)


def _extract_zip(
    package: Path, entries: list[Entry], staging: Path, total: int, progress: Progress | None
) -> None:
    wanted = {entry.name: entry for entry in entries}
    counter = _Counter(total, progress)
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            name = info.filename.rstrip("/") if info.is_dir() else info.filename
            entry = wanted.get(name)
            if entry is None:
                continue
            target = _target(staging, entry.name, entry.target if entry.kind == "symlink" else None)
            if entry.kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.kind == "symlink":
                os.symlink(entry.target, target)
                continue
            with archive.open(info) as source:
                counter.copy(source, target)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode & 0o755 | 0o600)


def _extract_tar(
    package: Path,
    mode: str,
    entries: list[Entry],
    staging: Path,
    total: int,
    progress: Progress | None,
) -> None:
    counter = _Counter(total, progress)
    with tarfile.open(package, mode) as archive:  # type: ignore[call-overload]
        for member in archive:
            if member.isreg():
                target = _target(staging, member.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                counter.copy(source, target)
                target.chmod(member.mode & 0o755 | 0o600)
            else:
                # folders and links, through the standard library's own guard as well
                _target(staging, member.name, member.linkname if member.issym() else None)
                try:
                    with contextlib.suppress(FileExistsError):
                        archive.extract(member, staging, set_attrs=False, filter="data")
                except tarfile.FilterError as error:
                    raise PackageError(f"entry {member.name!r} refused: {error}") from None
