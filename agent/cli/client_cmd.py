"""client: call an agent by hand (capabilities, upload, download), for debugging."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from agent import __version__
from agent.certs import load_identity
from agent.cli.context import current
from agent.cli.options import instance_option
from agent.cli.output import emit_fields, emit_json, format_option

if TYPE_CHECKING:  # the client stack (aiohttp) is imported only when a client command runs
    from agent.client import AgentClient

T = TypeVar("T")


@dataclass(frozen=True)
class ClientOptions:
    instance_name: str | None


def endpoint_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option(
        "--thumbprint", required=True, metavar="T", help="the agent's thumbprint (SHA-1 or SHA-256)"
    )(function)
    return click.option(
        "--endpoint", required=True, metavar="URL", help="the agent, https://HOST:PORT/"
    )(function)


@click.group("client")
@instance_option
@click.pass_context
def client_group(ctx: click.Context, instance_name: str | None) -> None:
    """Reach an agent as a server does, with instance H's certificate as identity."""
    ctx.obj = None
    ctx.meta["client"] = ClientOptions(instance_name)


def _run(endpoint: str, thumbprint: str, action: Callable[[AgentClient], Awaitable[T]]) -> T:
    from agent.client import AgentClient, Endpoint
    from agent.transport.settings import ChannelSettings

    options: ClientOptions = click.get_current_context().meta["client"]
    context = current()
    instance = context.open(options.instance_name)
    config = instance.effective(context.environ)
    settings = ChannelSettings(
        load_identity(config.identity_path),
        f"client:{instance.name}",
        __version__,
        heartbeat_interval=config.heartbeat_interval,
    )

    async def main() -> T:
        async with AgentClient(Endpoint(endpoint, thumbprint), settings) as client:
            return await action(client)

    return asyncio.run(main())


@client_group.command("capabilities")
@endpoint_options
@format_option
def capabilities_command(endpoint: str, thumbprint: str, output_format: str) -> None:
    """Show what the agent serves and what its machine offers."""
    found = _run(endpoint, thumbprint, lambda client: client.capabilities())
    if output_format == "json":
        emit_json(found)
    else:
        emit_fields([(key, ", ".join(v) if isinstance(v, list) else v) for key, v in found.items()])


@client_group.command("upload")
@endpoint_options
@format_option
@click.argument("local", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("remote")
def upload_command(
    endpoint: str, thumbprint: str, output_format: str, local: Path, remote: str
) -> None:
    """Upload LOCAL to REMOTE on the agent (relative to its home)."""
    with _progress(local.stat().st_size, "Uploading") as progress:
        result = _run(endpoint, thumbprint, lambda c: c.upload(local, remote, progress))
    _show_transfer(result, output_format)


@client_group.command("download")
@endpoint_options
@format_option
@click.argument("remote")
@click.argument("local", type=click.Path(dir_okay=False, path_type=Path))
def download_command(
    endpoint: str, thumbprint: str, output_format: str, remote: str, local: Path
) -> None:
    """Download REMOTE from the agent into LOCAL."""
    with _progress(None, "Downloading") as progress:
        result = _run(
            endpoint, thumbprint, lambda c: c.download(remote, local.absolute(), progress)
        )
    _show_transfer(result, output_format)


def _show_transfer(result: dict[str, Any], output_format: str) -> None:
    if output_format == "json":
        emit_json({key: result[key] for key in ("FullPath", "Length", "Sha256")})
    else:
        emit_fields(
            [
                ("FullPath", result["FullPath"]),
                ("Length", result["Length"]),
                ("Sha256", result["Sha256"]),
            ]
        )


@contextmanager
def _progress(length: int | None, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal (stderr); nothing when output goes elsewhere."""
    if not sys.stderr.isatty():
        yield None
        return
    bar: Any = click.progressbar(length=length, label=label, file=sys.stderr)
    with bar:
        yield bar.update
