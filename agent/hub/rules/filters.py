"""Query filters read strictly: a value the hub does not know is an error that names
the parameter, the value and what is accepted, never a filter silently ignored (an
ignored filter returns every item, and a typo then acts on all of them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent.hub import ids


class BadFilter(ValueError):
    """A query parameter with a value the collection does not accept (the API's 400)."""


def listed(query: Mapping[str, str], name: str) -> list[str] | None:
    """The comma-separated values of ``name``, or None when it is absent or empty."""
    text = query.get(name)
    if text is None or not text.strip():
        return None
    return [part.strip() for part in text.split(",") if part.strip()] or None


def _refuse(name: str, expected: str, bad: Sequence[str]) -> BadFilter:
    return BadFilter(f"{name} must be {expected}, not {', '.join(repr(value) for value in bad)}")


def choices(query: Mapping[str, str], name: str, accepted: Sequence[str]) -> set[str] | None:
    """The values of ``name``, each one of ``accepted`` (case-insensitively), as the
    accepted spellings; None when absent; BadFilter naming the values it does not know."""
    values = listed(query, name)
    if values is None:
        return None
    spelt = {choice.lower(): choice for choice in accepted}
    bad = [value for value in values if value.lower() not in spelt]
    if bad:
        raise _refuse(name, f"among {', '.join(accepted)}", bad)
    return {spelt[value.lower()] for value in values}


def id_values(query: Mapping[str, str], name: str, kind: str) -> set[int] | None:
    """The values of ``name`` as row numbers of ``kind`` ids (``WorkerPools-2`` -> 2);
    None when absent; BadFilter naming the values that are not such ids. An id that is
    well formed but names nothing simply matches nothing, as ``ids`` does."""
    values = listed(query, name)
    if values is None:
        return None
    numbers = {value: ids.try_parse_id(kind, value) for value in values}
    bad = [value for value, number in numbers.items() if number is None]
    if bad:
        raise _refuse(name, f"{kind} ids ({kind}-N, comma-separated)", bad)
    return {number for number in numbers.values() if number is not None}


def flag(query: Mapping[str, str], name: str) -> bool | None:
    """``true`` or ``false`` (any case); None when absent or empty; BadFilter otherwise."""
    text = query.get(name)
    if text is None or not text.strip():
        return None
    if text.strip().lower() not in ("true", "false"):
        raise _refuse(name, "true or false", [text])
    return text.strip().lower() == "true"
