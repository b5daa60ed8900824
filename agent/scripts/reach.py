"""Whether scripts run as other uids can run the `tentacle` they are given.

Scripts run as their isolation group's uid (agent.scripts.users) call
``$TentacleExecutablePath`` for every deployment step (``tentacle calamari ...``).
That uid has no groups and owns nothing of the installation, so the executable,
each link on the way to it, its interpreter (a ``#!`` line, followed again) and
every folder above them must be open to *other* users. A Python installed under a
private home (pyenv under /root, mode 0700) is not: the step then fails with
"bad interpreter: Permission denied", far from the cause.

At start the agent checks the chain (``unreachable``). When it is closed, the same
installation is offered through the system's Python of the same version
(``system_launcher``: a small script in the instance's home that runs this
installation's packages with ``/usr/bin/python3.X``), if that Python is open to
others and the launcher, tried as ``nobody``, works; when the installation's own
folders are closed too, the executor alone (its zipapp, as SSH targets run it);
otherwise the agent refuses to start, naming the folder and the fixes
(docs/decisions.md).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.executor_bundle import executor_bundle

MAX_INTERPRETERS = 4  # #! lines followed before giving up (a loop, or an odd setup)
LAUNCHER_NAME = "tentacle-for-scripts"  # in the instance's home, 0755, the agent's
LAUNCHER_MODE = 0o755
NOBODY = 65534  # the launcher is tried as the account that owns no file
TRY_TIMEOUT = 60.0


def unreachable(executable: str) -> str | None:
    """Why a uid that is neither the owner nor in the group of any file cannot execute
    ``executable`` (found on the PATH if bare), following links and ``#!``
    interpreters; None when it can."""
    program = executable
    for _ in range(MAX_INTERPRETERS):
        path = shutil.which(program) if os.sep not in program else program
        if path is None:
            return f"{program!r} is not found on the PATH"
        why = _closed_on_the_way(Path(path))
        if why is not None:
            return why
        interpreter = _interpreter(Path(path))
        if interpreter is None:
            return None
        program = interpreter
    return None


def _program_of(words: list[str]) -> str | None:
    """The program a ``#!`` line runs: ``/usr/bin/env python3``'s is the PATH's python3."""
    if len(words) > 1 and os.path.basename(words[0]) == "env" and not words[1].startswith("-"):
        return words[1]  # found on the PATH by the caller, as env does
    return words[0] if words else None


def _closed_on_the_way(path: Path) -> str | None:
    """The first folder or file others may not pass or run, on ``path`` as written and
    on the links it goes through (each link's folders are searched too)."""
    seen: set[Path] = set()
    for step in _link_chain(path):
        for folder in [*reversed(step.parents)]:
            if folder in seen:
                continue
            seen.add(folder)
            why = _needs(folder, stat.S_IXOTH, "searchable")
            if why is not None:
                return why
    final = path.resolve()
    why = _needs(final, stat.S_IXOTH, "executable")
    if why is None and _interpreter(final) is not None:
        why = _needs(final, stat.S_IROTH, "readable")  # a #! script is read by its interpreter
    return why


def _link_chain(path: Path) -> list[Path]:
    """``path`` and every link target it leads to, absolute (bounded)."""
    chain = [Path(os.path.abspath(path))]
    for _ in range(40):  # the kernel's own limit on links in a lookup
        current = chain[-1]
        if not current.is_symlink():
            break
        chain.append(Path(os.path.abspath(current.parent / os.readlink(current))))
    return chain


def _needs(path: Path, bit: int, what: str) -> str | None:
    try:
        mode = path.stat().st_mode
    except OSError as error:
        return f"{path} cannot be read ({error.strerror})"
    if mode & bit:
        return None
    return f"{path} (mode {stat.S_IMODE(mode):04o}) is not {what} by other users"


def _interpreter(path: Path) -> str | None:
    """The program of a ``#!`` line, None for a binary (or anything unreadable)."""
    try:
        with path.open("rb") as file:
            head = file.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return _program_of([os.fsdecode(word) for word in words])


