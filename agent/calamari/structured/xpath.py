"""The part of XPath 2 that structured-variable keys use, over xml_tree's nodes.

Calamari compiles a key with Wmhelp.XPath2 and the document's namespace
prefixes; a key that does not compile is no key (``XPathError``). Supported
here: absolute and relative location paths (``/``, ``//``, ``.``, ``..``), the
axes ``child``, ``attribute`` (``@``), ``self``, ``parent``, ``descendant``,
``descendant-or-self``; name tests ``name``, ``p:name``, ``*``, ``p:*``,
``*:name``; kind tests ``text()``, ``comment()``, ``node()``,
``processing-instruction('name')``; predicates with a position, a path (exists),
``=``/``!=`` against a string or number, ``and``, ``or``, ``not(…)``,
``position()``, ``last()``; unions with ``|``. Anything else raises XPathError
(so it is not a key, as a key Calamari cannot compile).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.calamari.structured.xml_tree import (
    Attribute,
    Comment,
    Document,
    Element,
    Instruction,
    Node,
    Text,
    inner_text,
)

Item = Node | Document


class XPathError(Exception):
    """The expression is not one this evaluator (or XPath) reads."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<literal>"[^"]*"|'[^']*')
    | (?P<number>\d+(?:\.\d*)?|\.\d+)
    | (?P<op>//|/|::|\.\.|\.|\[|\]|\(|\)|@|!=|=|\||\*|,|:)
    | (?P<name>[^\W\d][\w.\-]*)
    )""",
    re.VERBOSE,
)


def _tokens(expression: str) -> list[str]:
    found: list[str] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            if expression[position:].strip() == "":
                break
            raise XPathError(f"unexpected {expression[position:]!r}")
        found.append(match.group(match.lastgroup or "op"))
        position = match.end()
    return found


# A compiled expression: a function from a context node (and its position, size) to items
Eval = Callable[[Item, int, int], object]


@dataclass
class _Parser:
    tokens: list[str]
    prefixes: dict[str, str]
    at: int = 0

    def peek(self, offset: int = 0) -> str | None:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        word = self.peek()
        if word is None or (expected is not None and word != expected):
            raise XPathError(f"expected {expected or 'more'}, found {word!r}")
        self.at += 1
        return word

    # expr := and ('or' and)* ; and := cmp ('and' cmp)* ; cmp := union (op union)?
    def expression(self) -> Eval:
        left = self.conjunction()
        while self.peek() == "or":
            self.take()
            left = _or(left, self.conjunction())
        return left

    def conjunction(self) -> Eval:
        left = self.comparison()
        while self.peek() == "and":
            self.take()
            left = _and(left, self.comparison())
        return left

    def comparison(self) -> Eval:
        left = self.union()
        if self.peek() in ("=", "!="):
            operator = self.take()
            return _compare(left, self.union(), operator == "=")
        return left

    def union(self) -> Eval:
        paths = [self.primary()]
        while self.peek() == "|":
            self.take()
            paths.append(self.primary())
        if len(paths) == 1:
            return paths[0]
        return _union(paths)

    def primary(self) -> Eval:
        word = self.peek()
        if word is None:
            raise XPathError("the expression ends too early")
        if word[0] in "\"'":
            self.take()
            return _constant(word[1:-1])
        if word[0].isdigit() or (word[0] == "." and len(word) > 1):
            self.take()
            return _constant(float(word))
        if word == "(":
            self.take()
            inner = self.expression()
            self.take(")")
            return inner
        if self.peek(1) == "(" and word in ("not", "position", "last"):
            return self.function()
        return self.path()

    def function(self) -> Eval:
        name = self.take()
        self.take("(")
        if name == "not":
            inner = self.expression()
            self.take(")")
            return lambda item, pos, size: not _truth(inner(item, pos, size))
        self.take(")")
        if name == "position":
            return lambda item, pos, size: float(pos)
        return lambda item, pos, size: float(size)

    def path(self) -> Eval:
        steps: list[Callable[[Item], list[Item]]] = []
        absolute = self.peek() in ("/", "//")
        if self.peek() == "/":
            self.take()
            if not self._step_follows():
                return lambda item, pos, size: [_root(item)]
        elif self.peek() == "//":
            self.take()
            steps.append(_descendants_or_self)
        steps.append(self.step())
        while self.peek() in ("/", "//"):
            if self.take() == "//":
                steps.append(_descendants_or_self)
            steps.append(self.step())

        def evaluate(item: Item, pos: int, size: int) -> list[Item]:
            current: list[Item] = [_root(item)] if absolute else [item]
            for step in steps:
                current = _unique(found for node in current for found in step(node))
                if len(current) > 1:
                    current = _document_order(current)
            return current

        return evaluate

    def _step_follows(self) -> bool:
        word = self.peek()
        return word is not None and (word in ("@", "*", ".", "..") or word[0].isalpha())

    def step(self) -> Callable[[Item], list[Item]]:
        word = self.peek()
        if word == ".":
            self.take()
            return lambda item: [item]
        if word == "..":
            self.take()
            return lambda item: [] if item.parent is None else [item.parent]  # type: ignore[union-attr]
        axis = "child"
        if word == "@":
            self.take()
            axis = "attribute"
        elif self.peek(1) == "::":
            axis = self.take()
            self.take("::")
        if axis not in _AXES:
            raise XPathError(f"the axis {axis} is not supported")
        test = self.node_test(axis)
        predicates: list[Eval] = []
        while self.peek() == "[":
            self.take()
            predicates.append(self.expression())
            self.take("]")
        walk = _AXES[axis]

        def step(item: Item) -> list[Item]:
            found = [node for node in walk(item) if test(node)]
            for predicate in predicates:
                size = len(found)
                found = [
                    node
                    for index, node in enumerate(found, 1)
                    if _keeps(predicate(node, index, size), index)
                ]
            return found

        return step

    def node_test(self, axis: str) -> Callable[[Item], bool]:
        word = self.take()
        principal = Attribute if axis == "attribute" else Element
        if self.peek() == "(" and word in ("text", "comment", "node", "processing-instruction"):
            self.take("(")
            target = None
            if word == "processing-instruction" and self.peek() != ")":
                target = self.take().strip("\"'")
            self.take(")")
            return _kind_test(word, target)
        if word == "*":
            if self.peek() == ":":
                self.take()
                local = self.take()
                return lambda node: isinstance(node, principal) and _local(node) == local
            return lambda node: isinstance(node, principal)
        if self.peek() == ":":
            self.take()
            prefix, local = word, self.take()
            if prefix not in self.prefixes:
                raise XPathError(f"the prefix '{prefix}' is not declared in the document")
            uri: str | None = self.prefixes[prefix]
            if local == "*":
                return lambda node: isinstance(node, principal) and _uri(node) == uri
        else:
            uri, local = None, word
        return lambda node: (
            isinstance(node, principal) and _local(node) == local and _uri(node) == uri
        )


def compile_key(key: str, prefixes: dict[str, str]) -> Eval:
    """The key as an XPath expression; XPathError when it is not one."""
    parser = _Parser(_tokens(key), prefixes)
    compiled = parser.expression()
    if parser.peek() is not None:
        raise XPathError(f"unexpected {parser.peek()!r}")
    return compiled


def select(compiled: Eval, document: Document) -> list[Item]:
    """The nodes the expression selects from the document node (not nodes: nothing)."""
    result = compiled(document, 1, 1)
    return list(result) if isinstance(result, list) else []


# --- evaluation -----------------------------------------------------------------------


def _root(item: Item) -> Item:
    while not isinstance(item, Document) and item.parent is not None:
        item = item.parent
    return item


def _children(item: Item) -> list[Item]:
    return list(item.children) if isinstance(item, Element | Document) else []


def _attributes(item: Item) -> list[Item]:
    if not isinstance(item, Element):
        return []
    return [a for a in item.attributes if a.name != "xmlns" and not a.name.startswith("xmlns:")]


def _descendants(item: Item) -> list[Item]:
    found: list[Item] = []
    pending = list(reversed(_children(item)))
    while pending:
        node = pending.pop()
        found.append(node)
        pending.extend(reversed(_children(node)))
    return found


def _descendants_or_self(item: Item) -> list[Item]:
    return [item, *_descendants(item)]


_AXES: dict[str, Callable[[Item], list[Item]]] = {
    "child": _children,
    "attribute": _attributes,
    "self": lambda item: [item],
    "parent": lambda item: [] if item.parent is None else [item.parent],  # type: ignore[union-attr]
    "descendant": _descendants,
    "descendant-or-self": _descendants_or_self,
}


def _kind_test(kind: str, target: str | None) -> Callable[[Item], bool]:
    if kind == "text":
        return lambda node: isinstance(node, Text)
    if kind == "comment":
        return lambda node: isinstance(node, Comment)
    if kind == "node":
        return lambda node: not isinstance(node, Document)
    return lambda node: isinstance(node, Instruction) and target in (None, node.target)


def _local(node: Item) -> str:
    name = node.name if isinstance(node, Element | Attribute) else ""
    return name.rpartition(":")[2]


def _uri(node: Item) -> str | None:
    """The namespace of an element's or attribute's name (None: no namespace)."""
    if isinstance(node, Element):
        prefix = node.name.rpartition(":")[0]
        return node.namespaces().get(prefix) or None
    if isinstance(node, Attribute):
        prefix = node.name.rpartition(":")[0]
        if not prefix or not isinstance(node.parent, Element):
            return None  # an attribute without a prefix is in no namespace
        return node.parent.namespaces().get(prefix) or None
    return None


def _unique(items: object) -> list[Item]:
    seen: set[int] = set()
    kept: list[Item] = []
    for item in items:  # type: ignore[attr-defined]
        if id(item) not in seen:
            seen.add(id(item))
            kept.append(item)
    return kept


def _document_order(items: list[Item]) -> list[Item]:
    """The items as they stand in the document (a path's result is in document order)."""
    root = _root(items[0])
    order: dict[int, int] = {}
    for node in _descendants_or_self(root):
        order[id(node)] = len(order)
        for attribute in _attributes(node):
            order[id(attribute)] = len(order)
    return sorted(items, key=lambda item: order.get(id(item), len(order)))


def _union(paths: Sequence[Eval]) -> Eval:
    def evaluate(item: Item, pos: int, size: int) -> list[Item]:
        found: list[Item] = []
        for path in paths:
            result = path(item, pos, size)
            if not isinstance(result, list):
                raise XPathError("a union of values that are not nodes")
            found.extend(result)
        unique = _unique(found)
        return _document_order(unique) if len(unique) > 1 else unique

    return evaluate


def _constant(value: object) -> Eval:
    return lambda item, pos, size: value


def _truth(value: object) -> bool:
    if isinstance(value, list):
        return bool(value)
    return bool(value)


def _keeps(value: object, position: int) -> bool:
    if isinstance(value, float):
        return value == position  # [2]: the second
    return _truth(value)


def _and(left: Eval, right: Eval) -> Eval:
    return lambda item, pos, size: _truth(left(item, pos, size)) and _truth(right(item, pos, size))


def _or(left: Eval, right: Eval) -> Eval:
    return lambda item, pos, size: _truth(left(item, pos, size)) or _truth(right(item, pos, size))


def _atoms(value: object) -> list[object]:
    if isinstance(value, list):
        return [inner_text(node) if not isinstance(node, Document) else "" for node in value]
    return [value]


def _equal(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b)  # type: ignore[arg-type]
        except ValueError:
            return False
    return a == b


def _compare(left: Eval, right: Eval, equal: bool) -> Eval:
    """General comparison: true when some pair of the two sides' values compares so."""

    def evaluate(item: Item, pos: int, size: int) -> bool:
        lefts, rights = _atoms(left(item, pos, size)), _atoms(right(item, pos, size))
        return any(_equal(a, b) == equal for a in lefts for b in rights)

    return evaluate
