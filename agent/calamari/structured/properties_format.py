"""Java ``.properties`` files, as Calamari's PropertiesFormatVariableReplacer edits them.

Only the values of replaced keys change; comments (``#``, ``!``), blank lines,
the keys as written, separators and every other line stay byte for byte. A key
is replaced by the variable of the same (unescaped) name, any case, unless the
name starts with ``Octopus``. The new value is escaped as Octostache's
``PropertiesValueEscape`` escapes (a leading space, ``\\``, CR, LF, tab, and
characters past U+00FE as ``\\uXXXX``); a key written with neither separator
nor value gets ``:``. A value continued over lines (``\\`` at the end) is
replaced whole. Every text reads as properties, so this format never refuses.
"""

from __future__ import annotations

import re

from agent.calamari.structured.common import Values, Warn

_PAIR = re.compile(
    r"(?P<indent>[ \t\f]*)(?P<key>(?:\\.|[^:= \t\f\\])+)(?P<separator>[ \t\f]*[:=]?[ \t\f]*)",
    re.DOTALL,
)
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_KEY_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)


def _logical_lines(text: str) -> list[str]:
    """The text cut into logical lines, each with its own line ending(s) and continuations."""
    physical = text.splitlines(keepends=True)
    lines: list[str] = []
    current = ""
    for line in physical:
        current += line
        body = line.rstrip("\r\n")
        trailing = len(body) - len(body.rstrip("\\"))
        comment = current.lstrip(" \t\f").startswith(("#", "!"))
        if trailing % 2 == 1 and not comment and line != body:
            continue  # an odd number of backslashes: the value goes on
        lines.append(current)
        current = ""
    if current:
        lines.append(current)
    return lines


def unescape_key(raw: str) -> str:
    def one(match: re.Match[str]) -> str:
        escaped = match[1]
        if escaped.startswith("u") and len(escaped) == 5:
            return chr(int(escaped[1:], 16))
        return _ESCAPES.get(escaped, escaped)

    return _KEY_ESCAPE.sub(one, raw)


def escape_value(value: str) -> str:
    def one(index: int, char: str) -> str:
        if char == " " and index == 0:
            return "\\ "
        mapped = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}.get(char)
        if mapped:
            return mapped
        return char if ord(char) < 0xFF else f"\\u{ord(char):04x}"

    return "".join(one(index, char) for index, char in enumerate(value))


def replace(text: str, values: Values, warn: Warn) -> str:
    """``text`` with the values of the keys named in ``values`` replaced (never raises)."""
    del warn  # nothing here warns: every line is kept or replaced
    output: list[str] = []
    for line in _logical_lines(text):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        stripped = body.lstrip(" \t\f")
        match = _PAIR.match(body)
        if not stripped or stripped.startswith(("#", "!")) or match is None:
            output.append(line)
            continue
        name = unescape_key(match["key"])
        found = values.get(name.lower())
        if found is None or found[1] is None or name.lower().startswith("octopus"):
            output.append(line)
            continue
        separator = match["separator"] or ":"  # "key" alone: the value would join the key
        output.append(match["indent"] + match["key"] + separator + escape_value(found[1]) + ending)
    return "".join(output)
