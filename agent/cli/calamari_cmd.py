"""`tentacle calamari …`: the executor's commands, run by scripts on the worker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from agent.atomicfile import write_atomic
from agent.calamari.deployment import Deployer, DeploymentError
from agent.calamari.journal import Journal
from agent.calamari.masking import Masker
from agent.calamari.packages import PackageError, extract
from agent.calamari.scripting import Interrupted, ScriptError, exit_code_message, run_script
from agent.calamari.templates import TemplateError
from agent.calamari.variables import VariablesError, VariableSet, load_variables
from agent.cli.options import VerbGroup
from agent.cli.output import emit_fields, emit_json, format_option, progress_bar

F = TypeVar("F", bound=Callable[..., Any])


def existing_file(flag: str, help_text: str) -> Callable[[F], F]:
    """A required option naming a file that must exist."""
    return click.option(
        flag,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        required=True,
        help=help_text,
    )


@click.group("calamari", cls=VerbGroup)
def calamari_group() -> None:
    """Deployment steps run by scripts on the worker: packages, variables, templates."""


@calamari_group.command("extract-package")
@existing_file("--package", "zip, nupkg, tar, tar.gz, tar.bz2 or tar.xz")
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
    with progress_bar(100, "Extracting") as advance:
        shown = 0  # percent of the bytes to write

        def progress(done: int, total: int) -> None:
            nonlocal shown
            percent = done * 100 // total if total else 100
            if advance is not None and percent > shown:
                advance(percent - shown)
                shown = percent

        try:
            count = extract(package, destination, progress)
        except PackageError as error:
            raise click.ClickException(str(error)) from None
    if output_format == "json":
        emit_json({"Destination": str(destination), "ExtractedFileCount": count})
    else:
        emit_fields([("Destination", destination), ("ExtractedFileCount", count)])


PASSWORD_VARIABLE = "TENTACLE_VARIABLES_PASSWORD"  # noqa: S105 - the name of a variable, not a secret


def _script_environment() -> dict[str, str]:
    """What steps run with: this process's environment without the variables' password."""
    return {name: value for name, value in os.environ.items() if name != PASSWORD_VARIABLE}


def _variables(path: Path | None) -> VariableSet:
    """The variables file's variables (decrypted with $TENTACLE_VARIABLES_PASSWORD if it
    is encrypted), plus the environment as ``env:NAME``."""
    try:
        password = os.environ.get(PASSWORD_VARIABLE)
        variables = load_variables(path, password) if path is not None else VariableSet()
    except VariablesError as error:
        hint = f" (set {PASSWORD_VARIABLE})" if "password is needed" in str(error) else ""
        raise click.ClickException(f"{error}{hint}") from None
    return variables.with_environment(_script_environment())


@contextlib.contextmanager
def _stoppable() -> Iterator[None]:
    """SIGTERM/SIGINT stop the step cleanly: the executor forwards the signal to the
    script's process group, waits, removes its private folder, then exits 128+N."""

    def stop(signum: int, _frame: object) -> None:
        for each in (signal.SIGTERM, signal.SIGINT):
            signal.signal(each, signal.SIG_IGN)  # one stop at a time: the cleanup runs once
        raise Interrupted(signum)

    previous = {each: signal.signal(each, stop) for each in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except Interrupted as interrupted:
        raise click.exceptions.Exit(128 + interrupted.signum) from None
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def _writer(stream: TextIO) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write


variables_option = click.option(
    "--variables",
    "variables_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON: [{"name": …, "value": …, "sensitive": true|false}, …]',
)


@calamari_group.command("run-script")
@existing_file("--script", "bash (.sh) or Python (.py)")
@variables_option
@click.option(
    "--output-variables",
    type=click.Path(dir_okay=False, path_type=Path),
    help="also write the output variables here (JSON, 0600), sensitive ones unmasked",
)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def run_script_command(
    script: Path,
    variables_file: Path | None,
    output_variables: Path | None,
    arguments: tuple[str, ...],
) -> None:
    """Run SCRIPT with the variables and the helper functions; exits with its code.

    Output variables and artifacts the script reports come out as service
    messages (sensitive values masked, like every secret in the output).
    The script's own ARGUMENTS follow `--`, so that a mistyped option is an error.
    """
    variables = _variables(variables_file)
    with _stoppable():
        try:
            result = run_script(
                script,
                variables,
                arguments,
                out=_writer(sys.stdout),
                err=_writer(sys.stderr),
                environment=_script_environment(),
            )
        except (ScriptError, TemplateError) as error:
            raise click.ClickException(str(error)) from None
    click.echo(exit_code_message(result.exit_code))
    if output_variables is not None:
        document = [{"name": name, "value": value, "sensitive": sensitive}
                    for name, (value, sensitive) in result.outputs.items()]  # fmt: skip
        write_atomic(output_variables, json.dumps(document, indent=2).encode(), mode=0o600)
    raise click.exceptions.Exit(result.exit_code if 0 <= result.exit_code <= 255 else 1)


@calamari_group.command("deploy-package")
@existing_file("--package", "Id.1.2.3.zip (or .nupkg, .tar.gz…), or Id@1.2.3@hash.zip")
@variables_option
@click.option(
    "--install-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="the applications folder (default: Octopus.Tentacle.Agent.ApplicationDirectoryPath, "
    "else the agent's, else ~/Applications); each deployment gets a new <Id>/<Version> "
    "folder in it",
)
@click.option(
    "--retain",
    type=click.IntRange(1),
    help="keep this many successful deployments of the package (default: "
    "OctopusRetentionPolicyItemsToKeep, else all)",
)
def deploy_package_command(
    package: Path, variables_file: Path | None, install_dir: Path | None, retain: int | None
) -> None:
    """Deploy a package: extract it, run PreDeploy, substitute variables in files,
    apply structured variables, run Deploy and PostDeploy (DeployFailed on failure)."""
    variables = _variables(variables_file)
    root = install_dir or Path(
        variables.get("Octopus.Tentacle.Agent.ApplicationDirectoryPath")
        or variables.get("env:TentacleApplications")  # set by the agent for its scripts
        or Path(variables.get("env:HOME") or Path.home()) / "Applications"
    )
    root = root.absolute()
    journal = Journal(Path(variables.get("env:TentacleJournal") or root / "DeploymentJournal.json"))
    keep = retain or int(variables.get("OctopusRetentionPolicyItemsToKeep") or 0) or None
    deployer = Deployer(variables, _writer(sys.stdout), _writer(sys.stderr),
                        environment=_script_environment())  # fmt: skip
    with _stoppable():
        try:
            installed = deployer.deploy(package, root, journal, keep)
        except DeploymentError as error:
            masked = Masker(variables.sensitive_values()).mask(str(error))  # a step's own message
            raise click.ClickException(f"deployment failed: {masked}") from None
    click.echo(f"Deployed {installed.package_id} {installed.version} to {installed.folder}")
