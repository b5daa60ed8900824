"""API keys: made once, shown once, stored only as a hash.

A key is ``API-`` and 32 characters of A-Z and 0-9 (about 165 bits from the
system's CSPRNG). With that much entropy a single SHA-256 is the right hash:
a slow password hash would add nothing but latency to every request (the
same choice GitHub made for its tokens); docs/decisions.md has the reasoning.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import string

PREFIX = "API-"
ALPHABET = string.ascii_uppercase + string.digits
LENGTH = 32


class Permission(enum.StrEnum):
    CONFIGURE_SERVER = "ConfigureServer"
    READ_ONLY = "ReadOnly"

    def allows_changes(self) -> bool:
        return self is Permission.CONFIGURE_SERVER


def new_api_key() -> str:
    return PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def key_hash(key: str) -> str:
    """The stored form of ``key``: lower-case hex SHA-256 of its text."""
    return hashlib.sha256(key.strip().encode("utf-8")).hexdigest()


def looks_like_key(text: str) -> bool:
    body = text.strip().removeprefix(PREFIX)
    return text.strip().startswith(PREFIX) and len(body) >= 26 and body.isalnum()


def same_hash(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())
