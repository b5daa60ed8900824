"""create-instance, delete-instance, list-instances."""

from __future__ import annotations

import click

from agent.cli.context import current
from agent.cli.options import absolute_path
from agent.cli.output import emit_json, emit_table, format_option
from agent.config.instances import create_instance, delete_instance


@click.command("create-instance")
@click.option("--instance", "instance_name", required=True, metavar="NAME")
@click.option("--config", "config_file", metavar="FILE", help="the config file to create or adopt")
@click.option("--home", metavar="DIR", help="the instance home (default: the config's folder)")
def create_instance_command(instance_name: str, config_file: str | None, home: str | None) -> None:
    """Create a named instance with its config file and home."""
    context = current()
    instance = create_instance(
        context.index,
        context.config_home,
        instance_name,
        config_path=absolute_path(config_file),
        home=absolute_path(home),
    )
    click.echo(f"Created instance {instance.name!r}")
    click.echo(f"  config: {instance.config_path}")
    click.echo(f"  home:   {instance.config.home}")
    click.echo(f"  port:   {instance.config.port}")


@click.command("delete-instance")
@click.option("--instance", "instance_name", required=True, metavar="NAME")
def delete_instance_command(instance_name: str) -> None:
    """Forget an instance. Its config file and home (with its certificate) stay."""
    entry = delete_instance(current().index, instance_name)
    click.echo(f"Deleted instance {entry.name!r}; its config file {entry.config_path} was kept")


@click.command("list-instances")
@format_option
def list_instances_command(output_format: str) -> None:
    """List the instances on this machine."""
    entries = current().index.entries()
    if output_format == "json":
        emit_json([entry.as_json() for entry in entries])
    elif not entries:
        click.echo("No instances. Create one with: tentacle create-instance --instance NAME")
    else:
        emit_table(["Instance", "Config file"], [(e.name, e.config_path) for e in entries])
