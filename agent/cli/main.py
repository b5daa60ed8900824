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
from agent.cli.options import LazyVerbGroup
from agent.cli.output import emit_fields, emit_json, format_option
from agent.cli.signals import Interrupted
from agent.errors import TentacleError

# Each verb and where it lives, imported when it is used (see LazyVerbGroup)
VERBS = {
    "create-instance": "agent.cli.instances:create_instance_command",
    "delete-instance": "agent.cli.instances:delete_instance_command",
    "list-instances": "agent.cli.instances:list_instances_command",
    "new-certificate": "agent.cli.certificates:new_certificate_command",
    "show-thumbprint": "agent.cli.certificates:show_thumbprint_command",
    "export-certificate": "agent.cli.certificates:export_certificate_command",
    "configure": "agent.cli.configuration:configure_command",
    "show-configuration": "agent.cli.configuration:show_configuration_command",
    "agent": "agent.cli.agent_cmd:agent_command",
    "run": "agent.cli.agent_cmd:agent_command",
    "drain": "agent.cli.drain_cmd:drain_command",
    "client": "agent.cli.client_cmd:client_group",
    "server-comms": "agent.cli.polling:server_comms_command",
    "polling-proxy": "agent.cli.polling:polling_proxy_command",
    "calamari": "agent.cli.calamari_cmd:calamari_group",
    "hub": "agent.cli.hub_settings:hub_group",
    "register-worker": "agent.cli.registration:register_worker_command",
    "deregister-worker": "agent.cli.registration:deregister_worker_command",
    "poll-server": "agent.cli.registration:poll_server_command",
    "livez": "agent.cli.metrics_cmd:livez_command",
    "container-start": "agent.cli.container_cmd:container_start_command",
    "service": "agent.cli.service_cmd:service_command",
}

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@click.group(
    cls=LazyVerbGroup,
    lazy=VERBS,
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
