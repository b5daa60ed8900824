"""Whether other users can run an executable: links and #! interpreters followed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.scripts import reach


@pytest.fixture
def open_dir() -> Iterator[Path]:
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


def test_an_interpreter_behind_a_link_into_a_private_folder_is_named(open_dir: Path) -> None:
    private = open_dir / "root" / ".pyenv" / "bin"
    python = _program(private / "python3.11", "\x7fELF binary")
    venv = open_dir / "opt" / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(python)
    tentacle = _program(venv / "tentacle", f"#!{venv / 'python'}\nimport agent\n")
    (open_dir / "root").chmod(0o700)  # pyenv's home: root's alone

    assert reach.unreachable(str(tentacle)) == (
        f"{open_dir / 'root'} (mode 0700) is not searchable by other users"
    )
    (open_dir / "root").chmod(0o711)
    assert reach.unreachable(str(tentacle)) is None


def test_a_script_others_cannot_read_or_a_file_they_cannot_execute_is_named(
    open_dir: Path,
) -> None:
    folder = open_dir / "bin"
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


@pytest.mark.skipif(os.geteuid() != 0, reason="the launcher is tried as nobody: root only")
def test_the_systems_python_launcher_runs_this_installation(open_dir: Path) -> None:
    """Where the system has this Python's version open to others, the launcher names it
    and the folder this process imports ``agent`` from (0755 in the home), and works
    as ``nobody`` (tried before it is given)."""
    home = open_dir / "home"
    home.mkdir()
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    system = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    launcher, why = reach.system_launcher(home)
    if system is None:
        assert (launcher, why) == (None, f"there is no system {version}")
        return
    assert launcher == home / reach.LAUNCHER_NAME, why
    assert launcher.stat().st_mode & 0o777 == 0o755
    text = launcher.read_text()
    assert f"exec {system} -m agent" in text
    assert str(Path(reach.__file__).parents[2]) in text  # where `agent` is imported from
    ran = subprocess.run([str(launcher), "version"], user=reach.NOBODY, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert ran.stdout.startswith("Version: "), ran


def test_an_env_line_is_followed_to_the_paths_program(
    open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = open_dir / "home" / "bin"
    _program(private / "mypython", "\x7fELF binary")
    (open_dir / "home").chmod(0o700)
    script = _program(open_dir / "tentacle", "#!/usr/bin/env mypython\nimport agent\n")
    monkeypatch.setenv("PATH", f"{private}:/usr/bin:/bin")

    assert reach.unreachable(str(script)) == (
        f"{open_dir / 'home'} (mode 0700) is not searchable by other users"
    )
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert reach.unreachable(str(script)) == "'mypython' is not found on the PATH"
