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
