"""Command-line options derived from a settings table (agent.config.settings)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import click

from agent.cli.options import absolute_path
from agent.config.settings import Flag, Setting

F = TypeVar("F", bound=Callable[..., Any])


def _click_type(flag: Flag) -> Any:
    """The parser for a flag's kind, so its errors are click's usual ones."""
    if flag.kind == "int":
        low, high = (None if bound is None else int(bound) for bound in (flag.low, flag.high))
        return int if low is None and high is None else click.IntRange(low, high)
    if flag.kind == "float":
        if flag.low is None and flag.high is None:
            return float
        return click.FloatRange(flag.low, flag.high)
    if flag.kind == "bool":
        return click.BOOL
    return str


def setting_options(table: Iterable[Setting]) -> Callable[[F], F]:
    """A decorator adding one option per setting of ``table`` that has a flag.

    Each option's value arrives under the setting's name (None when not given).
    """
    rows = [row for row in table if row.flag is not None]

    def decorate(function: F) -> F:
        for row in reversed(rows):  # click lists options in decoration order, bottom up
            assert row.flag is not None
            option = click.option(
                row.flag.name,
                row.name,
                type=_click_type(row.flag),
                metavar=row.flag.metavar,
                help=row.help or None,
            )
            function = option(function)
        return function

    return decorate


def flag_values(table: Iterable[Setting], given: Mapping[str, Any]) -> dict[str, Any]:
    """The settings the flags in ``given`` set (not None), ready for coercion.

    Paths typed by a person are made absolute against the current folder.
    """
    values = {}
    for row in table:
        if row.flag is None or given.get(row.name) is None:
            continue
        value = given[row.name]
        values[row.name] = absolute_path(value) if row.flag.kind == "path" else value
    return values
