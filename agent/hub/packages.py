"""The hub's built-in package repository: content-addressed files in ``<home>/Packages``.

A package's bytes are stored once per content, as ``Packages/<sha256>`` (lower-case
hex); the database says which package id and version name which hash
(agent.hub.store.packages). A file arrives as a stream: it is written to a
temporary file beside its final place, hashed while it is written (memory stays
one chunk whatever the size), and renamed to its hash only once complete, so a
cut-off or refused upload leaves nothing behind and a reader never sees half a
package. Id and version come from the file name exactly as the executor reads
them (agent.calamari.deployment.package_identity), so a package the hub accepts
is one ``tentacle calamari deploy-package`` can install.
"""

from __future__ import annotations

import asyncio
import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import os
import re
import secrets
import tarfile
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from agent.calamari.deployment import DeploymentError, package_identity
from agent.calamari.packages import TAR_SUFFIXES, ZIP_SUFFIXES
from agent.errors import TentacleError

FOLDER = "Packages"
DEFAULT_MAX_BYTES = 2 * 1024**3  # 2 GiB: a package bigger is refused (413)
MAX_ID = 200  # packages.package_id
MAX_VERSION = 100  # packages.version
SUFFIXES = tuple(sorted((*ZIP_SUFFIXES, *TAR_SUFFIXES), key=len, reverse=True))
_INCOMING = ".incoming-"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[A-Za-z0-9_.-]+")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+-]*")


class PackageNameError(TentacleError):
    """A file name the repository cannot take; the message says what is wrong and
    what was expected."""


class PackageTooLarge(TentacleError):
    """The package is bigger than the repository's limit."""


class PackageContentError(TentacleError):
    """The bytes are not an archive of the kind the file name says, or they did not
    all arrive; the message says which."""


_DECOMPRESSED: dict[str, Callable[[Path], io.BufferedIOBase]] = {
    "r:gz": gzip.GzipFile, "r:bz2": bz2.BZ2File, "r:xz": lzma.LZMAFile,
}  # fmt: skip


def _read_compressed(path: Path, kind: str) -> None:
    """Decompress the whole file, a chunk at a time (tarfile stops at the archive's
    end marker: a stream cut after it, its checksum missing, would pass)."""
    opener = _DECOMPRESSED.get(kind)
    if opener is not None:
        with opener(path) as stream:
            while stream.read(1024 * 1024):
                pass


def check_archive(path: Path, extension: str) -> None:
    """PackageContentError unless ``path`` is an archive the executor can extract as
    its ``extension`` says: a zip (.nupkg, .jar... are zips) whose central directory
    reads, or a tar (compressed as the extension says) whose every member header
    reads (a truncated one does not)."""
    kind = "zip" if extension in ZIP_SUFFIXES else TAR_SUFFIXES[extension]
    try:
        if kind == "zip":
            if not zipfile.is_zipfile(path):
                raise PackageContentError(f"the file is not a zip archive, as {extension} says")
            with zipfile.ZipFile(path) as archive:
                archive.infolist()
        else:
            _read_compressed(path, kind)
            with tarfile.open(path, kind) as archive:  # type: ignore[call-overload]
                for _ in archive:
                    pass
    except PackageContentError:
        raise
    except (
        zipfile.BadZipFile, tarfile.TarError, lzma.LZMAError, EOFError, OSError, ValueError
    ) as error:  # fmt: skip
        raise PackageContentError(
            f"the file is not a whole {extension} archive ({error})"
        ) from None


@dataclass(frozen=True)
class PackageName:
    """What a package's file name says: ``Acme.Web.1.2.3.tar.gz``."""

    package_id: str
    version: str
    extension: str  # ".zip", ".tar.gz"... as written in the name, lower-case


@dataclass(frozen=True)
class Stored:
    """A package's content, in the repository."""

    sha256: str
    size: int
    path: Path


