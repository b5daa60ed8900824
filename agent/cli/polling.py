"""server-comms: the servers a polling agent dials."""

from __future__ import annotations

import click

from agent.certs import parse_thumbprint
from agent.cli.context import current
from agent.cli.options import instance_option
from agent.config.instances import Instance
from agent.config.model import InstanceConfig
from agent.config.polling import (
    DEFAULT_POLLING_PORT,
    PollingServer,
    new_subscription_id,
    polling_address,
    same_node,
    with_server,
    without_servers,
)
from agent.config.trust import add_trusted_thumbprint
from agent.errors import TentacleError

STYLES = ("TentacleActive", "TentaclePassive")


@click.command("server-comms")
@instance_option
@click.option(
    "--style",
    type=click.Choice(STYLES),
    default="TentacleActive",
    show_default=True,
    help="TentacleActive: this agent polls the server; TentaclePassive: it listens",
)
@click.option("--host", help="the server to poll (TentacleActive)")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_POLLING_PORT,
    show_default=True,
    help="the server's polling port",
)
@click.option("--thumbprint", metavar="T", help="the server's thumbprint")
@click.option(
    "--remove",
    is_flag=True,
    help="stop polling instead: the servers with --thumbprint, or at --host and --port "
    "(both: the one that has both); the trust stays (configure --remove-trust)",
)
def server_comms_command(
    instance_name: str | None,
    style: str,
    host: str | None,
    port: int,
    thumbprint: str | None,
    remove: bool,
) -> None:
    """Record how this agent talks to a server, or with --remove stop polling one.

    With TentacleActive the agent dials HOST:PORT and presents its subscription
    id, generated once and kept; the server is pinned by its thumbprint. A server
    at the same address, or with the same thumbprint on the same host (its port
    moved), is replaced in place. With TentaclePassive the thumbprint is trusted
    for incoming connections.
    """
    instance = current().open(instance_name)
    if remove:
        _remove(instance, host, port, thumbprint)
        return
    if not thumbprint:
        raise click.UsageError("--thumbprint is required (unless --remove)")
    config = instance.config
    if style == "TentaclePassive":
        config = config.with_trusted(add_trusted_thumbprint(config.trusted, thumbprint))
        instance.save(config)
        click.echo(f"Trusting {thumbprint.upper()} for incoming connections (pending its "
                   "certificate: configure --trust-certificate)")  # fmt: skip
        return
    if not host:
        raise click.UsageError("--host is required with --style TentacleActive")
    server = _server(host, port, thumbprint)
    subscription = config.subscription_id or new_subscription_id()
    moved = instead_of(config.polling_servers, server)
    config = config.with_settings(
        subscription_id=subscription,
        polling_servers=with_server(config.polling_servers, server),
    )
    instance.save(config)
    click.echo(
        f"Polling {server.address}{moved} (thumbprint {server.thumbprint}) as {subscription}"
    )
    click.echo("Restart the agent for the change to take effect")


def _server(host: str, port: int, thumbprint: str) -> PollingServer:
    """The entry for ``--host``, ``--port`` and ``--thumbprint``; BadParameter for a bad
    host, CertificateError for a bad thumbprint."""
    try:
        return PollingServer.at(host, port, thumbprint)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--host") from None


def _remove(instance: Instance, host: str | None, port: int, thumbprint: str | None) -> None:
    """server-comms --remove: drop the polling entries named, or say in one line that
    none matched (and what the instance polls)."""
    if not host and not thumbprint:
        raise click.UsageError("--remove needs --thumbprint, or --host (and --port)")
    wanted = parse_thumbprint(thumbprint) if thumbprint else None
    try:
        address = polling_address(host, port) if host else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--host") from None
    config = instance.config
    kept, removed = without_servers(
        config.polling_servers,
        lambda s: (
            (wanted is None or s.thumbprint == wanted)
            and (address is None or s.address.lower() == address)
        ),
    )
    if not removed:
        named = " at ".join(part for part in (wanted, address) if part)
        polls = ", ".join(f"{s.address} ({s.thumbprint})" for s in config.polling_servers)
        raise TentacleError(
            f"no polling server matches {named}: this instance polls {polls or 'no server'}"
        )
    config = config.with_settings(polling_servers=kept)
    instance.save(config)
    for server in removed:
        click.echo(f"No longer polling {server.address} ({server.thumbprint})")
    click.echo("Restart the agent for the change to take effect")
    warn_if_idle(config)


def warn_if_idle(config: InstanceConfig) -> None:
    """Warn (stderr) when the config leaves the agent neither listening nor polling."""
    if config.no_listen and not config.polling_servers:  # the agent would refuse to start
        click.echo("warning: with NoListen true and no polling servers left this agent would "
                   "neither listen nor poll: tentacle server-comms --host H --thumbprint T "
                   "adds one, tentacle configure --noListen false listens", err=True)  # fmt: skip


def instead_of(servers: tuple[PollingServer, ...], server: PollingServer) -> str:
    """ " instead of ADDRESS" when ``server`` takes the place of an entry at another
    address (see with_server), else nothing: the end of a sentence for the user."""
    replaced = [s.address for s in servers if same_node(s, server) and s.address != server.address]
    return f" instead of {', '.join(replaced)}" if replaced else ""


@click.command("polling-proxy")
@instance_option
@click.option(
    "--proxyEnable",
    "enable",
    type=click.BOOL,
    default=True,
    show_default=True,
    help="false: dial polling servers directly (HTTPS_PROXY still applies)",
)
@click.option("--proxyHost", "host", help="the HTTP proxy's host")
@click.option("--proxyPort", "port", type=click.IntRange(1, 65535), default=80, show_default=True)
@click.option("--proxyUsername", "username", help="for proxies that ask (Basic)")
@click.option("--proxyPassword", "password", help="stored in the 0600 config, never shown")
def polling_proxy_command(
    instance_name: str | None,
    enable: bool,
    host: str | None,
    port: int,
    username: str | None,
    password: str | None,
) -> None:
    """Set the HTTP proxy (CONNECT) that polling connections go through."""
    instance = current().open(instance_name)
    if enable and not host:
        raise click.UsageError("--proxyHost is required unless --proxyEnable false")
    settings = (
        {"polling_proxy_host": host, "polling_proxy_port": port,
         "polling_proxy_username": username, "polling_proxy_password": password}
        if enable
        else dict.fromkeys(("polling_proxy_host", "polling_proxy_port",
                            "polling_proxy_username", "polling_proxy_password"))
    )  # fmt: skip
    instance.save(instance.config.with_settings(**settings))
    if enable:
        who = f"{username}@" if username else ""
        click.echo(f"Polling connections go through http://{who}{host}:{port}")
    else:
        click.echo("Polling connections go directly (or through HTTPS_PROXY if set)")
