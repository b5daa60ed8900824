"""Whether other users can run an executable: links and #! interpreters followed."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.scripts import reach


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A folder others may search, as every folder above it (pytest's are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="reach-", dir="/tmp"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _program(path: Path, text: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_an_interpreter_behind_a_link_into_a_private_folder_is_named(tmp_path: Path) -> None:
    private = tmp_path / "root" / ".pyenv" / "bin"
    python = _program(private / "python3.11", "\x7fELF binary")
    venv = tmp_path / "opt" / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(python)
    tentacle = _program(venv / "tentacle", f"#!{venv / 'python'}\nimport agent\n")
    (tmp_path / "root").chmod(0o700)  # pyenv's home: root's alone

    assert reach.unreachable(str(tentacle)) == (
        f"{tmp_path / 'root'} (mode 0700) is not searchable by other users"
    )
    (tmp_path / "root").chmod(0o711)
    assert reach.unreachable(str(tentacle)) is None


def test_a_script_others_cannot_read_or_a_file_they_cannot_execute_is_named(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "bin"
    folder.mkdir(mode=0o755)
    script = _program(folder / "tentacle", "#!/bin/sh\necho hi\n", 0o711)
    binary = _program(folder / "program", "\x7fELF", 0o750)

    assert reach.unreachable(str(script)) == f"{script} (mode 0711) is not readable by other users"
    assert reach.unreachable(str(binary)) == (
        f"{binary} (mode 0750) is not executable by other users"
    )
    assert reach.unreachable("no-such-tentacle-anywhere") == (
        "'no-such-tentacle-anywhere' is not found on the PATH"
    )


def test_the_systems_python_launcher_runs_this_installation(tmp_path: Path) -> None:
    """Where /usr/bin has this Python's version open to others, the launcher names it
    and every folder this process imports from (written 0755 in the home)."""
    home = tmp_path / "home"
    home.mkdir()
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    system = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    launcher = reach.system_launcher(home)
    if system is None:
        assert launcher is None
        return
    if launcher is None:  # this installation's packages are closed to others: fine
        return
    text = launcher.read_text()
    assert launcher == home / reach.LAUNCHER_NAME
    assert launcher.stat().st_mode & 0o777 == 0o755
    assert f"exec {system} -m agent" in text
    assert str(Path(reach.__file__).parents[2]) in text  # where `agent` is imported from


def test_an_env_line_is_followed_to_the_paths_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "home" / "bin"
    _program(private / "mypython", "\x7fELF binary")
    (tmp_path / "home").chmod(0o700)
    script = _program(tmp_path / "tentacle", "#!/usr/bin/env mypython\nimport agent\n")
    monkeypatch.setenv("PATH", f"{private}:/usr/bin:/bin")

    assert reach.unreachable(str(script)) == (
        f"{tmp_path / 'home'} (mode 0700) is not searchable by other users"
    )
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert reach.unreachable(str(script)) == "'mypython' is not found on the PATH"
