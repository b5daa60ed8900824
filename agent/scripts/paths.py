"""Where files may go: inside allowed roots only, and the names a workspace takes.

Shared by the agent's file and script services (agent.services) and the hub's
built-in worker (agent.hub.builtin), so that both refuse the same paths with
the same messages.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from agent.errors import CallError
from agent.protocol.messages import BAD_PARAMS, REFUSED
from agent.scripts.outputlog import INDEX_FILE, RAW_FILES
from agent.scripts.runner import OWN_FILES
from agent.scripts.state import STATE_FILE

# What an agent's operator does to allow another root (said when a path is refused)
AGENT_REMEDY = (
    "`tentacle configure --instance INSTANCE --file-root DIR` on the agent allows another"
)
# The files a script's workspace holds for the agent: a file sent along may not take them.
RESERVED_NAMES = frozenset({*OWN_FILES, *RAW_FILES.values(), INDEX_FILE, STATE_FILE})


def resolve_within(
    requested: str, home: Path, roots: Sequence[Path], remedy: str = AGENT_REMEDY
) -> Path:
    """The real path for ``requested``, relative to ``home`` unless absolute.

    ``\\`` counts as ``/`` (Windows-style paths from servers). Symbolic links are
    followed before the check, so a link pointing out is refused like ``..``.
    Raises CallError(refused) naming the path and the allowed roots (and
    ``remedy``: how to allow another).
    """
    text = requested.replace("\\", "/")
    if not text or "\x00" in text:
        raise CallError(REFUSED, f"invalid path {requested!r}")
    candidate = Path(text) if os.path.isabs(text) else home / text
    resolved = candidate.resolve()
    allowed = [root.resolve() for root in (home, *roots)]
    if not any(resolved == root or resolved.is_relative_to(root) for root in allowed):
        names = ", ".join(str(root) for root in allowed)
        raise CallError(
            REFUSED,
            f"path {requested!r} resolves to {resolved}, outside the allowed roots ({names}); "
            + remedy,
        )
    return resolved


def workspace_file_name(name: str) -> str:
    """``name`` (of a file sent with a script) as a safe relative path in the workspace;
    raises CallError(bad_params)."""
    text = name.replace("\\", "/")
    parts = text.split("/")
    if (
        not text
        or text.startswith("/")
        or "\x00" in text
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise CallError(
            BAD_PARAMS,
            f"file name {name!r}: expected a relative path of non-empty parts separated by '/', "
            "without '.' or '..'",
        )
    if len(parts) == 1 and text in RESERVED_NAMES:
        raise CallError(
            BAD_PARAMS,
            f"file name {name!r} is one of the workspace's own files "
            f"({', '.join(sorted(RESERVED_NAMES))}); put it in a subfolder",
        )
    return text


FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
PRIVATE_FOLDER_MODE = 0o700


def parts_below(path: Path, root: Path) -> tuple[str, ...]:
    """``path``'s parts below ``root`` (resolve_within checked it is inside); CallError
    refused for ``root`` itself, which is no file."""
    parts = path.relative_to(root).parts
    if not parts:
        raise CallError(REFUSED, f"{path} is the folder {root} itself, not a file")
    return parts


def open_folder(
    root: Path, parts: Sequence[str], owner: tuple[int, int] | None, create: bool
) -> int:
    """A descriptor of ``root/parts...``, each part opened relative to the one before
    without following a link: a folder a script's uid swapped for a link after its path
    was checked is refused, never followed. With ``create`` missing parts are made
    (0700, ``owner``'s uid and gid when given). Raises CallError not_found or refused
    naming the part. Shared by the file service and the hub's built-in worker."""
    fd = os.open(root, FOLDER_FLAGS)
    try:
        for index, part in enumerate(parts):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, PRIVATE_FOLDER_MODE, dir_fd=fd)
                    if owner is not None:
                        os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
            where = root.joinpath(*parts[: index + 1])
            try:
                child = os.open(part, FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                raise CallError("not_found", f"no folder {where}") from None
            except OSError as error:  # ELOOP (a link), ENOTDIR (a file)
                raise CallError(REFUSED, f"{where} is not a folder ({error.strerror})") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd
