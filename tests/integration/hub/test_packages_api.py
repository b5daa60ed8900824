"""The hub's built-in package repository over its real API (SQLite and PostgreSQL):
uploads stored by content hash, listed and fetched; bad names, duplicates, a size
limit and uploads that are not forms refused, naming what is wrong."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from agent import __version__
from agent.hub.home import load_home
from agent.hub.keys import Permission
from agent.hub.packages import Repository
from agent.hub.server import HubServer
from tests.helpers.cli import HUB_TEST_ENV, TentacleCli
from tests.helpers.hub import HubApi, RunningHub, new_key, pinned


def package_bytes(marker: str = "one", padding: int = 0) -> bytes:
    """A small real zip package (``padding`` more bytes stored as they are)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.config", f"marker={marker}\n")
        if padding:
            archive.writestr("blob.bin", os.urandom(padding), zipfile.ZIP_STORED)
    return buffer.getvalue()


def tar_bytes(mode: str = "w:gz") -> bytes:
    """A small real tar package, compressed as ``mode`` says."""
    buffer = io.BytesIO()
    data = b"marker=tar\n"
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        info = tarfile.TarInfo("app.config")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def upload(
    hub: RunningHub, name: str, data: bytes, query: str = "", field: str = "fileToUpload"
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field(field, data, filename=name, content_type="application/octet-stream")
    return await hub.api.request("POST", f"/api/packages/raw{query}", data=form)


def stored_files(hub: RunningHub) -> list[str]:
    root = hub.home.path / "Packages"
    return sorted(path.name for path in root.iterdir()) if root.is_dir() else []


async def test_a_package_is_stored_by_its_hash_and_listed(hub: RunningHub) -> None:
    data = package_bytes()
    sha = hashlib.sha256(data).hexdigest()
    status, body = await upload(hub, "Acme.Web.1.2.3.zip", data)
    assert status == 201, body
    assert body["Id"] == "packages-Acme.Web.1.2.3"
    assert (body["PackageId"], body["Version"], body["FileExtension"]) == (
        "Acme.Web",
        "1.2.3",
        ".zip",
    )
    assert (body["PackageSizeBytes"], body["Hash"], body["Title"]) == (len(data), sha, "Acme.Web")
    assert body["Published"]
    assert body["Links"]["Self"].endswith("/packages/packages-Acme.Web.1.2.3")
    assert stored_files(hub) == [sha]
    assert (hub.home.path / "Packages" / sha).read_bytes() == data

    listed = await hub.api.get("/api/packages")
    assert [item["Id"] for item in listed["Items"]] == ["packages-Acme.Web.1.2.3"]
    assert listed["TotalResults"] == 1
    one = await hub.api.get("/api/packages/packages-Acme.Web.1.2.3")
    assert one["Hash"] == sha
    async with hub.api.session.get(
        hub.api.url + one["Links"]["Raw"], headers={"X-Octopus-ApiKey": str(hub.api.key)}
    ) as raw:
        assert raw.status == 200
        assert await raw.read() == data
        assert "Acme.Web.1.2.3.zip" in raw.headers["Content-Disposition"]
    spaced = await hub.api.get("/api/Spaces-1/packages/packages-acme.web.1.2.3")
    assert spaced["Id"] == "packages-Acme.Web.1.2.3"

    # the same bytes under another version are one file; other extensions are read too
    status, body = await upload(hub, "Acme.Web.1.2.4.zip", data, field="file")
    assert status == 201, body
    status, body = await upload(hub, "Acme.Tools.2.0.0-beta.1.tar.gz", tar_bytes())
    assert status == 201, body
    assert (body["PackageId"], body["Version"], body["FileExtension"]) == (
        "Acme.Tools",
        "2.0.0-beta.1",
        ".tar.gz",
    )
    assert len(stored_files(hub)) == 2
    assert (await hub.api.get("/api/packages?filter=web"))["TotalResults"] == 2


async def test_a_duplicate_is_refused_unless_replaced(hub: RunningHub) -> None:
    first, second = package_bytes("one"), package_bytes("two")
    assert (await upload(hub, "Acme.Web.1.0.0.zip", first))[0] == 201
    status, body = await upload(hub, "acme.web.1.0.0.zip", second)
    assert status == 409, body
    assert "Acme.Web 1.0.0 exists already" in body["ErrorMessage"]
    assert "replace=true" in body["ErrorMessage"]
    assert stored_files(hub) == [hashlib.sha256(first).hexdigest()]

    status, body = await upload(hub, "Acme.Web.1.0.0.zip", second, "?replace=true")
    assert status == 201, body
    assert body["Hash"] == hashlib.sha256(second).hexdigest()
    # the replaced content, which nothing names any more, is gone
    assert stored_files(hub) == [hashlib.sha256(second).hexdigest()]
    assert (await hub.api.get("/api/packages"))["TotalResults"] == 1
    status, body = await upload(hub, "Acme.Web.1.0.1.zip", second, "?replace=maybe")
    assert status == 400
    assert "replace must be true or false" in body["ErrorMessage"]


async def test_bad_names_and_bodies_are_refused_naming_the_problem(hub: RunningHub) -> None:
    cases = {
        "Acme.Web.zip": "expected a name like Id.1.2.3.zip",
        "Acme.Web.1.0.0.rar": "no package extension the executor can extract",
        "Acme.Web.1.0.0": "no package extension",
        "Ac'me.1.0.0.zip": "must be letters, digits",
        "-Acme.1.0.0.zip": "must be letters, digits",
        "Acme@1.0 0@abc.zip": "its version '1.0 0' must be",
    }
    for name, said in cases.items():
        status, body = await upload(hub, name, package_bytes())
        assert status == 400, (name, body)
        assert said in body["ErrorMessage"], (name, body)
    status, body = await hub.api.request("POST", "/api/packages/raw", json={"a": 1})
    assert status == 400, body
    assert "multipart/form-data" in body["ErrorMessage"], body
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("note", "no file here")
    status, body = await hub.api.request("POST", "/api/packages/raw", data=form)
    assert status == 400, body
    assert "the form holds no file" in body["ErrorMessage"], body
    assert stored_files(hub) == []
    assert (await hub.api.get("/api/packages"))["TotalResults"] == 0
    status, body = await hub.api.request("GET", "/api/packages/packages-Nope.1.0.0")
    assert status == 404
    assert "packages-Nope.1.0.0" in body["ErrorMessage"]


async def test_a_package_over_the_limit_is_a_413_leaving_nothing(hub: RunningHub) -> None:
    repository = hub.server.repository
    assert isinstance(repository, Repository)
    repository.max_bytes = 200_000
    big = b"x" * 300_000
    status, body = await upload(hub, "Acme.Big.1.0.0.zip", big)
    assert status == 413, body
    assert "larger than this hub's" in body["ErrorMessage"]
    assert "200000" in body["ErrorMessage"]
    # within the form's overhead, the stream itself is counted and refused
    status, body = await upload(hub, "Acme.Big.1.0.0.zip", b"x" * 210_000)
    assert status == 413, body
    assert stored_files(hub) == []
    assert (await hub.api.get("/api/packages"))["TotalResults"] == 0
    # the hub is still up, and a package within the limit is taken
    assert (await upload(hub, "Acme.Big.1.0.0.zip", package_bytes(padding=1000)))[0] == 201


async def test_a_killed_upload_leaves_nothing_after_a_restart(tmp_path: Path) -> None:
    repository = Repository(tmp_path)

    async def cut() -> Any:
        yield b"part of a package"
        raise ConnectionResetError("the client went away")

    with contextlib.suppress(ConnectionResetError):
        await repository.receive(cut())
    assert list((tmp_path / "Packages").iterdir()) == []
    # what a killed process leaves (it cannot clean up) is swept at the next start
    (tmp_path / "Packages" / ".incoming-0123456789abcdef").write_bytes(b"half")
    assert repository.sweep_incoming() == 1
    assert list((tmp_path / "Packages").iterdir()) == []


async def test_the_limit_is_the_hubs_max_package_bytes_setting(tmp_path: Path) -> None:
    """`hub configure --max-package-bytes` (hub.yaml's MaxPackageBytes) is the limit."""
    tentacle = TentacleCli(tmp_path)
    home = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home))
    tentacle.ok("hub", "configure", "--home", str(home), "--max-package-bytes", "5000")
    assert "MaxPackageBytes: 5000" in (home / "hub.yaml").read_text()
    server = HubServer(load_home(home, HUB_TEST_ENV), __version__)
    url = await server.start("127.0.0.1:0", polling_port=0)
    try:
        assert server.repository is not None
        assert server.repository.max_bytes == 5000
        key = await new_key(server.home, "admin", Permission.CONFIGURE_SERVER)
        connector = aiohttp.TCPConnector(ssl=pinned(server.home))
        async with aiohttp.ClientSession(connector=connector) as session:
            api = HubApi(url, session, key)
            hub = RunningHub(server.home, server, api)
            status, body = await upload(hub, "Acme.Big.1.0.0.zip", b"x" * 6000)
            assert status == 413, body
            assert "5000 bytes" in body["ErrorMessage"]
            small = package_bytes(padding=3500)
            assert (await upload(hub, "Acme.Big.1.0.0.zip", small))[0] == 201
    finally:
        await server.stop()
    result = tentacle.run("hub", "configure", "--home", str(home), "--max-package-bytes", "0")
    assert result.code != 0
    assert "--max-package-bytes" in result.err


