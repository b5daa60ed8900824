"""Whether other users can run an executable: links and #! interpreters followed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.executor_bundle import Bundle
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


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the launcher is tried as nobody")


def _system_python() -> str | None:
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")


def _as_nobody(*command: str, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), user=reach.NOBODY, group=reach.NOBODY, extra_groups=[],
                          capture_output=True, text=True, check=False, **options)  # fmt: skip


@pytest.fixture
def home(open_dir: Path) -> Path:
    if _system_python() is None:
        pytest.fail("this machine has no system Python of this version to launch with")
    home = open_dir / "home"
    home.mkdir()
    return home


@needs_root
def test_the_systems_python_launcher_runs_this_installation(home: Path) -> None:
    """Where the system has this Python's version open to others, the launcher names it
    and the folder this process imports ``agent`` from (0755 in the home), and works
    as ``nobody`` (tried before it is given)."""
    launcher = reach.system_launcher(home)
    assert launcher == reach.Launcher(home / reach.LAUNCHER_NAME, "this installation")
    assert launcher.path.stat().st_mode & 0o777 == 0o755
    text = launcher.path.read_text()
    assert text.startswith(f"#!{_system_python()} -I\n")
    assert repr(str(Path(reach.__file__).parents[2])) in text  # where `agent` is imported from
    ran = _as_nobody(str(launcher.path), "version")
    assert ran.stdout.startswith("Version: "), ran


@needs_root
def test_a_closed_installation_gives_scripts_the_executor_alone(home: Path) -> None:
    """When none of this installation's folders is open to others, the launcher is the
    executor's zipapp run by the system's Python: `tentacle calamari ...` works as
    nobody, the rest of the command line is not there."""
    launcher = reach.system_launcher(home, import_folders=[])
    assert launcher == reach.Launcher(home / reach.LAUNCHER_NAME, "the executor alone")
    script = home / "step.sh"
    script.write_text('echo "deployed as $(id -u)"\n')
    script.chmod(0o644)
    ran = _as_nobody(str(launcher.path), "calamari", "run-script", "--script", str(script),
                     cwd=home)  # fmt: skip
    assert ran.stdout.splitlines()[0] == f"deployed as {reach.NOBODY}", ran
    assert _as_nobody(str(launcher.path), "version").returncode == 2  # no such verb here


@needs_root
def test_a_step_run_through_the_launcher_sees_no_pythonpath_of_the_agents(home: Path) -> None:
    """The launcher's own imports stay its own: a step's Python finds no PYTHONPATH and
    cannot import the agent's packages (nor would a step's own PYTHONPATH steer it)."""
    launcher = reach.system_launcher(home)
    assert isinstance(launcher, reach.Launcher)
    script = home / "step.py"
    script.write_text(
        "import importlib.util, os\n"
        "print(os.environ.get('PYTHONPATH', 'none'))\n"
        "print(importlib.util.find_spec('agent') is not None)\n"
    )
    script.chmod(0o644)
    ran = _as_nobody(str(launcher.path), "calamari", "run-script", "--script", str(script),
                     cwd=home, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nowhere"})  # fmt: skip
    assert ran.stdout.splitlines()[:2] == ["/nowhere", "False"], ran


@needs_root
def test_neither_launcher_working_is_said_and_leaves_none(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken bundle stands for a system Python that cannot run it either."""
    monkeypatch.setattr(reach, "executor_bundle", lambda: Bundle(b"not a zip", "0" * 64))
    why = reach.system_launcher(home, import_folders=[])
    assert isinstance(why, str)
    assert why.startswith("this installation does not run with the system's python3."), why
    assert "nor its executor alone (`" in why, why
    assert "calamari --help` exited" in why, why
    assert not (home / reach.LAUNCHER_NAME).exists()


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
