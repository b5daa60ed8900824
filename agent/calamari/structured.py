"""Structured configuration variables: set values inside JSON and YAML files by key path.

Every node of the document has a key: its path from the root joined with
``:``, array elements by index (``Logging:LogLevel:Default``,
``Servers:0:Host``). A variable whose name equals a key (any case) replaces
that node. Variables named ``Octopus…`` are left out (unless ``Octopus:…``).
A number or boolean stays one when the value reads as one; an object or array
is replaced by the value parsed as JSON (YAML for YAML files), and left alone
with a warning when it does not parse; a null variable gives null.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from agent.calamari.substitution import read_text, write_text

Warn = Callable[[str], None]
_IGNORED = re.compile(r"^Octopus([^:]|$)", re.IGNORECASE)


class StructuredError(Exception):
    """A target file cannot be parsed as its format."""


def replacements(variables: Mapping[str, str | None]) -> dict[str, str | None]:
    """The variables that may replace keys, by lower-cased name."""
    return {name.lower(): value for name, value in variables.items() if not _IGNORED.match(name)}


def apply(
    document: Any, values: Mapping[str, str | None], parse: Callable[[str], Any], warn: Warn
) -> Any:
    """``document`` with the nodes whose keys are in ``values`` (lower-cased) replaced."""

    def walk(node: Any, key: str) -> Any:
        if key and key.lower() in values:
            return _replace(node, values[key.lower()], key, parse, warn)
        if isinstance(node, dict):
            return {
                name: walk(child, f"{key}:{name}" if key else str(name))
                for name, child in node.items()
            }
        if isinstance(node, list):
            return [
                walk(child, f"{key}:{index}" if key else str(index))
                for index, child in enumerate(node)
            ]
        return node

    return walk(document, "")


def _replace(
    node: Any, value: str | None, key: str, parse: Callable[[str], Any], warn: Warn
) -> Any:
    if value is None:
        return None
    if isinstance(node, bool):
        lowered = value.strip().lower()
        return lowered == "true" if lowered in ("true", "false") else value
    if isinstance(node, (int, float)):
        try:
            number = json.loads(value)
        except ValueError:
            return value
        return (
            number if isinstance(number, (int, float)) and not isinstance(number, bool) else value
        )
    if isinstance(node, (dict, list)):
        try:
            return parse(value)
        except (ValueError, yaml.YAMLError):
            warn(f"{key}: the value is not valid structured data; left unchanged")
            return node
    return value


def update_file(path: Path, variables: Mapping[str, str | None], warn: Warn) -> None:
    """Apply the variables to the JSON or YAML file ``path`` (by extension; others as JSON).

    Raises StructuredError if the file does not parse as its format.
    """
    values = replacements(variables)
    text, bom = read_text(path)
    newline = "\r\n" if "\r\n" in text else "\n"
    if path.suffix.lower() in (".yml", ".yaml"):
        try:
            document = yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError as error:
            raise StructuredError(f"{path}: not valid YAML: {error}") from None
        updated = apply(document, values, yaml.safe_load, warn)
        output = yaml.safe_dump(
            updated, sort_keys=False, allow_unicode=True, default_flow_style=False
        )
    else:
        try:
            document = json.loads(text) if text.strip() else {}
        except ValueError as error:
            raise StructuredError(f"{path}: not valid JSON: {error}") from None
        updated = apply(document, values, json.loads, warn)
        output = json.dumps(updated, indent=2, ensure_ascii=False) + "\n"
    write_text(path, output.replace("\n", newline), bom)
