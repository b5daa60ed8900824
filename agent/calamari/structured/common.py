"""What the structured-variable formats share."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Warn = Callable[[str], None]
Values = Mapping[str, tuple[str, str | None]]  # lower-cased key -> (variable name, value)
_RESERVED = re.compile(r"^Octopus([^:]|$)", re.IGNORECASE)


class ParseError(Exception):
    """The text is not a document of this format; the message says why."""


class Refused(Exception):
    """The document asks for something refused for safety (an XML entity declaration)."""


def replacements(variables: Mapping[str, str | None]) -> dict[str, tuple[str, str | None]]:
    """The variables that may replace keys: all but ``Octopus…`` (``Octopus:…`` may)."""
    allowed = {name: value for name, value in variables.items() if not _RESERVED.match(name)}
    return {name.lower(): (name, value) for name, value in allowed.items()}
