"""files.upload into a group's folder, which that group's scripts write (issue 17).

A script may swap the upload's temporary, or a folder on its way, for a link while
the bytes arrive; the agent (root) must never give the linked file to the group's
uid nor put the upload where the link points. The real FileService, its upload's
stream held open by the test (the script's moment) until the swap is done.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.errors import CallError
from agent.protocol.calls import IncomingCall
from agent.scripts.users import GroupUsers
from agent.services.files import FileService

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="giving files to a group's uid needs root")
UID_RANGE = (64100, 64107)


def upload_call(path: str, data: bytes, swap: Callable[[], None]) -> IncomingCall:
    """An upload of ``data`` whose stream calls ``swap`` after its first half."""

    async def stream() -> AsyncIterator[bytes]:
        yield data[: len(data) // 2]
        swap()  # the temporary exists now: the script swaps it while more bytes come
        yield data[len(data) // 2 :]

    params = {"Path": path, "Length": len(data), "IsolationGroup": "Projects-1"}
    return IncomingCall("files", "upload", params, stream(), "thumbprint")


def service(home: Path) -> tuple[FileService, Path]:
    home.mkdir(mode=0o711)
    users = GroupUsers(home, UID_RANGE)
    folder = users.account("Projects-1").folder
    return FileService(home, users=users), folder


def root_only(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@needs_root
async def test_a_temporary_swapped_for_a_link_never_gives_its_target_away(tmp_path: Path) -> None:
    files, folder = service(tmp_path / "home")
    victim = root_only(tmp_path / "identity.pem", "root's key")
    (folder / "Files" / "pkg").mkdir(parents=True)
    pkg = folder / "Files" / "pkg"

    def swap() -> None:  # what t1_upload_chown.py's script does
        (partial,) = [name for name in os.listdir(pkg) if name.endswith(".partial")]
        os.rename(pkg / partial, pkg / (partial + ".moved"))
        os.symlink(victim, pkg / partial)

    call = upload_call("Files/pkg/x.zip", b"p" * 4096, swap)
    with contextlib.suppress(CallError, OSError):  # refusing is fine; giving it away is not
        await files.upload(call)
    assert victim.stat().st_uid == 0
    assert victim.read_text() == "root's key"


@needs_root
async def test_a_folder_swapped_for_a_link_is_not_followed(tmp_path: Path) -> None:
    files, folder = service(tmp_path / "home")
    elsewhere = tmp_path / "root-only"
    elsewhere.mkdir(mode=0o700)
    pkg = folder / "Files" / "pkg"
    pkg.mkdir(parents=True)

    def swap() -> None:  # the folder goes, a link to a folder root only writes takes its name
        os.rename(pkg, folder / "Files" / "pkg.moved")
        os.symlink(elsewhere, pkg)

    call = upload_call("Files/pkg/x.zip", b"q" * 4096, swap)
    with contextlib.suppress(CallError, OSError):
        await files.upload(call)
    assert os.listdir(elsewhere) == []


@needs_root
async def test_an_upload_into_a_group_folder_is_the_groups(tmp_path: Path) -> None:
    files, folder = service(tmp_path / "home")
    reply = await files.upload(upload_call("Files/new/deeper/x.zip", b"r" * 4096, lambda: None))
    target = Path(reply.value["FullPath"])
    assert target == folder / "Files" / "new" / "deeper" / "x.zip"
    assert target.read_bytes() == b"r" * 4096
    uid = GroupUsers(tmp_path / "home", UID_RANGE).uids["Projects-1"]
    for path in (target, target.parent, target.parent.parent):
        assert (path.stat().st_uid, path.stat().st_gid) == (uid, uid)
    assert [name for name in os.listdir(target.parent) if name.endswith(".partial")] == []
