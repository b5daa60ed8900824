"""server-comms: the servers a polling agent dials."""

from __future__ import annotations

import click

from agent.cli.context import current
from agent.cli.options import instance_option
from agent.config.polling import (
    DEFAULT_POLLING_PORT,
    PollingServer,
    new_subscription_id,
    with_server,
)
from agent.config.trust import add_trusted_thumbprint

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
@click.option("--thumbprint", required=True, metavar="T", help="the server's thumbprint")
def server_comms_command(
    instance_name: str | None, style: str, host: str | None, port: int, thumbprint: str
) -> None:
    """Record how this agent talks to a server.

    With TentacleActive the agent dials HOST:PORT and presents its subscription
    id, generated once and kept; the server is pinned by its thumbprint. With
    TentaclePassive the thumbprint is trusted for incoming connections.
    """
    instance = current().open(instance_name)
    config = instance.config
    if style == "TentaclePassive":
        config = config.with_trusted(add_trusted_thumbprint(config.trusted, thumbprint))
        instance.save(config)
        click.echo(f"Trusting {thumbprint.upper()} for incoming connections (pending its "
                   "certificate: configure --trust-certificate)")  # fmt: skip
        return
    if not host:
        raise click.UsageError("--host is required with --style TentacleActive")
    try:
        server = PollingServer.at(host, port, thumbprint)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--host") from None
    subscription = config.subscription_id or new_subscription_id()
    config = config.with_settings(
        subscription_id=subscription,
        polling_servers=with_server(config.polling_servers, server),
    )
    instance.save(config)
    click.echo(f"Polling {server.address} (thumbprint {server.thumbprint}) as {subscription}")
    click.echo("Restart the agent for the change to take effect")


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
