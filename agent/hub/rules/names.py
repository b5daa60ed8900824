"""What a name may hold: the hub shows names in lines (events, logs, the CLI's tables),
so a newline or another control character in one could forge or break a line."""

from __future__ import annotations

import unicodedata

# control characters (C0, DEL, C1) and Unicode's line and paragraph separators
_REFUSED = frozenset({"Cc", "Zl", "Zp"})


def control_character_problem(text: str) -> str | None:
    """None if ``text`` has no control character, else words naming the first one and
    where it is (``a newline (U+000A) at character 2``), to follow "must not contain"."""
    for position, character in enumerate(text, start=1):
        if unicodedata.category(character) in _REFUSED:
            return f"control characters: {_named(character)} at character {position}"
    return None


def _named(character: str) -> str:
    code = f"U+{ord(character):04X}"
    known = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "NUL"}
    return f"{known[character]} ({code})" if character in known else code
