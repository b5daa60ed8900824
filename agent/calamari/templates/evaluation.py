"""Evaluating parsed templates against variables, as Octostache does.

Values are templates themselves and are evaluated when used; a path that is
not a variable is looked up inside the nearest JSON-valued ancestor; a loop's
scope chains to the one around it. A token that cannot be evaluated is echoed
and reported; a variable that refers back to itself raises
RecursiveDefinitionError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent.calamari.templates import filters
from agent.calamari.templates.syntax import TemplateError, TemplateSyntaxError, parse
from agent.calamari.templates.tree import (
    CalcNode,
    Calculation,
    Conditional,
    Expression,
    Literal,
    Node,
    Number,
    Operation,
    Path,
    Repetition,
    Substitution,
    Text,
    echo,
    echo_path,
)
from agent.calamari.templates.variables import Binding, from_json, parse_json, render_json

MISSING = object()  # a value that could not be found (echoed), unlike "" or None
MAX_DEPTH = 64


class RecursiveDefinitionError(TemplateError):
    def __init__(self, chain: list[str]) -> None:
        self.chain = chain
        super().__init__(
            f'An attempt to parse the variable symbol "{chain[-1]}" appears to have resulted in a '
            f"self referencing loop ({' -> '.join(chain)}). Ensure that recursive loops do not "
            "exist in the variable values."
        )


class _NullResult(Exception):
    """A ``| null`` token was rendered: the whole result is null."""


@dataclass
class Scope:
    root: Binding
    parent: Scope | None = None


@dataclass
class Evaluator:
    scope: Scope
    missing: list[str] = field(default_factory=list)
    resolving: list[tuple[tuple[str, ...], str, int]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    # -- templates --

    def render(self, nodes: tuple[Node, ...]) -> str:
        """Raises _NullResult and RecursiveDefinitionError."""
        return "".join(self.node(node) for node in nodes)

    def node(self, node: Node) -> str:
        match node:
            case Text(text=text):
                return text
            case Substitution(expression=expression):
                value = self.expression(expression)
                if value is MISSING:
                    return self.echoed(node)
                if value is None:
                    if expression.filters and expression.filters[-1].name == "null":
                        raise _NullResult
                    return self.echoed(node)
                assert isinstance(value, str)
                return value
            case Conditional():
                return self.conditional(node)
            case Repetition():
                return self.repetition(node)
            case Calculation():
                result = self.calculate(node.expression)
                return self.echoed(node) if result is None else _number(result)
        raise AssertionError(node)  # pragma: no cover

    def echoed(self, node: Node) -> str:
        text = echo(node)
        self.missing.append(text)
        return text

    def value_of(self, raw: str | None) -> str:
        """A variable's value, evaluated as a template (raw if it does not parse)."""
        if raw is None:
            return ""
        if "#{" not in raw:
            return raw
        try:
            nodes = parse(raw)
        except TemplateSyntaxError:
            return raw
        return self.render(nodes)

    # -- paths --

    def resolve(self, path: Path) -> str | object:
        """The evaluated value at ``path``, or MISSING."""
        steps = self.steps(path)
        if steps is None:
            return MISSING
        canonical = tuple(f"{'[' if indexed else '.'}{text.lower()}" for text, indexed in steps)
        key = (canonical, path.source, path.at)
        name = echo_path(path)
        if key in self.resolving:
            start = self.resolving.index(key)
            raise RecursiveDefinitionError([*self.names[start:], name])
        if len(self.resolving) >= MAX_DEPTH:
            raise RecursiveDefinitionError([*self.names, name])
        self.resolving.append(key)
        self.names.append(name)
        try:
            scope: Scope | None = self.scope
            while scope is not None:
                found = self.lookup(scope.root, steps)
                if found is not MISSING:
                    return found
                scope = scope.parent
            return MISSING
        finally:
            self.resolving.pop()
            self.names.pop()

    def steps(self, path: Path) -> list[tuple[str, bool]] | None:
        """The path's steps with ``[#{symbol}]`` indexes resolved; None if one cannot be."""
        steps = []
        for step in path.steps:
            if step.symbol is None:
                steps.append((step.text, step.indexed))
                continue
            value = self.expression(step.symbol)
            if not isinstance(value, str):
                return None
            steps.append((value, True))
        return steps

    def lookup(self, node: Binding, steps: list[tuple[str, bool]]) -> str | object:
        for position, (text, indexed) in enumerate(steps):
            child = node.child(text, indexed=indexed)
            if child is None:
                return self.inside_json(node, steps[position:])
            node = child
        if not node.defined:
            return MISSING
        return self.value_of(node.value)

    def inside_json(self, node: Binding, steps: list[tuple[str, bool]]) -> str | object:
        """Look ``steps`` up in ``node``'s value read as JSON; a miss inside it is ""."""
        if not node.defined or not node.value:
            return MISSING
        try:
            document = parse_json(self.value_of(node.value))
        except (ValueError, RecursiveDefinitionError):
            return MISSING
        for text, _ in steps:
            if isinstance(document, dict):
                document = _property(document, text)
            elif isinstance(document, list) and text.isdigit() and int(text) < len(document):
                document = document[int(text)]
            else:
                return ""
        return self.value_of(render_json(document))

    def binding(self, path: Path) -> Binding | None:
        """The tree node at ``path`` in the nearest scope that has it."""
        steps = self.steps(path)
        scope: Scope | None = self.scope
        while steps is not None and scope is not None:
            node: Binding | None = scope.root
            for text, indexed in steps:
                node = node.child(text, indexed=indexed) if node else None
            if node is not None:
                return node
            scope = scope.parent
        return None

    # -- expressions and blocks --

    def expression(self, expression: Expression) -> str | object | None:
        """The value after filters: text, None (a filter did not apply) or MISSING."""
        value: str | object | None = None
        if expression.path is not None:
            value = self.resolve(expression.path)
        if not expression.filters:
            return value
        current = None if value is MISSING else value
        for item in expression.filters:
            options = [self.node(option.token) if option.token else option.text
                       for option in item.options]  # fmt: skip
            assert current is None or isinstance(current, str)
            current = filters.apply(item.name, current, options)
            if current is None:
                return None
        return current

    def operand(self, operand: Expression | Literal) -> str | None:
        if isinstance(operand, Literal):
            return operand.text
        value = self.expression(operand)
        if value is MISSING:
            return ""
        if value is None:
            return "" if not operand.filters else None
        assert isinstance(value, str)
        return value

    def conditional(self, node: Conditional) -> str:
        left = self.operand(node.left)
        right = self.operand(node.right) if node.right is not None else ""
        if left is None or right is None:
            return self.echoed(node)
        if node.operator == "==":
            holds = left == right
        elif node.operator == "!=":
            holds = left != right
        else:
            holds = truthy(left)
        if node.unless:
            holds = not holds
        return self.render(node.then if holds else node.otherwise)

    def repetition(self, node: Repetition) -> str:
        entries = self.entries(node.collection)
        out = []
        for position, entry in enumerate(entries):
            root = Binding()
            root.children[node.name.lower()] = entry
            each = (
                root.add("Octopus", indexed=False)
                .add("Template", indexed=False)
                .add("Each", indexed=False)
            )
            for name, value in (("Index", str(position)), ("First", str(position == 0)),
                                ("Last", str(position == len(entries) - 1))):  # fmt: skip
                each.children[name.lower()] = Binding(value, True)
            inner = Evaluator(Scope(root, self.scope), self.missing, self.resolving, self.names)
            out.append(inner.render(node.body))
        return "".join(out)

    def entries(self, path: Path) -> list[Binding]:
        found = self.binding(path)
        if found is not None and found.indexed:
            return list(found.indexed.values())
        value = self.resolve(path)
        if not isinstance(value, str):
            return []
        try:
            document = parse_json(value)
        except ValueError:
            return [Binding(piece, True) for piece in value.split(",")]
        if isinstance(document, list):
            return [from_json(item) for item in document]
        entries = []
        for key, item in document.items():
            entry = Binding(str(key), True)
            entry.children["key"] = Binding(str(key), True)
            entry.children["value"] = from_json(item)
            entries.append(entry)
        return entries

    def calculate(self, node: CalcNode) -> float | None:
        match node:
            case Number(value=value):
                return value
            case Path():
                text = self.resolve(node)
                try:
                    return float(text) if isinstance(text, str) else None
                except ValueError:
                    return None
            case Operation(operator=operator, left=left, right=right):
                a, b = self.calculate(left), self.calculate(right)
                if a is None or b is None:
                    return None
                if operator == "/":
                    return a / b if b else (math.nan if a == 0 else math.copysign(math.inf, a))
                return a + b if operator == "+" else a - b if operator == "-" else a * b
        raise AssertionError(node)  # pragma: no cover


def _property(document: dict[str, object], name: str) -> object:
    if name in document:
        return document[name]
    return next((value for key, value in document.items() if key.lower() == name.lower()), "")


def truthy(value: str) -> bool:
    """Octostache truth: everything but "", "0", "false" and "no" (any case, trimmed)."""
    return value not in ("", "0") and value.strip().lower() not in ("false", "no")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.15g}"
