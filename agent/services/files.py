"""The file transfer service: upload into, and download from, the allowed roots.

An upload goes to a hidden temporary file beside the target and is renamed
over it only once every byte has arrived and the length matches, so a failed,
cancelled or cut-off upload leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from agent.errors import CallError
from agent.protocol.dispatch import IncomingCall, Reply
from agent.protocol.messages import BAD_PARAMS, NOT_FOUND, REFUSED
from agent.services.paths import resolve_within
from agent.services.router import param

INSUFFICIENT_SPACE = "insufficient_space"
DOWNLOAD_CHUNK = 256 * 1024
MIB = 1024 * 1024


def required_free_space(length: int) -> int:
    """Free bytes an upload of ``length`` needs: the file plus 10% plus 1 MiB (Tentacle's rule)."""
    return length + length // 10 + MIB


class FileService:
    def __init__(self, home: Path, roots: Sequence[Path] = ()) -> None:
        self.home = home
        self.roots = tuple(roots)

    def methods(self) -> dict[str, Callable[[IncomingCall], Any]]:
        return {"upload": self.upload, "download": self.download}

    async def upload(self, call: IncomingCall) -> Reply:
        """Params ``Path`` and ``Length``, data on the call's stream.

        Returns ``{FullPath, Length, Sha256}``. Raises CallError refused (path
        outside the roots, a directory), insufficient_space, bad_params
        (missing stream, or a length that does not match what arrived).
        """
        target = resolve_within(param(call, "Path", str), self.home, self.roots)
        length = param(call, "Length", int)
        if call.stream is None:
            raise CallError(BAD_PARAMS, "files.upload needs the file's bytes on a stream")
        if target.is_dir():
            raise CallError(REFUSED, f"{target} is a directory")
        self._check_space(target, length)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".{target.name}.{secrets.token_hex(6)}.partial"
        try:
            digest, received = await _receive(call, temporary, length)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        return Reply({"FullPath": str(target), "Length": received, "Sha256": digest})

    async def download(self, call: IncomingCall) -> Reply:
        """Param ``Path``. Returns ``{FullPath, Length}`` and the bytes on a stream.

        Raises CallError not_found if there is no such file, refused if the path
        is outside the roots or not a regular file.
        """
        target = resolve_within(param(call, "Path", str), self.home, self.roots)
        try:
            file = target.open("rb")
        except FileNotFoundError:
            raise CallError(NOT_FOUND, f"no file at {target}") from None
        except OSError as error:
            raise CallError(REFUSED, f"cannot read {target}: {error.strerror}") from None
        size = os.fstat(file.fileno()).st_size
        if not target.is_file():
            file.close()
            raise CallError(REFUSED, f"{target} is not a regular file")
        return Reply({"FullPath": str(target), "Length": size}, _read_chunks(file))

    def _check_space(self, target: Path, length: int) -> None:
        existing = next(p for p in (target.parent, *target.parents) if p.exists())
        free = shutil.disk_usage(existing).free
        needed = required_free_space(length)
        if free < needed:
            raise CallError(
                INSUFFICIENT_SPACE,
                f"uploading {length} bytes to {target} needs {needed} bytes free, "
                f"but only {free} are",
            )


async def _receive(call: IncomingCall, temporary: Path, length: int) -> tuple[str, int]:
    """Store the call's stream in ``temporary``; returns its SHA-256 and length."""
    assert call.stream is not None
    digest = hashlib.sha256()
    received = 0
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb", buffering=0) as file:
        async for chunk in call.stream:
            received += len(chunk)
            if received > length:
                raise CallError(BAD_PARAMS, f"more than the announced Length of {length} bytes")
            file.write(chunk)
            digest.update(chunk)
    if received != length:
        raise CallError(BAD_PARAMS, f"received {received} bytes, but Length said {length}")
    return digest.hexdigest(), received


async def _read_chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    with file:
        while chunk := file.read(DOWNLOAD_CHUNK):
            yield chunk
