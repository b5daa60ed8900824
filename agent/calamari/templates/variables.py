"""Variables as Octostache binds them: a case-insensitive tree built from flat names.

``Octopus.Action[Package A].Name`` becomes root -> octopus -> action ->
[package a] -> name. A node reached through an index carries the index text as
its value (so that looping over indexed children yields their keys); children
keep the order in which they were first defined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.calamari.templates.syntax import parse_path


@dataclass
class Binding:
    """One node of the tree: a value (or none) and named and indexed children."""

    value: str | None = None
    defined: bool = False
    children: dict[str, Binding] = field(default_factory=dict)
    indexed: dict[str, Binding] = field(default_factory=dict)

    def child(self, name: str, *, indexed: bool) -> Binding | None:
        if indexed and name == "*":
            return next(iter(self.indexed.values()), None)
        return (self.indexed if indexed else self.children).get(name.lower())

    def add(self, name: str, *, indexed: bool) -> Binding:
        table = self.indexed if indexed else self.children
        node = table.get(name.lower())
        if node is None:
            node = Binding(name, True) if indexed else Binding()
            table[name.lower()] = node
        return node


def bind(variables: Mapping[str, str | None]) -> Binding:
    """The tree of ``variables``; names that are not valid paths are left out."""
    root = Binding()
    for name, value in variables.items():
        steps = _literal_steps(name)
        if steps is None:
            continue
        node = root
        for text, indexed in steps:
            node = node.add(text, indexed=indexed)
        node.value, node.defined = value, True
    return root


def _literal_steps(name: str) -> list[tuple[str, bool]] | None:
    path = parse_path(name)
    return None if path is None else [(step.text, step.indexed) for step in path.steps]


def from_json(value: Any) -> Binding:
    """A tree for a JSON value: objects by property, arrays by index."""
    node = Binding(render_json(value), True)
    if isinstance(value, dict):
        for key, item in value.items():
            node.children[str(key).lower()] = node.indexed[str(key).lower()] = from_json(item)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            node.indexed[str(position)] = from_json(item)
    return node


def render_json(value: Any) -> str:
    """A JSON value as Octostache prints it: scalars bare, containers compact."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_UNQUOTED_KEY = re.compile(r"([{,]\s*)([A-Za-z_@$][\w@$.-]*)\s*:")


def parse_json(text: str) -> Any:
    """Parse JSON leniently, as Newtonsoft does: unquoted keys and single quotes.

    Raises ValueError if it is not JSON even so.
    """
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        raise ValueError("not a JSON object or array")
    try:
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            pass
        relaxed = _UNQUOTED_KEY.sub(
            lambda m: f'{m.group(1)}"{m.group(2)}":', _single_to_double(stripped)
        )
        return json.loads(relaxed)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _single_to_double(text: str) -> str:
    """Turn 'single-quoted' strings into "double-quoted" ones, outside double quotes."""
    out, quote, at = [], "", 0
    while at < len(text):
        char = text[at]
        if quote:
            if char == "\\" and at + 1 < len(text):
                out.append(text[at : at + 2])
                at += 2
                continue
            if char == quote:
                out.append('"')
                quote = ""
            elif char == '"' and quote == "'":
                out.append('\\"')
            else:
                out.append(char)
        elif char in "'\"":
            quote = char
            out.append('"')
        else:
            out.append(char)
        at += 1
    return "".join(out)
