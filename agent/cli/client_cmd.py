"""client: call an agent by hand (capabilities, upload, download), for debugging."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import click

from agent import __version__
from agent.cli.certificates import instance_identity
from agent.cli.context import current
from agent.cli.loop import run as run_on_loop
from agent.cli.options import VerbGroup, instance_option
from agent.cli.output import emit_fields, emit_json, format_option, progress_bar
from agent.cli.signals import Interrupted, until_signalled
from agent.errors import TentacleError, TrustError
from agent.protocol.services import Isolation, Syntax

if TYPE_CHECKING:  # the client stack (aiohttp) is imported only when a client command runs
    from agent.client import AgentClient
    from agent.client.scripts import ScriptRequest
    from agent.transport.settings import ChannelSettings

T = TypeVar("T")


@dataclass(frozen=True)
class ClientOptions:
    instance_name: str | None


@dataclass(frozen=True)
class Target:
    """Which agent to reach, and how: dial it, or wait for it to poll us."""

    endpoint: str
    thumbprint: str | None
    listen: str | None
    agent_certificate: Path | None
    timeout: float = 120.0


def endpoint_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--endpoint, --thumbprint, --listen, --agent-certificate and --timeout, as one ``target``."""

    @functools.wraps(function)
    def with_target(
        *args: Any,
        endpoint: str,
        thumbprint: str | None,
        listen: str | None,
        agent_certificate: Path | None,
        timeout: float,
        **kwargs: Any,
    ) -> Any:
        target = Target(endpoint, thumbprint, listen, agent_certificate, timeout)
        return function(*args, target=target, **kwargs)

    options = [
        click.option("--endpoint", required=True, metavar="URL",
                     help="the agent: https://HOST:PORT/ (listening) or poll://ID/ (polling)"),
        click.option("--thumbprint", metavar="T",
                     help="the agent's thumbprint (SHA-1 or SHA-256)"),
        click.option("--listen", metavar="HOST:PORT",
                     help="polling: where to wait for the agent to connect"),
        click.option("--agent-certificate", type=click.Path(exists=True, dir_okay=False,
                     path_type=Path), metavar="PEM", help="polling: the agent's certificate"),
        click.option("--timeout", type=click.FloatRange(0, min_open=True), default=120.0,
                     show_default=True, metavar="S",
                     help="polling: seconds to wait for the agent to connect"),
    ]  # fmt: skip
    for option in reversed(options):
        with_target = option(with_target)
    return with_target


@click.group("client", cls=VerbGroup)
@instance_option
@click.pass_context
def client_group(ctx: click.Context, instance_name: str | None) -> None:
    """Reach an agent as a server does: present the certificate of the instance given
    with --instance (one that the agent trusts), as a hub would present its own."""
    ctx.obj = None
    ctx.meta["client"] = ClientOptions(instance_name)


def _run(
    target: Target,
    action: Callable[[AgentClient], Awaitable[T]],
    first_interrupt: Callable[[], None] | None = None,
) -> T:
    """Run ``action`` against the target; SIGINT or SIGTERM stops it (see cli.signals)."""
    from agent.transport.settings import ChannelSettings

    options: ClientOptions = click.get_current_context().meta["client"]
    context = current()
    instance = context.open(options.instance_name)
    config = instance.effective(context.environ)
    settings = ChannelSettings(
        instance_identity(instance.name, config.identity_path),
        f"client:{instance.name}",
        __version__,
        heartbeat_interval=config.heartbeat_interval,
    )

    async def main() -> T:
        if target.endpoint.startswith("poll://"):
            return await _run_polling(target, settings, action)
        from agent.client import AgentClient, Endpoint

        if not target.thumbprint:
            raise click.UsageError("--thumbprint is required for a listening agent")
        try:
            async with AgentClient(Endpoint(target.endpoint, target.thumbprint), settings) as c:
                return await action(c)
        except TrustError as error:
            if "was expected" not in str(error):  # not a mismatch: the agent refused us
                raise
            raise TrustError(
                f"{error}: check --thumbprint (the Thumbprint: line of `tentacle "
                "show-thumbprint --instance NAME` on the agent)"
            ) from None

    return run_on_loop(until_signalled(main(), first_interrupt), context.environ)


async def _run_polling(
    target: Target, settings: ChannelSettings, action: Callable[[AgentClient], Awaitable[T]]
) -> T:
    """Listen for the polling agent ``target.endpoint``, then act through its connection."""
    from agent.certs import load_certificate, sha1_thumbprint
    from agent.client import AgentClient, Endpoint, PollingListener

    if not target.listen or not target.agent_certificate:
        raise click.UsageError(
            "a poll:// endpoint needs --listen HOST:PORT and --agent-certificate"
        )
    host, _, port = target.listen.rpartition(":")
    if not host or not port.isdecimal():
        raise click.BadParameter(
            f"expected HOST:PORT, got {target.listen!r}", param_hint="--listen"
        )
    pem = target.agent_certificate.read_bytes()
    thumbprint = target.thumbprint or sha1_thumbprint(
        load_certificate(pem, str(target.agent_certificate))
    )
    listener = PollingListener(
        settings, [pem.decode("ascii")], refusal_hint="is --agent-certificate the agent's?"
    )
    await listener.start(host.strip("[]"), int(port))
    click.echo(f"Waiting for {target.endpoint} on {target.listen} (up to {target.timeout:g} s)",
               err=True)  # fmt: skip
    try:
        async with AgentClient.polling(
            listener, Endpoint(target.endpoint, thumbprint), settings, target.timeout
        ) as client:
            return await action(client)
    finally:
        await listener.stop()


