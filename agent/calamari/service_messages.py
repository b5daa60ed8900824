"""Service messages: ``##octopus[name attr='base64' ...]`` lines in a script's output.

A script talks to the deployment through them: output variables
(``setVariable``), artifacts (``createArtifact``), progress, a result message,
secrets to mask, and switches of the level applied to following lines
(``stdout-warning``, ``stderr-progress``…). Every attribute value travels as
base64 of its UTF-8 bytes, so any text survives the trip.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from xml.etree import ElementTree

PREFIX = "##octopus"
_NAME = re.compile(r"[A-Za-z_][\w.-]*")
LEVEL_SWITCHES = frozenset(
    {
        f"stdout-{level}"
        for level in ("default", "verbose", "warning", "highlight", "wait", "error", "ignore")
    }
    | {f"stderr-{level}" for level in ("default", "error", "progress", "ignore")}
)


@dataclass(frozen=True)
class ServiceMessage:
    name: str
    attributes: dict[str, str] = field(default_factory=dict)

    def get(self, attribute: str, default: str | None = None) -> str | None:
        """An attribute's decoded value; attribute names are case-insensitive."""
        lowered = attribute.lower()
        return next(
            (value for key, value in self.attributes.items() if key.lower() == lowered), default
        )

    def __str__(self) -> str:
        return format_message(self.name, self.attributes)


def format_message(name: str, attributes: dict[str, str | None] | dict[str, str]) -> str:
    """The line that carries ``name`` and ``attributes`` (None values are left out).

    Raises ValueError if a name is not an XML name.
    """
    for item in (name, *attributes):
        if not _NAME.fullmatch(item):
            raise ValueError(f"{item!r} is not a valid service message or attribute name")
    encoded = "".join(
        f" {key}='{base64.b64encode(value.encode()).decode('ascii')}'"
        for key, value in attributes.items()
        if value is not None
    )
    return f"{PREFIX}[{name}{encoded}]"


def parse_line(line: str) -> ServiceMessage | None:
    """The service message in ``line``, or None if it has none (or a malformed one).

    Like Calamari: the message may start anywhere in the line and ends at the
    first ``]``; line breaks inside it are ignored; every attribute must be
    valid base64 of UTF-8 text.
    """
    start = line.find(PREFIX)
    if start < 0:
        return None
    end = line.find("]", start)
    if end < 0:
        return None
    content = line[start + len(PREFIX) : end].strip()
    content = content.removeprefix("[").replace("\r", "").replace("\n", "").strip()
    if not content or not _NAME.match(content):
        return None
    try:
        element = ElementTree.fromstring(f"<{content}/>")  # noqa: S314 - one start tag: no DTD, no entities
    except ElementTree.ParseError:
        return None
    try:
        attributes = {
            key: base64.b64decode(value, validate=True).decode()
            for key, value in element.attrib.items()
        }
    except (binascii.Error, UnicodeDecodeError):
        return None
    return ServiceMessage(element.tag, attributes)