@dataclass(frozen=True)
class Launcher:
    """What scripts' uids run as ``tentacle``: ``path``, and what it carries (``kind``:
    "this installation" or "the executor alone", for the log)."""

    path: Path
    kind: str


def system_launcher(home: Path, import_folders: Sequence[str] | None = None) -> Launcher | str:
    """A launcher through the system's Python of this version, written to
    ``<home>/LAUNCHER_NAME`` and tried as ``nobody`` before it is given: this
    installation (the folders of this process's ``sys.path`` outside its standard
    library that others may read, or ``import_folders``), else the executor alone
    (agent.executor_bundle, which scripts call as ``tentacle calamari ...``), so a
    closed installation still deploys. Both run in isolated mode (``-I``), so no
    ``PYTHONPATH`` reaches the Python a step runs itself. The reason as a string when
    there is no such Python or neither works."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    python = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        return f"there is no system {version}"
    why = unreachable(python)
    if why is not None:
        return f"the system's {version} is closed too ({why})"
    launcher = home / LAUNCHER_NAME
    folders = _open_import_folders() if import_folders is None else list(import_folders)
    _write_launcher(launcher, _installation_launcher(python, folders))
    failed = _try_as_nobody(launcher, "version")
    if failed is None:
        return Launcher(launcher, "this installation")
    _write_launcher(launcher, f"#!{python} -I\n".encode() + executor_bundle().data)
    failed_alone = _try_as_nobody(launcher, "calamari", "--help")
    if failed_alone is None:
        return Launcher(launcher, "the executor alone")
    launcher.unlink()
    return (
        f"this installation does not run with the system's {version} ({failed}), nor its "
        f"executor alone ({failed_alone})"
    )


def _open_import_folders() -> list[str]:
    """The folders this process imports from outside its standard library that others
    may read (what is needed from them the try tells)."""
    standard = (sys.base_prefix, sys.base_exec_prefix)
    return [
        entry
        for entry in sys.path
        if entry
        and Path(entry).is_dir()
        and not entry.startswith(standard)
        and not _closed_folder(Path(entry))
    ]


def _installation_launcher(python: str, folders: list[str]) -> bytes:
    return (
        f"#!{python} -I\n"
        "# Written by the tentacle agent at each start: this installation's Python is not\n"
        "# open to the scripts' uids, so they run it with the system's (agent/scripts/reach.py)\n"
        "import runpy\n"
        "import sys\n\n"
        f"sys.path[:0] = {folders!r}\n"
        'runpy.run_module("agent", run_name="__main__", alter_sys=True)\n'
    ).encode()


def _write_launcher(launcher: Path, data: bytes) -> None:
    temporary = launcher.with_name(LAUNCHER_NAME + ".new")
    temporary.write_bytes(data)
    temporary.chmod(LAUNCHER_MODE)
    temporary.replace(launcher)


def _try_as_nobody(launcher: Path, *arguments: str) -> str | None:
    """Why ``launcher arguments`` fails as uid NOBODY, no groups (None when it works, or
    when the machine has no such account: the first deployment step will tell)."""
    try:
        pwd.getpwuid(NOBODY)
    except KeyError:
        return None
    try:
        done = subprocess.run(
            [str(launcher), *arguments], user=NOBODY, group=NOBODY, extra_groups=[],
            env={"PATH": "/usr/local/bin:/usr/bin:/bin"}, cwd="/", capture_output=True,
            timeout=TRY_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as error:
        return str(error)
    if done.returncode == 0:
        return None
    said = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
    command = " ".join([str(launcher), *arguments])
    return f"`{command}` exited {done.returncode}: {said[-1] if said else ''}"


def _closed_folder(folder: Path) -> bool:
    """Whether others cannot search ``folder`` or a folder above it, or list it."""
    chain = [*reversed(folder.resolve().parents), folder.resolve()]
    if any(_needs(f, stat.S_IXOTH, "searchable") for f in chain):
        return True
    return _needs(folder.resolve(), stat.S_IROTH, "readable") is not None
