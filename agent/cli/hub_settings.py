"""hub configure, hub show-configuration: the hub's settings (agent.hub.home's table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from agent.certs import load_identity
from agent.cli.context import current
from agent.cli.hub_cmd import home_option, hub_group
from agent.cli.options import absolute_path
from agent.cli.output import emit_fields, emit_json, format_option
from agent.cli.settings_options import flag_values, setting_options
from agent.config.settings import overridden_settings, setting_of_shown, shown_of
from agent.hub.home import HUB_SETTINGS, HubHome, HubSettings, load_home, shared_port


@click.command("configure")
@home_option
@setting_options(HUB_SETTINGS)
@click.option(
    "--https-certificate",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PEM",
    help="serve HTTPS with this certificate (its chain may follow) and its unencrypted key, "
    "for CA-signed setups: checked, then copied into the home (0600)",
)
@click.option(
    "--reset-https-certificate",
    is_flag=True,
    help="serve HTTPS on the hub's own certificate again (clients pin its thumbprint)",
)
def configure_command(
    home: Path, https_certificate: Path | None, reset_https_certificate: bool, **flags: Any
) -> None:
    """Change a hub's settings (hub.yaml); restart the hub for them to take effect."""
    if https_certificate is not None and reset_https_certificate:
        raise click.UsageError("give --https-certificate or --reset-https-certificate, not both")
    hub = load_home(home)
    try:
        changed = hub.with_settings(**flag_values(HUB_SETTINGS, flags))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    listen_port = int(changed.settings.listen.rpartition(":")[2])
    problem = shared_port(listen_port, changed.settings.polling_port)
    if problem is not None:
        raise click.UsageError(problem)
    if https_certificate is not None:
        source = absolute_path(str(https_certificate)) or https_certificate
        changed = changed.install_https_certificate(source)
        click.echo(f"HttpsCertificate: {source} checked and copied to {changed.https_path()}")
    elif reset_https_certificate:
        changed = changed.without_https_certificate()
    if changed.settings == hub.settings and https_certificate is None:
        click.echo(f"Nothing changed in {hub.settings_path}")
        return
    changed.save()
    before, after = shown_of(hub.settings), shown_of(changed.settings)
    for key in before:
        if before[key] != after[key]:
            click.echo(f"{key}: {_shown(before[key])} -> {_shown(after[key])}")
    click.echo(f"Saved {hub.settings_path}; restart the hub for the changes to take effect")


def _shown(value: Any) -> str:
    return "(none)" if value is None else str(value)


@click.command("show-configuration")
@home_option
@format_option
def show_configuration_command(home: Path, output_format: str) -> None:
    """Show the hub's effective settings (TENTACLE_HUB_* variables applied) and the
    thumbprints of its certificates. Never shows a private key or a database password."""
    environ = current().environ
    hub = load_home(home, environ)
    document = configuration_document(hub)
    if output_format == "json":
        emit_json(document)
        return
    overridden = overridden_settings(HubSettings, environ)
    names = setting_of_shown(HubSettings)
    fields = []
    for key, value in document.items():
        variable = overridden.get(names.get(key, ""))
        fields.append((key, _shown(value) + (f" (from {variable})" if variable else "")))
    emit_fields(fields)


def configuration_document(hub: HubHome) -> dict[str, Any]:
    """The shown settings, the home, and the thumbprints a client pins or checks."""
    settings = shown_of(hub.settings)
    settings["Database"] = _without_password(settings["Database"])
    https = hub.settings.https_certificate
    return {
        "Home": str(hub.path),
        **settings,
        "Thumbprint": hub.identity().thumbprint,
        "HttpsThumbprint": load_identity(https).thumbprint if https else None,
    }


def _without_password(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db."""
    scheme, sep, rest = url.partition("://")
    credentials, at, place = rest.rpartition("@")
    user, colon, _ = credentials.partition(":")
    return f"{scheme}{sep}{user}:***@{place}" if at and colon else url


# `hub configure` and `hub show-configuration` live here, beside the settings they show
hub_group.add_command(configure_command)
hub_group.add_command(show_configuration_command)
