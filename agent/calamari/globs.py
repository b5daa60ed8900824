"""Finding a step's target files by Octopus's globs, as Calamari's ``Glob`` does.

A pattern is relative to the deployment folder, ``/`` or ``\\`` between
folders. ``*`` and ``?`` match within a name, ``**`` matches zero or more
folders (so ``**/a.json`` finds the top folder's ``a.json`` too), names match
in any case. ``{a,b}`` and ``[ab]``/``[a-c]`` are groups, expanded into each
alternative; the pattern is also tried with its brackets and braces taken
literally, so that a folder really called ``[x]`` or ``{y}`` still matches.
A pattern without any glob character names one path exactly. Patterns that
are absolute or climb out with ``..`` match nothing, and a match is never
outside the folder (symbolic links included).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

GLOB_CHARACTERS = frozenset("*?{}[]")
MAX_ALTERNATIVES = 1024  # a pattern's groups never expand into more patterns than this
_BRACES = re.compile(r"\{([^{}]*)\}")
_CLASS = re.compile(r"\[([^\[\]]+)\]")


def target_lines(value: str, separators: str = "\n") -> list[str]:
    """A targets variable's patterns: split on newlines (and ``separators``), trimmed."""
    pattern = "|".join(re.escape(separator) for separator in {"\n", *separators})
    return [line.strip() for line in re.split(pattern, value) if line.strip()]


def expand_groups(pattern: str) -> list[str]:
    """``a.{json,yml}`` -> ``a.json``, ``a.yml``; ``[ab]`` and ``[a-c]`` -> each character."""
    results = [pattern]
    for expression, alternatives in ((_BRACES, _brace_choices), (_CLASS, _class_choices)):
        expanded: list[str] = []
        pending = list(results)
        while pending and len(expanded) + len(pending) <= MAX_ALTERNATIVES:
            item = pending.pop(0)
            match = expression.search(item)
            if match is None:
                expanded.append(item)
                continue
            head, tail = item[: match.start()], item[match.end() :]
            pending.extend(head + choice + tail for choice in alternatives(match[1]))
        results = expanded + pending
    return list(dict.fromkeys(results))


def _brace_choices(body: str) -> list[str]:
    return body.split(",")


def _class_choices(body: str) -> list[str]:
    choices: list[str] = []
    index = 0
    while index < len(body):
        if index + 2 < len(body) and body[index + 1] == "-":
            low, high = ord(body[index]), ord(body[index + 2])
            choices.extend(chr(code) for code in range(low, min(high, low + 255) + 1))
            index += 3
        else:
            choices.append(body[index])
            index += 1
    return choices


def matches(root: Path, pattern: str) -> list[Path]:
    """The files and folders under ``root`` that ``pattern`` names, sorted, each once."""
    pattern = pattern.replace("\\", "/").strip()
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    if not pattern or pattern.startswith("/") or ".." in parts:
        return []
    real_root = root.resolve()
    if not GLOB_CHARACTERS & set(pattern):
        found = [root.joinpath(*parts)] if parts else [root]
    else:
        found = []
        for variant in [*expand_groups(pattern), pattern]:
            segments = [part for part in variant.split("/") if part not in ("", ".")]
            found.extend(_walk(root, segments))
    unique: dict[Path, Path] = {}
    for path in found:
        if path.exists() and path.resolve().is_relative_to(real_root):
            unique.setdefault(path.resolve(), path)
    return sorted(unique.values())


def _walk(root: Path, segments: list[str]) -> Iterator[Path]:
    current = [root]
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if segment == "**":
            current = [found for folder in current for found in _folders_below(folder)]
            continue
        name = re.compile(_name_regex(segment), re.IGNORECASE)
        current = [
            entry
            for folder in current
            for entry in _entries(folder)
            if name.fullmatch(entry.name) and (last or entry.is_dir())
        ]
    yield from current


def _name_regex(segment: str) -> str:
    return "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in segment
    )


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _folders_below(folder: Path) -> Iterator[Path]:
    """``folder`` and every folder under it (links to folders are not followed)."""
    yield folder
    for entry in _entries(folder):
        if entry.is_dir() and not entry.is_symlink():
            yield from _folders_below(entry)


def matching_files(root: Path, patterns: list[str]) -> Iterator[Path]:
    """The files (not folders) the patterns match, in pattern order, each once."""
    seen: set[Path] = set()
    for pattern in patterns:
        for path in matches(root, pattern):
            if path.is_file() and path.resolve() not in seen:
                seen.add(path.resolve())
                yield path
