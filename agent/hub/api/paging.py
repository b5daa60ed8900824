"""Octopus's paging envelope, as a pure function of a page of items and the query."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

DEFAULT_TAKE = 30
ALL = 2147483647  # what Octopus's clients send for "every item"
# Octopus reads skip and take as 32-bit ints; its clients' "every item" is the largest
LARGEST = ALL
_DIGITS = re.compile(r"[0-9]{1,30}")  # ASCII only (\d takes every script's digits)


class BadPaging(ValueError):
    pass


@dataclass(frozen=True)
class Page:
    skip: int
    take: int

    def slice(self, items: Sequence[Any]) -> Sequence[Any]:
        return items[self.skip : self.skip + self.take]


def _number(query: Mapping[str, str], name: str, default: int) -> int:
    """One paging number: ASCII digits only, at most LARGEST. Python's int() also takes
    full-width digits, "1_000", "+1" and "1\n", which no Octopus client sends, and any
    size, which would be echoed back as ItemsPerPage; each is BadPaging here."""
    text = query.get(name)
    if text is None or text == "":
        return default
    if not _DIGITS.fullmatch(text):
        raise BadPaging(
            f"{name} must be a whole number from 0 to {LARGEST} in digits 0-9, not {text[:40]!r}"
        )
    value = int(text)
    if value > LARGEST:
        raise BadPaging(f"{name} must be at most {LARGEST}, not {text}")
    return value


def page_of(query: Mapping[str, str]) -> Page:
    """``skip`` and ``take`` from a query string; BadPaging naming the one that is wrong."""
    return Page(_number(query, "skip", 0), _number(query, "take", DEFAULT_TAKE))


def envelope(
    item_type: str,
    path: str,
    items: Sequence[Any],
    total: int,
    page: Page,
    template_parameters: Sequence[str] = ("skip", "take", "ids", "partialName"),
    query: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A collection as Octopus returns it: ``Items`` is this page, ``TotalResults`` all of them.

    ``path`` is the collection's route (e.g. ``/api/Spaces-1/workers``); ``query`` the
    other filters, kept in the page links.
    """
    take = page.take
    pages = (total + take - 1) // take if take else 0
    filters = {k: v for k, v in (query or {}).items() if k not in ("skip", "take")}

    def link(skip: int, size: int) -> str:
        return f"{path}?{urlencode({**filters, 'skip': skip, 'take': size})}"

    last_skip = max(pages - 1, 0) * take
    return {
        "ItemType": item_type,
        "TotalResults": total,
        "ItemsPerPage": take,
        "NumberOfPages": pages,
        "LastPageNumber": max(pages - 1, 0),
        "Items": list(items),
        "Links": {
            "Self": link(page.skip, take),
            "Template": f"{path}{{?{','.join(template_parameters)}}}",
            "Page.All": link(0, ALL),
            "Page.Current": link(page.skip, take),
            "Page.Last": link(last_skip, take),
        },
    }
