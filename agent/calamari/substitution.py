"""Substituting variables into files, and finding files by Octopus-style globs."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from agent.calamari.templates import evaluate_with_errors

_BRACES = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """``a.{json,yml}`` -> ``a.json``, ``a.yml`` (nested braces expand too)."""
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [item for choice in match[1].split(",") for item in expand_braces(head + choice + tail)]


def matching_files(root: Path, patterns: str) -> Iterator[Path]:
    """Files under ``root`` matched by the newline-separated globs (``*``, ``?``, ``**``,
    ``[ab]``, ``{a,b}``), each once, never outside ``root``."""
    seen: set[Path] = set()
    real_root = root.resolve()
    for line in patterns.splitlines():
        for pattern in expand_braces(line.strip()):
            if not pattern or pattern.startswith("/") or ".." in Path(pattern).parts:
                continue
            for path in sorted(root.glob(pattern)):
                resolved = path.resolve()
                if path.is_file() and resolved.is_relative_to(real_root) and resolved not in seen:
                    seen.add(resolved)
                    yield path


BOM = b"\xef\xbb\xbf"


def read_text(path: Path) -> tuple[str, bool]:
    """A UTF-8 file's text, and whether it began with a byte order mark."""
    raw = path.read_bytes()
    return raw.removeprefix(BOM).decode(), raw.startswith(BOM)


def write_text(path: Path, text: str, bom: bool) -> None:
    """Write ``text`` as UTF-8, with a byte order mark if the original had one."""
    path.write_bytes((BOM if bom else b"") + text.encode())


def substitute_file(path: Path, variables: Mapping[str, str | None]) -> str | None:
    """Evaluate ``path`` as a template in place (leniently); returns the error text, if any.

    Keeps a UTF-8 byte order mark and the file's line endings.
    """
    text, bom = read_text(path)
    result = evaluate_with_errors(text, variables, lenient=True)
    write_text(path, result.text or "", bom)
    return result.error
