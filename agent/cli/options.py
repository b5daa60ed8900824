"""Options shared by many verbs, spelt as Tentacle spells them."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
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


class LazyVerbGroup(VerbGroup):
    """A VerbGroup whose verbs are imported when used, not when the program starts.

    ``lazy`` maps a verb to ``"module:attribute"``. Every `tentacle` run used to
    import every verb's module (asyncssh, the hub, the executor) even to print its
    version; a verb's module is now imported only for that verb, or for the list
    of verbs in the help. tests/unit/cli/test_lazy_verbs.py checks the table.
    """

    def __init__(self, *args: Any, lazy: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)
