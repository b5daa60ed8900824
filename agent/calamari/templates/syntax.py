"""Parsing the Octostache template language into the tree of ``tree.py``.

``parse(text)`` turns a template into a tuple of nodes or raises
TemplateSyntaxError naming the position; ``parse(text, lenient=True)`` never
raises: a fragment that does not parse stays as text and parsing resumes just
after its ``#``.
"""

from __future__ import annotations

import re

from agent.calamari.templates.tree import (
    CalcNode,
    Calculation,
    Conditional,
    Expression,
    Filter,
    Literal,
    Node,
    Number,
    Operation,
    Option,
    Path,
    Repetition,
    Step,
    Substitution,
    Text,
)

IDENTIFIER_PUNCTUATION = frozenset("_-:/~()@")
KEYWORDS = ("if", "unless", "each", "calc")
IF_CLOSERS = ("#{/if}", "#{else}", "#{elseif ")
MAX_NESTING = 64  # tokens, indexes and parentheses inside one another
_NUMBER = re.compile(r"\d+(\.\d+)?")


class TemplateError(Exception):
    """A template could not be evaluated."""


class TemplateSyntaxError(TemplateError):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


# -- parsing ---------------------------------------------------------------


def parse(text: str, *, lenient: bool = False) -> tuple[Node, ...]:
    """The template's nodes. Raises TemplateSyntaxError unless ``lenient``."""
    parser = _Parser(text, lenient)
    nodes, closer = parser.nodes(())
    assert closer is None
    return nodes


def parse_path(text: str) -> Path | None:
    """``text`` as a plain path (no ``#{}`` indexes), or None if it is not one."""
    parser = _Parser(text, lenient=False)
    try:
        path = parser.path()
    except TemplateSyntaxError:
        return None
    if parser.at != len(text) or any(step.symbol is not None for step in path.steps):
        return None
    return path


def is_identifier_char(char: str) -> bool:
    return char.isalnum() or char.isspace() or char in IDENTIFIER_PUNCTUATION


