"""Where the file service may read and write: inside the allowed roots only."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from agent.errors import CallError
from agent.protocol.messages import REFUSED


def resolve_within(requested: str, home: Path, roots: Sequence[Path]) -> Path:
    """The real path for ``requested``, relative to ``home`` unless absolute.

    ``\\`` counts as ``/`` (Windows-style paths from servers). Symbolic links are
    followed before the check, so a link pointing out is refused like ``..``.
    Raises CallError(refused) naming the path and the allowed roots.
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
            "`tentacle configure --instance INSTANCE --file-root DIR` on the agent allows another",
        )
    return resolved
