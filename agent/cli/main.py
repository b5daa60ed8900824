"""The `tentacle` entry point: the verb table and how failures become exit codes.

Exit codes: 0 success; 1 a controlled failure (one line on stderr, no
traceback); 2 a usage error; 128 + N stopped by signal N (130 for SIGINT,
143 for SIGTERM).
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence

import click

from agent import __version__
from agent.cli.agent_cmd import agent_command
from agent.cli.calamari_cmd import calamari_group
from agent.cli.certificates import (
    export_certificate_command,
    new_certificate_command,
    show_thumbprint_command,
)
from agent.cli.client_cmd import client_group
from agent.cli.configuration import configure_command, show_configuration_command
from agent.cli.container_cmd import container_start_command
from agent.cli.drain_cmd import drain_command
from agent.cli.hub_cmd import hub_group
from agent.cli.hub_settings import configure_command as hub_configure_command
from agent.cli.hub_settings import show_configuration_command as hub_show_configuration_command
from agent.cli.instances import (
    create_instance_command,
    delete_instance_command,
    list_instances_command,
)
from agent.cli.metrics_cmd import livez_command
from agent.cli.options import VerbGroup
from agent.cli.output import emit_fields, emit_json, format_option
from agent.cli.polling import polling_proxy_command, server_comms_command
from agent.cli.registration import (
    deregister_worker_command,
    poll_server_command,
    register_worker_command,
)
from agent.cli.service_cmd import service_command
from agent.cli.signals import Interrupted
from agent.errors import TentacleError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@click.group(
    cls=VerbGroup,
    context_settings={"max_content_width": 100, "help_option_names": ["-h", "--help"]},
)
@click.version_option(
    __version__, "--version", prog_name="tentacle", message="%(prog)s %(version)s"
)
def cli() -> None:
    """tentacle: a worker agent for deployments, and the hub it works for.

    Run 'tentacle help COMMAND' or 'tentacle COMMAND --help' for a command's options.
    """


@cli.command("help")
@click.argument("command", nargs=-1)
@click.pass_context
def help_command(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Show the help of tentacle, or of one of its commands: tentacle help client upload."""
    parent = ctx.parent
    assert parent is not None
    current: click.Context = parent
    for name in command:
        group = current.command
        found = group.get_command(current, name) if isinstance(group, click.Group) else None
        if found is None:
            raise click.UsageError(f"no such command {' '.join(command)!r}", ctx)
        current = click.Context(found, info_name=name, parent=current)
    click.echo(current.get_help())


@cli.command("version")
@format_option
def version_command(output_format: str) -> None:
    """Show the version of tentacle."""
    if output_format == "json":
        emit_json({"InformationalVersion": __version__, "Python": platform.python_version()})
    else:
        emit_fields([("Version", __version__), ("Python", platform.python_version())])


for command in (
    create_instance_command,
    delete_instance_command,
    list_instances_command,
    new_certificate_command,
    show_thumbprint_command,
    export_certificate_command,
    configure_command,
    show_configuration_command,
    agent_command,
    drain_command,
    client_group,
    server_comms_command,
    polling_proxy_command,
    calamari_group,
    hub_group,
    register_worker_command,
    deregister_worker_command,
    poll_server_command,
    livez_command,
    container_start_command,
    service_command,
):
    cli.add_command(command)
hub_group.add_command(hub_configure_command)
hub_group.add_command(hub_show_configuration_command)
cli.add_command(agent_command, "run")
cli.aliases["run"] = "agent"


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit with its code. Never returns."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code instead of exiting."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="tentacle",
            standalone_mode=False,
        )
    except click.UsageError as error:
        _show_usage_error(error)
        return EXIT_USAGE
    except click.ClickException as error:
        click.echo(f"error: {error.format_message()}", err=True)
        return error.exit_code
    except click.exceptions.Exit as error:
        return error.exit_code
    except Interrupted as stopped:
        click.echo(stopped.note, err=True)
        return stopped.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("Interrupted", err=True)
        return EXIT_INTERRUPTED
    except TentacleError as error:
        click.echo(f"error: {error}", err=True)
        return EXIT_FAILURE
    except OSError as error:
        click.echo(f"error: {_describe_os_error(error)}", err=True)
        return EXIT_FAILURE
    return result if isinstance(result, int) else 0


def _show_usage_error(error: click.UsageError) -> None:
    """Click's usage and hint, then the one ``error:`` line every failure ends with."""
    if error.ctx is not None:
        click.echo(error.ctx.get_usage(), err=True)
        help_option = error.ctx.help_option_names[0]
        click.echo(f"Try '{error.ctx.command_path} {help_option}' for help.\n", err=True)
    click.echo(f"error: {error.format_message()}", err=True)


def _describe_os_error(error: OSError) -> str:
    where = f": {error.filename}" if error.filename else ""
    return f"{error.strerror or error}{where}"