BOUNDARY = "pkgBoundary7c1e"


def form_bytes(name: str, data: bytes) -> tuple[bytes, bytes]:
    """A multipart form holding ``data`` as the file ``name``: (everything before the
    closing boundary, the closing boundary)."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="fileToUpload"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data, f"\r\n--{BOUNDARY}--\r\n".encode()


async def raw_upload(hub: RunningHub, body: bytes, *, chunked: bool) -> tuple[int, Any]:
    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16 * 1024):
            yield body[start : start + 16 * 1024]

    return await hub.api.request(
        "POST",
        "/api/packages/raw",
        data=pieces() if chunked else body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )


async def test_an_upload_without_its_closing_boundary_is_refused_leaving_nothing(
    hub: RunningHub,
) -> None:
    """A body that ends (chunked or not) after half the file, after the whole file but
    before the closing boundary, or with a part opened and never closed, is not a
    package: a 400 saying so, nothing stored. The whole form is taken."""
    data = package_bytes(padding=200_000)
    before, closing = form_bytes("Acme.Cut.1.0.0.zip", data)
    half = before[: len(before) - len(data) // 2]
    opened = before + f"\r\n--{BOUNDARY}\r\n".encode()
    unclosed = before + f"\r\n--{BOUNDARY}".encode()
    for body in (half, before, opened, unclosed):
        for chunked in (True, False):
            status, answer = await raw_upload(hub, body, chunked=chunked)
            assert status == 400, (len(body), chunked, answer)
            assert "ended before its closing boundary" in answer["ErrorMessage"], answer
            assert "Acme.Cut.1.0.0.zip" in answer["ErrorMessage"], answer
    assert stored_files(hub) == []
    assert (await hub.api.get("/api/packages"))["TotalResults"] == 0
    status, answer = await raw_upload(hub, before + closing, chunked=True)
    assert status == 201, answer
    assert answer["PackageSizeBytes"] == len(data)


async def test_content_that_is_not_the_archive_its_name_says_is_refused(
    hub: RunningHub,
) -> None:
    zipped, gzipped = package_bytes(), tar_bytes()
    cases = [
        ("Acme.Web.1.0.0.zip", b"x" * 1000, "not a zip archive"),
        ("Acme.Web.1.0.0.nupkg", gzipped, "not a zip archive"),
        ("Acme.Web.1.0.0.zip", zipped[: len(zipped) // 2], "not a zip archive"),
        ("Acme.Web.1.0.0.tar.gz", zipped, "not a whole .tar.gz archive"),
        ("Acme.Web.1.0.0.tar.gz", gzipped[: len(gzipped) - 8], "not a whole .tar.gz archive"),
        ("Acme.Web.1.0.0.tar.bz2", gzipped, "not a whole .tar.bz2 archive"),
        ("Acme.Web.1.0.0.tar.xz", tar_bytes("w:bz2"), "not a whole .tar.xz archive"),
        ("Acme.Web.1.0.0.tar", b"\x01" * 1024, "not a whole .tar archive"),
    ]
    for name, data, said in cases:
        status, body = await upload(hub, name, data)
        assert status == 400, (name, said, body)
        assert said in body["ErrorMessage"], (name, body)
        assert name in body["ErrorMessage"], (name, body)
    assert stored_files(hub) == []
    assert (await hub.api.get("/api/packages"))["TotalResults"] == 0
    for name, data in [
        ("Acme.Web.1.0.0.nupkg", zipped),
        ("Acme.Web.1.0.1.tar", tar_bytes("w")),
        ("Acme.Web.1.0.2.tar.bz2", tar_bytes("w:bz2")),
        ("Acme.Web.1.0.3.txz", tar_bytes("w:xz")),
    ]:
        status, body = await upload(hub, name, data)
        assert status == 201, (name, body)


async def test_a_file_name_with_a_path_is_refused(hub: RunningHub) -> None:
    for name in ("../../x.1.0.0.zip", "a/b.1.0.0.zip", "a\\b.1.0.0.zip", "..\\x.1.0.0.zip"):
        status, body = await upload(hub, name, package_bytes())
        assert status == 400, (name, body)
        assert "is a path: send the file's name only" in body["ErrorMessage"], (name, body)
    assert stored_files(hub) == []
    assert (await hub.api.get("/api/packages"))["TotalResults"] == 0
