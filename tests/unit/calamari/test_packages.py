"""Package extraction: every format, and every way an entry could escape its folder."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from agent.calamari.packages import PackageError, extract

FILES = {
    "app.conf": b"port=#{Port}\n",
    "bin/run.sh": b"#!/bin/sh\necho hi\n",
    "docs/readme.md": b"# hi\n",
}


def make_zip(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def make_tar(
    path: Path, mode: str, files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()
) -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra:
            archive.addfile(info)
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(
    "suffix", [".zip", ".nupkg", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"]
)
def test_every_format_extracts_with_progress(tmp_path: Path, suffix: str) -> None:
    package = tmp_path / f"App.1.0.0{suffix}"
    if suffix in (".zip", ".nupkg"):
        extra = {
            "_rels/.rels": b"x",
            "[Content_Types].xml": b"x",
            "package/services/metadata/core.psmdcp": b"x",
        }
        make_zip(package, {**FILES, **(extra if suffix == ".nupkg" else {})})
    else:
        mode = {
            ".tar": "w",
            ".tar.gz": "w:gz",
            ".tgz": "w:gz",
            ".tar.bz2": "w:bz2",
            ".tar.xz": "w:xz",
        }[suffix]
        make_tar(package, mode, FILES)
    seen: list[tuple[int, int]] = []
    count = extract(package, tmp_path / "out", lambda done, total: seen.append((done, total)))
    assert count == 3
    assert tree(tmp_path / "out") == FILES  # NuGet's own metadata is left out
    total = sum(map(len, FILES.values()))
    assert seen[-1] == (total, total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


@pytest.mark.parametrize(("entry", "reason"), [
    ("../evil.txt", "outside the destination"),
    ("a/../../evil.txt", "outside the destination"),
    ("/etc/evil.txt", "absolute path"),
    ("C:/evil.txt", "absolute path"),
    ("a\\..\\..\\evil.txt", "absolute path"),
])  # fmt: skip
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_entries_escaping_the_destination_are_refused_by_name(
    tmp_path: Path, entry: str, reason: str, kind: str
) -> None:
    files = {"good.txt": b"fine", entry: b"evil"}
    package = (
        make_zip(tmp_path / "p.zip", files)
        if kind == "zip"
        else make_tar(tmp_path / "p.tar", "w", files)
    )
    with pytest.raises(PackageError, match=reason) as raised:
        extract(package, tmp_path / "deep" / "out")
    assert repr(entry) in str(raised.value)
    assert [path.name for path in tmp_path.rglob("*")] == [package.name]  # nothing written


def symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def test_links_pointing_out_are_refused(tmp_path: Path) -> None:
    outside = [symlink("up", "../outside"), symlink("abs", "/etc/passwd")]
    for number, info in enumerate(outside):
        package = make_tar(tmp_path / f"p{number}.tar", "w", {"a.txt": b"a"}, [info])
        with pytest.raises(PackageError, match=info.name):
            extract(package, tmp_path / f"out{number}")
    hard = tarfile.TarInfo("hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../../etc/passwd"
    with pytest.raises(PackageError, match="'hard' points outside"):
        extract(make_tar(tmp_path / "h.tar", "w", {}, [hard]), tmp_path / "h")
    with pytest.raises(PackageError, match="'z' is a link to the absolute path"):
        extract(make_zip(tmp_path / "z.zip", {}, {"z": "/etc"}), tmp_path / "z")


def test_a_chain_of_links_that_leads_out_is_refused(tmp_path: Path) -> None:
    # each link stays inside on paper; followed one after the other they leave
    package = make_zip(tmp_path / "chain.zip", {}, {"d1/l": "..", "d1/l/l2": ".."})
    with pytest.raises(PackageError, match="outside the destination"):
        extract(package, tmp_path / "box" / "out")
    assert not list((tmp_path / "box").iterdir())


def test_tar_links_that_lead_out_only_together_are_refused_by_name(tmp_path: Path) -> None:
    # l1 -> . is harmless alone; l1/l2 -> .. then resolves to the destination's parent
    package = make_tar(tmp_path / "pair.tar", "w", {}, [symlink("l1", "."), symlink("l1/l2", "..")])
    with pytest.raises(PackageError, match="entry 'l1/l2' leads outside the destination"):
        extract(package, tmp_path / "box" / "out")
    assert not list((tmp_path / "box").iterdir())


def test_links_inside_are_kept(tmp_path: Path) -> None:
    package = make_tar(
        tmp_path / "ok.tar", "w", {"real/file.txt": b"x"}, [symlink("alias", "real/file.txt")]
    )
    extract(package, tmp_path / "out")
    assert (tmp_path / "out" / "alias").read_bytes() == b"x"


def test_devices_and_fifos_are_refused(tmp_path: Path) -> None:
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    with pytest.raises(PackageError, match="'pipe' is a device or FIFO"):
        extract(make_tar(tmp_path / "f.tar", "w", {}, [fifo]), tmp_path / "out")


def test_bad_input_gets_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="unknown package format"):
        extract(tmp_path / "package.rar", tmp_path / "out")
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(b"PK not really a zip")
    with pytest.raises(PackageError, match="not a readable"):
        extract(damaged, tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(PackageError, match="not an empty folder"):
        extract(make_zip(tmp_path / "p.zip", FILES), tmp_path / "full")
