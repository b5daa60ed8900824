"""Output for people (aligned tables and fields) and for machines (JSON)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click

FORMATS = ("text", "json")
F = TypeVar("F", bound=Callable[..., Any])


def format_option(function: F) -> F:
    """Add ``--format text|json`` (default text)."""
    option = click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS, case_sensitive=False),
        default="text",
        show_default=True,
        help="text for people, json for machines",
    )
    return option(function)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns padded to their widest cell; nothing printed for the rows when empty."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [list(headers), *cells]) for i in range(len(headers))]
    for row in [list(headers), ["-" * width for width in widths], *cells]:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def emit_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """``Name: value`` lines with the values aligned."""
    width = max((len(name) for name, _ in fields), default=0) + 1
    for name, value in fields:
        click.echo(f"{name + ':':<{width}} {value}")


@contextmanager
def progress_bar(length: int | None, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal (stderr), fed with increments; nothing when
    output goes elsewhere."""
    if not sys.stderr.isatty():
        yield None
        return
    if length is None:  # a size not known yet (a download): click then wants an iterable
        bar: Any = click.progressbar(iter(()), label=label, file=sys.stderr)
    else:
        bar = click.progressbar(length=length, label=label, file=sys.stderr)
    with bar:
        yield bar.update
