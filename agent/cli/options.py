"""Options shared by many verbs, spelt as Tentacle spells them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def instance_option(function: F) -> F:
    """``--instance NAME``; may be left out when there is exactly one instance."""
    option = click.option(
        "--instance",
        "instance_name",
        metavar="NAME",
        help="the instance; may be omitted when there is only one",
    )
    return option(function)


def absolute_path(value: str | None) -> Path | None:
    """A path typed by a person, made absolute against the current directory."""
    return None if value is None else Path(value).expanduser().absolute()


class VerbGroup(click.Group):
    """A group of verbs whose list shows each verb's whole first sentence and names aliases.

    Click cuts short help to fit one line, which left sentences hanging; here
    the formatter wraps them instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases: dict[str, str] = {}  # alias -> the verb it stands for

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            if name in self.aliases:
                rows.append((name, f"Alias of '{self.aliases[name]}'."))
            else:
                rows.append((name, command.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
