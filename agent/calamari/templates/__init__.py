"""Octostache-compatible templates: ``evaluate("Hello #{Name}", {"Name": "World"})``.

The language (substitution, paths and indexes, if/unless/elseif, each, calc,
filters, JSON-valued variables, ``##{`` escapes) is specified in
docs/templates.md. Names are case-insensitive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.calamari.templates.evaluation import (
    Evaluator,
    RecursiveDefinitionError,
    Scope,
    _NullResult,
)
from agent.calamari.templates.syntax import TemplateError, TemplateSyntaxError, parse
from agent.calamari.templates.variables import bind

__all__ = [
    "Evaluation",
    "RecursiveDefinitionError",
    "TemplateError",
    "TemplateSyntaxError",
    "evaluate",
    "evaluate_with_errors",
]


@dataclass(frozen=True)
class Evaluation:
    """The result (None when a ``| null`` token was rendered) and what went wrong."""

    text: str | None
    error: str | None


def evaluate(
    template: str, variables: Mapping[str, str | None], lenient: bool = False
) -> str | None:
    """``template`` with its tokens replaced by the variables' values.

    Tokens that cannot be evaluated are echoed back; a template that does not
    parse is returned unchanged, unless ``lenient``, which keeps just the
    fragments that do not parse as text. Returns None only when a ``| null``
    token was rendered (as Octostache does). Raises RecursiveDefinitionError
    when a variable refers back to itself.
    """
    return evaluate_with_errors(template, variables, lenient).text


def evaluate_with_errors(
    template: str, variables: Mapping[str, str | None], lenient: bool = False
) -> Evaluation:
    """As :func:`evaluate`, with Octostache's error text: the parse error, or the
    tokens that could not be evaluated."""
    if "#{" not in template:
        return Evaluation(template, None)
    try:
        nodes = parse(template, lenient=lenient)
    except TemplateSyntaxError as error:
        return Evaluation(template, str(error))
    evaluator = Evaluator(Scope(bind(variables)))
    try:
        text: str | None = evaluator.render(nodes)
    except _NullResult:
        text = None
    except RecursionError:  # deep JSON or values within values; the parser limits the rest
        raise TemplateError("the template and its values nest too deeply to evaluate") from None
    if not evaluator.missing:
        return Evaluation(text, None)
    tokens = ", ".join(f"'{token}'" for token in dict.fromkeys(evaluator.missing))
    return Evaluation(text, f"The following tokens were unable to be evaluated: {tokens}")
