"""Reading request bodies as Octopus's server does: unknown properties are ignored,
a missing or invalid known one is a 422 that names it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from aiohttp import web

from agent.hub.api.errors import ApiError, bad_request, invalid
from agent.hub.rules.names import control_character_problem

MAX_BODY = 1024 * 1024  # aiohttp's client_max_size (its default, api/app.py) is the same
MAX_TEXT = 200  # a name's column holds this many characters
SMALLEST, LARGEST = -(2**31), 2**31 - 1  # what every database's INTEGER holds


def too_large() -> ApiError:
    """The 413 for a JSON body over MAX_BODY, naming the limit and what to do."""
    return ApiError(
        413,
        f"the request body is larger than this hub's limit of {MAX_BODY} bytes (1 MiB) for "
        "a JSON body: keep a ScriptBody under it, or put bigger content in a package "
        "(POST /api/packages/raw) and deploy it",
    )


class NotFinite(ValueError):
    """A number JSON does not have (NaN, Infinity) or that no float holds (1e400)."""


def _constant(text: str) -> float:
    raise NotFinite(f"{text} is not a JSON number (give a finite number)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotFinite(f"{text} is too large for a number (give a finite number)")
    return value


def loads(raw: bytes | str) -> Any:
    """JSON as the standard defines it: NaN, Infinity and -Infinity (which Python's
    json accepts and then writes, making answers that are not JSON) and numbers too
    large for a float are refused with NotFinite naming them."""
    return json.loads(raw, parse_constant=_constant, parse_float=_finite)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 400 if it is not JSON (non-finite numbers included)
    or not an object."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:  # aiohttp's bare "Request Entity Too Large"
        raise too_large() from None
    if len(raw) > MAX_BODY:
        raise too_large()
    try:
        value = loads(raw or b"null")
    except NotFinite as error:
        raise bad_request(f"the request body is not valid JSON: {error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request(f"the request body is not valid JSON: {error}") from None
    except RecursionError:
        raise bad_request("the request body is JSON nested too deeply to be a resource") from None
    if not isinstance(value, dict):
        raise bad_request("the request body must be a JSON object")
    return value


class Fields:
    """Collects the problems of one body, so that a 422 names every bad field at once."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.errors: list[str] = []

    def text(self, name: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.body.get(name)
        if value is None or (required and isinstance(value, str) and not value.strip()):
            if required:
                self.errors.append(f"{name} is required (a non-empty string)")
            return default
        if not isinstance(value, str):
            self.errors.append(f"{name} must be a string, not {json.dumps(value)[:80]}")
            return default
        if "\x00" in value:
            self.errors.append(f"{name} must not contain NUL characters")
            return default
        return value.strip()

    def boolean(self, name: str, default: bool) -> bool:
        value = self.body.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.errors.append(f"{name} must be true or false, not {json.dumps(value)}")
            return default
        return value

    def integer(self, name: str, default: int) -> int:
        value = self.body.get(name)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self.errors.append(f"{name} must be a whole number, not {json.dumps(value)[:80]}")
            return default
        if not SMALLEST <= value <= LARGEST:
            self.errors.append(f"{name} must be a whole number from {SMALLEST} to {LARGEST}")
            return default
        return value

    def name(self, field: str = "Name") -> str | None:
        """A required name: non-empty, at most MAX_TEXT characters, no control character
        (a name is shown in lines: events, logs, the CLI's tables)."""
        value = self.text(field, required=True)
        if value is not None and len(value) > MAX_TEXT:
            self.errors.append(f"{field} must be at most {MAX_TEXT} characters, not {len(value)}")
            return None
        if value is not None and (problem := control_character_problem(value)):
            self.errors.append(f"{field} must not contain {problem}")
            return None
        return value

    def strings(self, name: str, *, required: bool = False) -> list[str]:
        value = self.body.get(name)
        if value is None:
            if required:
                self.errors.append(f"{name} is required (a list of strings)")
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.errors.append(f"{name} must be a list of strings, not {json.dumps(value)}")
            return []
        return [v.strip() for v in value]

    def choice(self, name: str, choices: tuple[str, ...], default: str | None) -> str | None:
        value = self.text(name, default=default)
        if value is not None and value not in choices:
            self.errors.append(f"{name} must be one of {', '.join(choices)}, not {value!r}")
            return default
        return value

    def check(self, name: str, ok: Callable[[Any], bool], expected: str) -> None:
        if name in self.body and self.body[name] is not None and not ok(self.body[name]):
            self.errors.append(f"{name} must be {expected}, not {json.dumps(self.body[name])}")

    def done(self) -> None:
        """Raise the 422 if any field was wrong."""
        if self.errors:
            raise invalid(self.errors)
