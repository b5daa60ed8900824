"""YAML files, edited in place as Calamari edits them (docs/structured-variables.md).

Calamari rewrites the parser's event stream, so everything a person wrote that
is not replaced stays: comments, each scalar's quoting, flow or block
collections, block scalars, indentation, ``%YAML``/``%TAG`` directives, tags,
anchors and aliases. ruamel.yaml's round-trip mode keeps the same (nulls are
kept as written by the constructor below). A replaced scalar keeps its style,
tag and anchor and takes the value's text as it is (a plain ``80`` replaced by
``8080`` stays plain; a value that cannot be plain is quoted by the emitter);
a null variable writes a plain ``null``. A replaced mapping or sequence is the
value parsed as YAML, or the value as a double-quoted string when it does not
parse. An alias is not a key of its own: setting the anchored node changes
every alias of it.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    ScalarString,
    SingleQuotedScalarString,
)

from agent.calamari.structured.common import ParseError, Values, Warn

NULL_TAG = "tag:yaml.org,2002:null"
_STYLES: tuple[tuple[type, str], ...] = (
    (SingleQuotedScalarString, "'"),
    (DoubleQuotedScalarString, '"'),
    (LiteralScalarString, "|"),
    (FoldedScalarString, ">"),
)


class NullText(ScalarString):
    """A null scalar, remembering how it was written (``~``, ``null``, nothing)."""


class Verbatim(ScalarString):
    """A replaced scalar: the value's text, written in the old node's style and tag."""

    style: str | None
    explicit_tag: Any  # a tag written out whatever the value resolves to


class _Constructor(RoundTripConstructor):
    def construct_yaml_null(self, node: Any) -> Any:
        return NullText(node.value, anchor=node.anchor)


_Constructor.add_constructor(NULL_TAG, _Constructor.construct_yaml_null)


class _Representer(RoundTripRepresenter):
    def represent_null_text(self, data: NullText) -> Any:
        return self.represent_scalar(NULL_TAG, str(data), anchor=data.yaml_anchor())

    def represent_verbatim(self, data: Verbatim) -> Any:
        resolver = self.dumper.resolver  # the document's YAML version decides
        tag = data.explicit_tag or resolver.resolve(ScalarNode, str(data), (True, False))
        return self.represent_scalar(tag, str(data), style=data.style, anchor=data.yaml_anchor())


_Representer.add_representer(NullText, _Representer.represent_null_text)
_Representer.add_representer(Verbatim, _Representer.represent_verbatim)


def _yaml() -> YAML:
    yaml = YAML()  # round-trip
    yaml.Constructor = _Constructor
    yaml.Representer = _Representer
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never fold a long line that was not folded
    return yaml


def replace(text: str, values: Values, warn: Warn) -> str:
    """``text`` (YAML, one or more documents) with the keys in ``values`` replaced.

    Raises ParseError when it is not YAML.
    """
    if not text.strip():
        return text
    yaml = _yaml()
    try:
        with warnings.catch_warnings(record=True) as caught:  # the step's log, not stderr
            warnings.simplefilter("always")
            documents = list(yaml.load_all(text))
        for warning in caught:
            warn(" ".join(str(warning.message).split()))
    except (YAMLError, AssertionError, RecursionError, ValueError) as error:
        # ruamel asserts on some bad directives (%YAML 1.11): still just "not YAML"
        raise ParseError(str(error).replace("\n", " ") or type(error).__name__) from None
    indent, offset = guess_indent(text)
    yaml.indent(mapping=indent, sequence=max(indent, offset + 2), offset=offset)
    for document in documents:
        _Replacer(values).run(document)
    output = io.StringIO()
    yaml.dump_all(documents, output)
    written = output.getvalue()
    if not text.endswith("\n") and written.endswith("\n"):
        written = written[:-1]
    return written


def guess_indent(text: str) -> tuple[int, int]:
    """(the most common indentation of a nested mapping, the most common column of a
    sequence's dash under its key), as Calamari keeps the most common indent; 2 and 0
    when the text has no nesting."""
    mapping: Counter[int] = Counter()
    dashes: Counter[int] = Counter()
    previous: tuple[int, str] | None = None
    for line in text.splitlines():
        content = line.lstrip(" ")
        if not content or content.startswith(("#", "%", "---", "...")):
            continue
        column = len(line) - len(content)
        if previous is not None and previous[1].rstrip().endswith(":"):
            if content.startswith("- "):
                dashes[column - previous[0]] += 1
            elif column > previous[0]:
                mapping[column - previous[0]] += 1
        previous = (column, content)
    indent = mapping.most_common(1)[0][0] if mapping else 2
    offset = dashes.most_common(1)[0][0] if dashes else 0
    return indent, max(offset, 0)


class _Replacer:
    """One document's replacements, in document order."""

    def __init__(self, values: Values) -> None:
        self.values = values
        self.anchored: set[int] = set()  # anchored nodes met: a second meeting is an alias
        self.replaced: dict[int, Any] = {}  # anchored node -> its replacement, for the aliases

    def run(self, document: Any) -> None:
        self._walk(document, "")
        if self.replaced:
            self._follow_aliases(document, set())

    def _children(self, node: Any) -> list[tuple[Any, Any]]:
        if isinstance(node, CommentedMap):
            merged = {key for _, base in getattr(node, "merge", []) for key in base}
            own = getattr(node, "_ok", None)
            keys = [key for key in node if (key in own if own is not None else key not in merged)]
            return [(key, key) for key in keys]
        if isinstance(node, CommentedSeq):
            return [(index, str(index)) for index in range(len(node))]
        return []

    def _walk(self, node: Any, path: str) -> None:
        for slot, name in self._children(node):
            child = node[slot]
            if _anchor(child) is not None:
                if id(child) in self.anchored:
                    continue  # an alias
                self.anchored.add(id(child))
            key = f"{path}:{name}" if path else str(name)
            found = self.values.get(key.lower())
            if found is None:
                self._walk(child, key)
                continue
            new = _replacement(child, found[1])
            node[slot] = new
            if _anchor(child) is not None:
                self.replaced[id(child)] = new

    def _follow_aliases(self, node: Any, visited: set[int]) -> None:
        if id(node) in visited:
            return
        visited.add(id(node))
        for slot, _ in self._children(node):
            child = node[slot]
            if id(child) in self.replaced:
                node[slot] = self.replaced[id(child)]
            else:
                self._follow_aliases(child, visited)


def _anchor(node: Any) -> str | None:
    anchor = getattr(node, "anchor", None)
    value = getattr(anchor, "value", None)
    return value if isinstance(value, str) else None


def _replacement(node: Any, value: str | None) -> Any:
    anchor = _anchor(node)
    if value is None:
        return NullText("null", anchor=anchor)
    if isinstance(node, (CommentedMap, CommentedSeq)):
        parsed = _fragment(value)
        if parsed is None:
            return _verbatim(value, '"', None, anchor)
        if anchor is not None and hasattr(parsed, "yaml_set_anchor"):
            parsed.yaml_set_anchor(anchor, always_dump=True)
        return parsed
    if isinstance(node, TaggedScalar):
        tag = node.tag  # written as ruamel writes a tagged scalar: "!!" kept as a handle
        if getattr(tag, "handle", None) == "!!":
            tag = f"{tag.handle} {tag.suffix}"
        return _verbatim(value, node.style, tag, anchor)
    style = next((mark for kind, mark in _STYLES if isinstance(node, kind)), None)
    return _verbatim(value, style, None, anchor)


def _verbatim(value: str, style: str | None, tag: Any, anchor: str | None) -> Verbatim:
    result: Verbatim = Verbatim(value, anchor=anchor)
    result.style = style
    result.explicit_tag = tag
    return result


def _fragment(value: str) -> Any:
    """``value`` parsed as a YAML node, or None when it does not parse or holds nothing."""
    if not value.strip():
        return None
    try:
        parsed = _yaml().load(value)
    except YAMLError:
        return None
    return parsed
