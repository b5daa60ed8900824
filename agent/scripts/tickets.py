"""Script tickets: chosen by the caller, compared case-insensitively, safe as folder names."""

from __future__ import annotations

import re

from agent.errors import CallError

_TICKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def ticket_key(ticket: str) -> str:
    """The canonical (lower-case) form used for lookups and the workspace folder.

    Raises CallError(bad_params) unless the ticket is 1-128 letters, digits,
    '.', '-' or '_' starting with a letter or digit.
    """
    if not isinstance(ticket, str) or not _TICKET.fullmatch(ticket):
        raise CallError(
            "bad_params",
            f"invalid script ticket {ticket!r}: expected 1 to 128 letters, digits, '.', '-' "
            "or '_', starting with a letter or digit",
        )
    return ticket.lower()