@client_group.command("capabilities")
@endpoint_options
@format_option
def capabilities_command(target: Target, output_format: str) -> None:
    """Show what the agent serves and what its machine offers."""
    found = _run(target, lambda client: client.capabilities())
    if output_format == "json":
        emit_json(found)
    else:
        emit_fields([(key, ", ".join(v) if isinstance(v, list) else v) for key, v in found.items()])


@client_group.command("upload")
@endpoint_options
@format_option
@click.argument("local", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("remote")
def upload_command(target: Target, output_format: str, local: Path, remote: str) -> None:
    """Upload LOCAL to REMOTE on the agent (relative to its home)."""
    with progress_bar(local.stat().st_size, "Uploading") as progress:
        result = _run(target, lambda c: c.upload(local, remote, progress))
    _show_transfer(result, output_format)


@client_group.command("download")
@endpoint_options
@format_option
@click.argument("remote")
@click.argument("local", type=click.Path(path_type=Path))
def download_command(target: Target, output_format: str, remote: str, local: Path) -> None:
    """Download REMOTE from the agent into LOCAL (a file, or a folder to put it in)."""
    local = _download_target(remote, local.absolute())
    with progress_bar(None, "Downloading") as progress:
        result = _run(target, lambda c: c.download(remote, local, progress))
    _show_transfer(result, output_format)


def _download_target(remote: str, local: Path) -> Path:
    """Where a download lands: LOCAL, or REMOTE's name inside LOCAL if it is a folder."""
    if local.is_dir():
        local = local / PurePosixPath(remote.replace("\\", "/")).name
    if not local.parent.is_dir():
        raise click.BadParameter(
            f"the folder {local.parent} does not exist; create it first", param_hint="LOCAL"
        )
    return local


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


@client_group.command("run-script")
@endpoint_options
@click.option("--ticket", help="resume the script with this ticket if it exists, else start it")
@click.option(
    "--syntax",
    type=click.Choice([s.value for s in Syntax]),
    default=Syntax.BASH.value,
    show_default=True,
)
@click.option(
    "--isolation",
    type=click.Choice([i.value for i in Isolation]),
    default=Isolation.FULL.value,
    show_default=True,
)
@click.option("--mutex", "mutex_name", metavar="NAME", help="isolation mutex name")
@click.option("--mutex-timeout", type=click.FloatRange(0), metavar="S")
@click.option(
    "--grace",
    type=click.FloatRange(0),
    metavar="S",
    help="seconds between SIGTERM and SIGKILL when cancelled",
)
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    metavar="PATH",
    help="send a file into the script's workspace",
)
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def run_script_command(
    target: Target,
    ticket: str | None,
    syntax: str,
    isolation: str,
    mutex_name: str | None,
    mutex_timeout: float | None,
    grace: float | None,
    files: tuple[str, ...],
    script: Path,
    arguments: tuple[str, ...],
) -> None:
    """Run SCRIPT on the agent and exit with its exit code; Ctrl-C cancels it.

    A second Ctrl-C, or SIGTERM, stops following the script at once and leaves
    it running on the agent; --ticket with the ticket shown follows it again.
    The script's own ARGUMENTS follow `--`, so that a mistyped option is an error.
    """
    from agent.client.scripts import LogChunk, ScriptRequest, execute_script
    from agent.protocol.services import describe_exit_code

    request_fields: dict[str, Any] = {"ticket": ticket} if ticket else {}
    request = ScriptRequest(
        body=script.read_text(),
        syntax=syntax,
        arguments=arguments,
        files=[(Path(f).name, Path(f)) for f in files],
        isolation=isolation,
        mutex_name=mutex_name,
        mutex_timeout=mutex_timeout,
        grace=grace,
        **request_fields,
    )

    def show(chunk: LogChunk) -> None:
        if chunk.source == "stdout":
            click.echo(chunk.text)
        elif chunk.source == "stderr":
            click.echo(chunk.text, err=True)
        else:
            click.echo("\n".join(f"[agent] {line}" for line in chunk.lines), err=True)

    cancel = asyncio.Event()

    async def action(client: AgentClient) -> int:
        outcome = await execute_script(client, request, show, cancel)
        if outcome.already_finished:
            click.echo(
                f"Script {request.ticket} had already finished, with exit code "
                f"{outcome.exit_code}; a ticket runs at most once, and its log is no "
                "longer kept on the agent",
                err=True,
            )
        return outcome.exit_code

    try:
        code = _run(target, action, first_interrupt=functools.partial(_cancel, request, cancel))
    except Interrupted as stopped:
        raise Interrupted(stopped.signum, _left_running(request.ticket, cancel.is_set())) from None
    if code < 0:
        raise TentacleError(f"script {request.ticket}: {describe_exit_code(code)} ({code})")
    raise click.exceptions.Exit(min(code, 255))


def _cancel(request: ScriptRequest, cancel: asyncio.Event) -> None:
    click.echo(
        f"Cancelling script {request.ticket} on the agent; Ctrl-C again to stop following it",
        err=True,
    )
    cancel.set()


def _left_running(ticket: str, cancel_requested: bool) -> str:
    state = "was asked to stop but may still be running" if cancel_requested else "is still running"
    return (
        f"stopped following script {ticket}; it {state} on the agent. Follow it again with "
        f"the same command and --ticket {ticket}"
    )
