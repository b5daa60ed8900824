"""`tentacle calamari …` from the command line."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.helpers.cli import TentacleCli


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_extract_package(tentacle: TentacleCli, tmp_path: Path) -> None:
    package = make_zip(tmp_path / "App.1.0.0.zip", {"app.conf": b"x", "bin/run": b"y"})
    result = tentacle.ok("calamari", "extract-package", "--package", str(package),
                         "--destination", str(tmp_path / "out"), "--format", "json")  # fmt: skip
    assert result.json() == {"Destination": str(tmp_path / "out"), "ExtractedFileCount": 2}
    assert (tmp_path / "out" / "bin" / "run").read_bytes() == b"y"


def test_an_unsafe_package_is_refused_with_the_entry_named(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    package = make_zip(tmp_path / "evil.zip", {"ok": b"x", "../escape": b"y"})
    result = tentacle.fails("calamari", "extract-package", "--package", str(package),
                            "--destination", str(tmp_path / "out"))  # fmt: skip
    assert "entry '../escape' lands outside the destination" in result.err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escape").exists()
