"""Keeping secrets out of output: every form of a sensitive value becomes ``********``.

A secret is masked as written, and in the forms a script is likely to print it
in: base64 (at any alignment inside longer base64), URL-encoded and
JSON-escaped. :class:`Masker` works on a stream, so a secret split across
writes or lines is still caught: it holds back only as many characters as the
longest form could still need.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus

MASK = "********"
MIN_BASE64_FRAGMENT = 4  # shorter aligned fragments would mask innocent base64 text


def encoded_forms(secret: str) -> set[str]:
    """The secret and the encodings of it that output may contain."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    data = secret.encode()
    forms.add(base64.b64encode(data).decode().rstrip("="))
    for offset, skip in ((1, 2), (2, 3)):  # the secret starting 1 or 2 bytes into a group
        aligned = b"\0" * offset + data
        whole = len(aligned) // 3 * 3
        fragment = base64.b64encode(aligned[:whole]).decode()[skip:]
        if len(fragment) >= MIN_BASE64_FRAGMENT:
            forms.add(fragment)
    return {form for form in forms if form}


class Masker:
    """Masks secrets in text fed in pieces; what it returns is safe to show."""

    def __init__(self, secrets: set[str] | None = None) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._longest = 0
        self._pending = ""
        for secret in secrets or ():
            self.add(secret)

    def add(self, secret: str) -> None:
        """Mask ``secret`` from now on (empty values are ignored)."""
        if not secret or secret in self._forms:
            return
        self._forms |= encoded_forms(secret)
        ordered = sorted(self._forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered)))
        self._longest = len(ordered[0])

    def feed(self, text: str) -> str:
        """The masked text that is safe to emit now; the rest waits for more (or flush)."""
        if self._pattern is None:
            return text
        buffer = self._pending + text
        decided = len(buffer) - self._longest + 1  # from here on a form could still be cut off
        out, position = [], 0
        for match in self._pattern.finditer(buffer):
            if match.start() >= decided:
                break
            out += [buffer[position : match.start()], MASK]
            position = match.end()
        end = max(position, decided)
        out.append(buffer[position:end])
        self._pending = buffer[end:]
        return "".join(out)

    def flush(self) -> str:
        """Everything held back, masked."""
        buffer, self._pending = self._pending, ""
        if self._pattern is None:
            return buffer
        return self._pattern.sub(MASK, buffer)

    def mask(self, text: str) -> str:
        """``text`` masked as a whole (nothing held back)."""
        return self._pattern.sub(MASK, text) if self._pattern is not None else text
