"""Structured configuration variables: set values inside JSON, XML, YAML and
Java properties files by key (the rules: docs/structured-variables.md).

Which format a file is, is found as Calamari finds it: a ``.json`` file is
JSON; a file named as another format (``.xml``, ``.yml``/``.yaml``,
``.properties``) is tried as JSON first, then as that format; any other file
as JSON, XML, YAML and properties in that order, the first that parses being
the one. With the fallback flag every file is JSON. The file's encoding, byte
order mark and most common line ending are kept (agent/calamari/textfiles.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.calamari import textfiles
from agent.calamari.structured import json_format, properties_format
from agent.calamari.structured.common import ParseError, Refused, Values, Warn, replacements

__all__ = ["FORMATS", "ParseError", "StructuredError", "formats_for", "replacements", "update_file"]


class StructuredError(Exception):
    """A target file parses as none of the formats tried, or is refused; the message says why."""


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    replace: Callable[[str, Values, Warn], str | None]  # None: leave the file as it is
    # formats that read the bytes themselves (XML: its declaration names an encoding)
    rewrite: Callable[[bytes, Mapping[str, str | None], Warn], bytes] | None = None


def _json(text: str, values: Values, warn: Warn) -> str:
    return json_format.replace(text, values, warn)


def _yaml(text: str, values: Values, warn: Warn) -> str:
    # ruamel.yaml takes ~0.13 s to import: only a deployment with a YAML candidate pays it
    from agent.calamari.structured import yaml_format  # noqa: PLC0415

    return yaml_format.replace(text, values, warn)


def _not_xml(text: str, values: Values, warn: Warn) -> str | None:
    """XML is read from the file's bytes (Format.rewrite); never called."""
    raise AssertionError("XML is rewritten from bytes")


def _xml(raw: bytes, variables: Mapping[str, str | None], warn: Warn) -> bytes:
    from agent.calamari.structured import xml_format  # noqa: PLC0415

    return xml_format.rewrite(raw, variables, warn)


FORMATS = (
    Format("JSON", (".json",), _json),
    Format("XML", (".xml",), _not_xml, _xml),
    Format("YAML", (".yml", ".yaml"), _yaml),
    Format("Properties", (".properties",), properties_format.replace),
)
JSON = FORMATS[0]


def formats_for(path: Path, fallback: bool) -> list[Format]:
    """The formats to try for ``path``, in Calamari's order."""
    if fallback:
        return [JSON]
    named = next((f for f in FORMATS if path.name.lower().endswith(f.suffixes)), None)
    if named is None:
        return list(FORMATS)
    return [JSON] if named is JSON else [JSON, named]


def update_file(
    path: Path, variables: Mapping[str, str | None], warn: Warn, *, fallback: bool = False
) -> str:
    """Apply the variables to ``path``; returns the format it was read as.

    Raises StructuredError when the last format tried does not parse it either.
    """
    values = replacements(variables)
    raw = path.read_bytes()
    source = textfiles.decode(raw)
    newline = textfiles.line_ending(source.text)
    text = source.text.replace("\r\n", "\n")
    tried = formats_for(path, fallback)
    for position, candidate in enumerate(tried):
        try:
            if candidate.rewrite is not None:
                path.write_bytes(candidate.rewrite(raw, variables, warn))
                return candidate.name
            output = candidate.replace(text, values, warn)
        except Refused as error:
            raise StructuredError(
                f"Structured variable replacement refused file {path}: {error}"
            ) from None
        except ParseError as error:
            if position == len(tried) - 1:
                raise StructuredError(
                    f"Structured variable replacement failed on file {path}. The file could "
                    f"not be parsed as {candidate.name}: {error}"
                ) from None
            if candidate.rewrite is not None and _looks_xml(text):
                warn(
                    f"{path} begins as XML but is not well-formed ({error}); "
                    "the file is left as it is"
                )
                return candidate.name
            continue
        if output is not None:
            textfiles.write(path, output.replace("\n", newline), source.encoding, warn)
        return candidate.name
    raise AssertionError("no format to try")  # formats_for never returns none


def _looks_xml(text: str) -> bool:
    """A document that begins with "<" is never read as YAML or properties after XML."""
    return text.lstrip("\ufeff \t\r\n").startswith("<")
