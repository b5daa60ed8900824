"""The syntax tree of a template, and echoes of it.

``echo(node)`` renders a node back as Octostache does when it cannot evaluate
it: re-rendered from the tree, not copied (``#{ name }`` becomes ``#{name}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Step:
    """One step of a path: ``.Name``, ``[literal]``, ``[#{Symbol}]`` or ``[*]``."""

    text: str
    indexed: bool = False
    symbol: Expression | None = None


@dataclass(frozen=True)
class Path:
    """Where it was parsed from matters: Octostache treats the same name at another
    place as a new reference when it looks for self-referencing variables."""

    steps: tuple[Step, ...]
    source: str = field(default="", repr=False, compare=False)
    at: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Option:
    """A filter option: plain text, or a nested token evaluated to text."""

    text: str = ""
    token: Node | None = None


@dataclass(frozen=True)
class Filter:
    name: str
    options: tuple[Option, ...]


@dataclass(frozen=True)
class Expression:
    """A path (or nothing, for ``#{ | NowDate}``) and the filters applied to it."""

    path: Path | None
    filters: tuple[Filter, ...] = ()


@dataclass(frozen=True)
class Literal:
    """A quoted string in a condition."""

    text: str


@dataclass(frozen=True)
class Substitution:
    expression: Expression


@dataclass(frozen=True)
class Conditional:
    left: Expression | Literal
    operator: str | None  # "==", "!=" or None for truthiness
    right: Expression | Literal | None
    then: tuple[Node, ...]
    otherwise: tuple[Node, ...]
    unless: bool = False
    chained: bool = False  # an elseif inside an if: echoes without its own #{/if}


@dataclass(frozen=True)
class Repetition:
    name: str
    collection: Path
    body: tuple[Node, ...]


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Operation:
    operator: str
    left: CalcNode
    right: CalcNode


@dataclass(frozen=True)
class Calculation:
    expression: CalcNode
    source: str


CalcNode = Number | Path | Operation
Node = Text | Substitution | Conditional | Repetition | Calculation


def echo(node: Node) -> str:
    """``node`` as Octostache renders a token it could not evaluate."""
    match node:
        case Text(text=text):
            return text.replace("#{", "##{")
        case Substitution(expression=expression):
            return "#{" + echo_expression(expression) + "}"
        case Calculation(source=source):
            return "#{" + source + "}"
        case Repetition(name=name, collection=collection, body=body):
            inner = "".join(echo(child) for child in body)
            return f"#{{each {name} in {echo_path(collection)}}}{inner}#{{/each}}"
        case Conditional():
            return _echo_conditional(node)
    raise AssertionError(node)  # pragma: no cover


def _echo_conditional(node: Conditional) -> str:
    keyword = "elseif" if node.chained else "unless" if node.unless else "if"
    condition = _echo_operand(node.left)
    if node.operator is not None and node.right is not None:
        condition += f" {node.operator} {_echo_operand(node.right)}"
    text = f"#{{{keyword} {condition}}}" + "".join(echo(child) for child in node.then)
    if (
        len(node.otherwise) == 1
        and isinstance(node.otherwise[0], Conditional)
        and node.otherwise[0].chained
    ):
        return text + echo(node.otherwise[0])
    if node.otherwise:
        text += "#{else}" + "".join(echo(child) for child in node.otherwise)
    return text + ("#{/unless}" if node.unless else "#{/if}")


def _echo_operand(operand: Expression | Literal) -> str:
    return f'"{operand.text}"' if isinstance(operand, Literal) else echo_expression(operand)


def echo_expression(expression: Expression) -> str:
    text = echo_path(expression.path) if expression.path else ""
    for item in expression.filters:
        options = "".join(
            " " + (echo(option.token) if option.token is not None else f'"{option.text}"')
            for option in item.options
        )
        text += f" | {item.name}{options}"
    return text


def echo_path(path: Path) -> str:
    text = ""
    for step in path.steps:
        if step.symbol is not None:
            text += "[#{" + echo_expression(step.symbol) + "}]"
        elif step.indexed:
            text += f"[{step.text}]"
        else:
            text += ("." if text else "") + step.text
    return text