def parse_name(file_name: str) -> PackageName:
    """The id, version and extension of a package's file name, read as the executor
    reads them; PackageNameError naming what is wrong."""
    name = file_name
    if not name:
        raise PackageNameError(
            "the uploaded file has no name: send it as Id.1.2.3.zip (the name gives the "
            "package's id and version)"
        )
    if "/" in name or "\\" in name:
        # not reduced to its last part: a name with a path is a client's mistake
        # (or an attempt), and the name is what the package is known by
        raise PackageNameError(
            f"{name[:200]!r} is a path: send the file's name only, as Id.1.2.3.zip"
        )
    extension = next((s for s in SUFFIXES if name.lower().endswith(s)), None)
    if extension is None:
        raise PackageNameError(
            f"{name!r} has no package extension the executor can extract: expected one of "
            f"{', '.join(sorted(SUFFIXES))}"
        )
    try:
        package_id, version = package_identity(Path(name))
    except DeploymentError as error:
        raise PackageNameError(str(error)) from None
    wrong = _problems(package_id, version)
    if wrong:
        raise PackageNameError(f"{name!r}: {'; '.join(wrong)}")
    return PackageName(package_id, version, extension)


def _problems(package_id: str, version: str) -> list[str]:
    """What is wrong with an id and version the name gave (they end up in paths,
    headers and URLs: NuGet's characters only)."""
    problems = []
    if not _ID.fullmatch(package_id) or package_id[0] in ".-":
        problems.append(
            f"its id {package_id!r} must be letters, digits, '.', '-' and '_', starting "
            "with a letter, digit or '_'"
        )
    elif len(package_id) > MAX_ID:
        problems.append(f"its id is longer than {MAX_ID} characters")
    if not _VERSION.fullmatch(version):
        problems.append(f"its version {version!r} must be letters, digits, '.', '-' and '+'")
    elif len(version) > MAX_VERSION:
        problems.append(f"its version is longer than {MAX_VERSION} characters")
    return problems


class Repository:
    """The content-addressed files; thread-safe as the file system is (renames)."""

    def __init__(self, home: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = home / FOLDER
        self.max_bytes = max_bytes

    def path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a lower-case SHA-256 hex digest: {sha256!r}")
        return self.root / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    async def receive(
        self, chunks: AsyncIterator[bytes], check: Callable[[Path], None] | None = None
    ) -> Stored:
        """Store what ``chunks`` yields, hashed as it is written; returns where it is.

        PackageTooLarge once more than ``max_bytes`` arrived (what was written is
        removed; the rest of the stream is not read). ``check`` (e.g. check_archive)
        is given the whole written file, in a thread, before it takes its place: what
        it raises propagates, and so does what ``chunks`` raises (an upload cut
        short); OSError (a full disk) too. None of them leaves anything behind. The
        same content twice is one file."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.root / f"{_INCOMING}{secrets.token_hex(8)}"
        digest, size = hashlib.sha256(), 0
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PackageTooLarge(
                            f"the package is larger than this hub's limit of {self.max_bytes} bytes"
                        )
                    digest.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if check is not None:
                await asyncio.to_thread(check, temporary)
            sha256 = digest.hexdigest()
            final = self.path(sha256)
            os.replace(temporary, final)  # the same bytes as any file already there
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        return Stored(sha256, size, final)

    def discard_unused(self, sha256: str, still_used: bool) -> None:
        """Remove a content no package names any more (a replaced version's)."""
        if not still_used:
            with contextlib.suppress(FileNotFoundError):
                self.path(sha256).unlink()

    def sweep_incoming(self) -> int:
        """Remove temporary files a killed process left; returns how many."""
        removed = 0
        if self.root.is_dir():
            for leftover in self.root.glob(f"{_INCOMING}*"):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
                    removed += 1
        return removed


class ArtifactFiles:
    """Files a task's steps reported, fetched from their workers: ``<home>/Artifacts/<id>``
    (the artifacts table's id), written beside and renamed once whole."""

    FOLDER = "Artifacts"

    def __init__(self, home: Path) -> None:
        self.root = home / self.FOLDER

    def path(self, number: int) -> Path:
        return self.root / str(int(number))

    def incoming(self) -> Path:
        """A new temporary path to fetch an artifact into, before its row exists."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.root / f"{_INCOMING}{secrets.token_hex(8)}"

    def sweep_incoming(self) -> int:
        removed = 0
        if self.root.is_dir():
            for leftover in self.root.glob(f"{_INCOMING}*"):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
                    removed += 1
        return removed