class _Parser:
    def __init__(self, text: str, lenient: bool) -> None:
        self.text = text
        self.at = 0
        self.lenient = lenient
        self.depth = 0

    def deeper(self) -> None:
        """Enter one more level of nesting; raises TemplateSyntaxError past MAX_NESTING."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise TemplateSyntaxError(f"nested more than {MAX_NESTING} levels deep", self.at)

    # -- text and blocks --

    def nodes(self, closers: tuple[str, ...]) -> tuple[tuple[Node, ...], str | None]:
        """Nodes up to one of ``closers`` (consumed and returned) or the end."""
        text, nodes = self.text, list[Node]()
        buffer: list[str] = []

        def flush() -> None:
            if buffer:
                nodes.append(Text("".join(buffer)))
                buffer.clear()

        while self.at < len(text):
            if text.startswith("###{", self.at):
                buffer.append("#")
                self.at += 2
            elif text.startswith("##{", self.at):
                buffer.append("#{")
                self.at += 3
            elif text.startswith("#{", self.at):
                closer = next((c for c in closers if text.startswith(c, self.at)), None)
                if closer is not None:
                    flush()
                    self.at += len(closer)
                    return tuple(nodes), closer
                if text.startswith("#{/", self.at):
                    buffer.append("#")
                    self.at += 1
                    continue
                start = self.at
                try:
                    node = self.token()
                except TemplateSyntaxError:
                    if not self.lenient or closers:
                        raise
                    self.at = start + 1  # keep the fragment as text and carry on
                    buffer.append("#")
                    continue
                flush()
                nodes.append(node)
            else:
                buffer.append(text[self.at])
                self.at += 1
        if closers:
            raise TemplateSyntaxError(f"expected {closers[0]!r} before the end", self.at)
        flush()
        return tuple(nodes), None

    def token(self) -> Node:
        """A token starting at ``#{``."""
        self.deeper()
        try:
            return self._token()
        finally:
            self.depth -= 1

    def _token(self) -> Node:
        self.at += 2
        self.spaces()
        keyword = self.keyword()
        if keyword in {"if", "unless"}:
            return self.conditional(unless=keyword == "unless")
        if keyword == "each":
            return self.repetition()
        if keyword == "calc":
            return self.calculation()
        expression = self.expression(())
        self.expect("}")
        return Substitution(expression)

    def keyword(self) -> str | None:
        for word in KEYWORDS:
            end = self.at + len(word)
            if self.text[self.at : end].lower() == word and self.text[end : end + 1].isspace():
                self.at = end
                self.spaces()
                return word
        return None

    def conditional(self, *, unless: bool, chained: bool = False) -> Conditional:
        left, operator, right = self.condition()
        closers = ("#{/unless}", "#{else}") if unless else IF_CLOSERS
        then, closer = self.nodes(closers)
        otherwise: tuple[Node, ...] = ()
        if closer == "#{else}":
            otherwise, _ = self.nodes((closers[0],))
        elif closer == "#{elseif ":
            self.spaces()
            otherwise = (self.conditional(unless=False, chained=True),)
        return Conditional(left, operator, right, then, otherwise, unless, chained)

    def condition(self) -> tuple[Expression | Literal, str | None, Expression | Literal | None]:
        left = self.operand()
        self.spaces()
        operator = right = None
        if self.text.startswith(("==", "!="), self.at):
            operator = self.text[self.at : self.at + 2]
            self.at += 2
            self.spaces()
            right = self.operand()
            self.spaces()
        self.expect("}")
        return left, operator, right

    def operand(self) -> Expression | Literal:
        if self.text.startswith('\\"', self.at):
            end = self.text.find('\\"', self.at + 2)
            if end < 0:
                raise TemplateSyntaxError('unterminated \\" string', self.at)
            literal = self.text[self.at + 2 : end]
            self.at = end + 2
            return Literal(literal)
        if self.peek() == '"':
            return Literal(self.quoted())
        return self.expression(("==", "!="))

    def repetition(self) -> Repetition:
        name = self.identifier(stop_before_in=True)
        if not name:
            raise TemplateSyntaxError("expected a loop variable name after 'each'", self.at)
        self.spaces()
        if (
            self.text[self.at : self.at + 2].lower() != "in"
            or not self.text[self.at + 2 : self.at + 3].isspace()
        ):
            raise TemplateSyntaxError("expected 'in' in #{each NAME in PATH}", self.at)
        self.at += 2
        self.spaces()
        collection = self.path()
        self.spaces()
        self.expect("}")
        body, _ = self.nodes(("#{/each}",))
        return Repetition(name, collection, body)

    # -- expressions --

    def expression(self, stops: tuple[str, ...]) -> Expression:
        self.spaces()
        path = None if self.peek() in ("|", "}") else self.path()
        self.spaces()
        filters = []
        while self.peek() == "|":
            self.at += 1
            self.spaces()
            name = self.word()
            if not name:
                raise TemplateSyntaxError("expected a filter name after '|'", self.at)
            options = []
            while True:
                self.spaces()
                if self.peek() in ("|", "}", "") or self.text.startswith(stops, self.at):
                    break
                options.append(self.option())
            filters.append(Filter(name, tuple(options)))
        return Expression(path, tuple(filters))

    def option(self) -> Option:
        if self.text.startswith('\\"', self.at):
            end = self.text.find('\\"', self.at + 2)
            if end < 0:
                raise TemplateSyntaxError('unterminated \\" option', self.at)
            option = Option(self.text[self.at + 2 : end])
            self.at = end + 2
            return option
        if self.peek() == '"':
            return Option(self.quoted())
        if self.text.startswith("#{", self.at):
            return Option(token=self.token())
        word = self.word()
        if not word:
            raise TemplateSyntaxError(f"unexpected {self.peek()!r} in a filter's options", self.at)
        return Option(word)

    def quoted(self) -> str:
        end = self.text.find('"', self.at + 1)
        if end < 0:
            raise TemplateSyntaxError("unterminated quoted text", self.at)
        content = self.text[self.at + 1 : end]
        if "#" in content:
            raise TemplateSyntaxError("quoted text may not contain '#'", self.at)
        self.at = end + 1
        return content

    def path(self) -> Path:
        start = self.at
        steps = []
        first = self.identifier()
        if first:
            steps.append(Step(first))
        while True:
            if self.peek() == "." and steps:
                self.at += 1
                name = self.identifier()
                if not name:
                    raise TemplateSyntaxError("expected a name after '.'", self.at)
                steps.append(Step(name))
            elif self.peek() == "[":
                steps.append(self.index())
            else:
                break
        if not steps:
            raise TemplateSyntaxError(f"expected a variable name, found {self.peek()!r}", self.at)
        return Path(tuple(steps), self.text, start)

    def index(self) -> Step:
        self.at += 1
        if self.text.startswith("#{", self.at):
            self.at += 2
            self.deeper()
            symbol = self.expression(())
            self.depth -= 1
            self.expect("}")
            self.expect("]")
            return Step("", indexed=True, symbol=symbol)
        depth, start = 0, self.at
        while self.at < len(self.text):
            char = self.text[self.at]
            if char == "[":
                depth += 1
            elif char == "]":
                if depth == 0:
                    self.at += 1
                    return Step(self.text[start : self.at - 1], indexed=True)
                depth -= 1
            elif char == "}":
                break
            self.at += 1
        raise TemplateSyntaxError("unterminated '['", start - 1)

    def identifier(self, *, stop_before_in: bool = False) -> str:
        start = self.at
        while self.at < len(self.text) and is_identifier_char(self.text[self.at]):
            if stop_before_in and self.text[self.at].isspace():
                rest = self.text[self.at :].lstrip()
                if (
                    rest[:2].lower() == "in"
                    and rest[2:3].isspace()
                    and self.text[start : self.at].strip()
                ):
                    break
            self.at += 1
        raw = self.text[start : self.at]
        # trailing whitespace belongs to what follows (`| Filter`, `}`, `==`)
        self.at = start + len(raw.rstrip())
        return raw.strip()

    def word(self) -> str:
        start = self.at
        while (
            self.at < len(self.text)
            and is_identifier_char(self.text[self.at])
            and not self.text[self.at].isspace()
        ):
            self.at += 1
        return self.text[start : self.at]

    # -- calc --

    def calculation(self) -> Calculation:
        start = self.at
        expression = self.sum()
        self.spaces()
        source = self.text[start : self.at].strip()
        self.expect("}")
        return Calculation(expression, source)

    def sum(self) -> CalcNode:
        node = self.product()
        while True:
            self.spaces()
            if self.peek() not in ("+", "-"):
                return node
            operator = self.peek()
            self.at += 1
            node = Operation(operator, node, self.product())

    def product(self) -> CalcNode:
        node = self.factor()
        while True:
            self.spaces()
            if self.peek() not in ("*", "/"):
                return node
            operator = self.peek()
            self.at += 1
            node = Operation(operator, node, self.factor())

    def factor(self) -> CalcNode:
        self.spaces()
        char = self.peek()
        if char == "(":
            self.at += 1
            self.deeper()
            node = self.sum()
            self.depth -= 1
            self.spaces()
            self.expect(")")
            return node
        if char == "-":
            self.at += 1
            self.deeper()
            operand = self.factor()
            self.depth -= 1
            return Operation("-", Number(0.0), operand)
        if char == "{":
            self.at += 1
            self.spaces()
            path = self.path()
            self.spaces()
            self.expect("}")
            return path
        number = _NUMBER.match(self.text, self.at)
        if number:
            self.at = number.end()
            return Number(float(number.group()))
        return self.path()

    # -- characters --

    def peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def spaces(self) -> None:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1

    def expect(self, literal: str) -> None:
        if not self.text.startswith(literal, self.at):
            found = repr(self.text[self.at]) if self.at < len(self.text) else "the end"
            raise TemplateSyntaxError(f"expected {literal!r}, found {found}", self.at)
        self.at += len(literal)
