"""`tentacle calamari …`: the executor's commands, run by scripts on the worker."""

from __future__ import annotations

from pathlib import Path

import click

from agent.calamari.packages import PackageError, extract
from agent.cli.output import emit_fields, emit_json, format_option, progress_bar


@click.group("calamari")
def calamari_group() -> None:
    """Deployment steps run by scripts on the worker: packages, variables, templates."""


@calamari_group.command("extract-package")
@click.option(
    "--package",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="zip, nupkg, tar, tar.gz, tar.bz2 or tar.xz",
)
@click.option(
    "--destination",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="a new or empty folder",
)
@format_option
def extract_package_command(package: Path, destination: Path, output_format: str) -> None:
    """Extract a package, refusing any entry that would land outside DESTINATION."""
    destination = destination.absolute()
    with progress_bar(package.stat().st_size, "Extracting") as advance:
        last = [0]

        def progress(done: int, total: int) -> None:
            if advance is not None and total:
                # the bar counts the package's bytes; extraction reports bytes written
                share = done * package.stat().st_size // total
                advance(share - last[0])
                last[0] = share

        try:
            count = extract(package, destination, progress)
        except PackageError as error:
            raise click.ClickException(str(error)) from None
    if output_format == "json":
        emit_json({"Destination": str(destination), "ExtractedFileCount": count})
    else:
        emit_fields([("Destination", destination), ("ExtractedFileCount", count)])
