"""The hub's built-in package repository over its real API (SQLite and PostgreSQL):
uploads stored by content hash, listed and fetched; bad names, duplicates, a size
limit and uploads that are not forms refused, naming what is wrong."""

from __future__ import annotations

import contextlib
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import aiohttp

from agent import __version__
from agent.hub.home import load_home
from agent.hub.keys import Permission
from agent.hub.packages import Repository
from agent.hub.server import HubServer
from tests.helpers.cli import TentacleCli
from tests.helpers.hub import HubApi, RunningHub, new_key, pinned


def package_bytes(marker: str = "one") -> bytes:
    """A small real zip package."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.config", f"marker={marker}\n")
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
    status, body = await upload(hub, "Acme.Tools.2.0.0-beta.1.tar.gz", b"\x1f\x8b not checked")
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
    assert (await upload(hub, "Acme.Big.1.0.0.zip", b"x" * 1000))[0] == 201


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
    server = HubServer(load_home(home), __version__)
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
            assert (await upload(hub, "Acme.Big.1.0.0.zip", b"x" * 4000))[0] == 201
    finally:
        await server.stop()
    result = tentacle.run("hub", "configure", "--home", str(home), "--max-package-bytes", "0")
    assert result.code != 0
    assert "--max-package-bytes" in result.err
