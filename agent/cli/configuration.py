"""configure, show-configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from agent import drain
from agent.certs import load_certificate, load_identity
from agent.cli.context import current
from agent.cli.options import absolute_path, instance_option
from agent.cli.output import emit_fields, emit_json, format_option
from agent.cli.settings_options import flag_values, setting_options
from agent.config.environment import overridden_settings
from agent.config.instances import Instance, change_home, check_port_free
from agent.config.model import INSTANCE_SETTINGS, InstanceConfig
from agent.config.settings import apply_flags, setting_of_shown, shown_of
from agent.config.trust import add_trusted_certificate, add_trusted_thumbprint, remove_trust
from agent.errors import ConfigError, TentacleError


@click.command("configure")
@instance_option
@click.option(
    "--home",
    metavar="DIR",
    help="the instance home; its certificate, files and workspaces move along "
    "(stop the agent first)",
)
@setting_options(INSTANCE_SETTINGS)
@click.option(
    "--trust",
    multiple=True,
    metavar="THUMBPRINT",
    help="trust a peer (pending until its certificate is given)",
)
@click.option(
    "--trust-certificate",
    "trust_certificates",
    multiple=True,
    metavar="PEM_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="trust a peer's certificate",
)
@click.option(
    "--file-root",
    "file_roots",
    multiple=True,
    metavar="DIR",
    help="also allow file transfer under DIR (besides the home)",
)
@click.option("--remove-file-root", "removed_file_roots", multiple=True, metavar="DIR")
@click.option("--remove-trust", multiple=True, metavar="THUMBPRINT", help="stop trusting a peer")
@click.option("--reset-trust", is_flag=True, help="forget every trusted peer first")
def configure_command(
    instance_name: str | None,
    home: str | None,
    file_roots: tuple[str, ...],
    removed_file_roots: tuple[str, ...],
    trust: tuple[str, ...],
    trust_certificates: tuple[Path, ...],
    remove_trust: tuple[str, ...],
    reset_trust: bool,
    **flags: Any,
) -> None:
    """Change an instance's settings and trusted peers.

    Applied in Tentacle's order: reset trust, remove, add, then the other settings.
    """
    # The settings' options come from the table (agent.config.model); --home and
    # --file-root are written out above because they move or add rather than set.
    context = current()
    instance = context.open(instance_name)
    config = _change_trust(instance.config, reset_trust, remove_trust, trust, trust_certificates)
    settings = {
        **flag_values(INSTANCE_SETTINGS, flags),
        "file_roots": _changed_roots(config.file_roots, file_roots, removed_file_roots),
    }
    try:
        config = apply_flags(config, settings)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if flags.get("port") is not None:
        check_port_free(context.index, instance.name, config.port)
    if home is not None:
        config, left_behind = change_home(config, absolute_path(home) or Path(home))
        for line in left_behind:
            click.echo(f"warning: {line}", err=True)
    if config == instance.config:
        click.echo(f"Nothing changed in {instance.config_path}")
        return
    instance.save(config)
    _describe_changes(instance, config)
    if config.no_listen and not config.polling_servers:  # the agent would refuse to start
        click.echo("warning: with NoListen true and no polling servers this agent would neither "
                   "listen nor poll; add a server: tentacle server-comms --host H --thumbprint T",
                   err=True)  # fmt: skip


def _changed_roots(
    roots: tuple[Path, ...], added: tuple[str, ...], removed: tuple[str, ...]
) -> tuple[Path, ...] | None:
    if not added and not removed:
        return None
    gone = {absolute_path(path) for path in removed}
    kept = [root for root in roots if root not in gone]
    new = [Path(path).expanduser().absolute() for path in added]
    for root in new:
        if not root.is_dir():
            problem = "is not a folder" if root.exists() else "does not exist"
            raise click.BadParameter(
                f"{root} {problem}; a file root must be an existing folder (create it first)",
                param_hint="--file-root",
            )
    return tuple(dict.fromkeys([*kept, *new]))


def _change_trust(
    config: InstanceConfig,
    reset: bool,
    removals: tuple[str, ...],
    thumbprints: tuple[str, ...],
    certificate_files: tuple[Path, ...],
) -> InstanceConfig:
    peers = () if reset else config.trusted
    for thumbprint in removals:
        peers, removed = remove_trust(peers, thumbprint)
        if not removed:
            click.echo(f"No trusted peer has thumbprint {thumbprint}; nothing removed", err=True)
    for thumbprint in thumbprints:
        peers = add_trusted_thumbprint(peers, thumbprint)
    for path in certificate_files:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ConfigError(f"cannot read certificate file {path}: {error.strerror}") from None
        peers = add_trusted_certificate(peers, load_certificate(data, str(path)))
    return config.with_trusted(peers)


def _describe_changes(instance: Instance, new: InstanceConfig) -> None:
    old = instance.config
    for peer in new.trusted:
        if peer not in old.trusted:
            state = "pending its certificate" if peer.is_pending else "with its certificate"
            click.echo(f"Trusted {peer.thumbprint} ({state})")
    for peer in old.trusted:
        if peer not in new.trusted:
            click.echo(f"No longer trusted: {peer.thumbprint}")
    for name, before, after in _setting_changes(old, new):
        click.echo(f"{name}: {_shown(before)} -> {_shown(after)}")
    click.echo(f"Saved {instance.config_path}; restart the agent for the changes to take effect")


def _shown(value: Any) -> str:
    """A setting as a person writes it: paths as paths, lists comma-separated."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return ", ".join(str(item) for item in value) or "(none)"
    return str(value)


def _setting_changes(old: InstanceConfig, new: InstanceConfig) -> list[tuple[str, Any, Any]]:
    """(shown key, before, after) for each shown setting that changed, as shown."""
    before, after = shown_of(old), shown_of(new)
    return [(key, before[key], after[key]) for key in before if before[key] != after[key]]


@click.command("show-configuration")
@instance_option
@format_option
def show_configuration_command(instance_name: str | None, output_format: str) -> None:
    """Show the instance's effective configuration (environment overrides applied).

    Never shows a private key.
    """
    context = current()
    instance = context.open(instance_name)
    config = instance.effective(context.environ)
    document = configuration_document(instance, config)
    if output_format == "json":
        emit_json(document)
        return
    overrides = overridden_settings(context.environ)
    listed_below = ("Trust", "PollingServers")
    emit_fields(
        [
            (key, _text(key, value, overrides))
            for key, value in document.items()
            if key not in listed_below
        ]
    )
    for peer in config.trusted:
        note = " (pending: certificate not yet given)" if peer.is_pending else ""
        click.echo(f"  trusts {peer.thumbprint}{note}")
    for server in config.polling_servers:
        click.echo(f"  polls {server.address} ({server.thumbprint}) as {config.subscription_id}")


def configuration_document(instance: Instance, config: InstanceConfig) -> dict[str, Any]:
    """The configuration in Tentacle's PascalCase vocabulary."""
    try:
        thumbprint: str | None = load_identity(config.identity_path).thumbprint
    except TentacleError:
        thumbprint = None
    return {
        "InstanceName": instance.name,
        "ConfigurationFilePath": str(instance.config_path),
        **shown_of(config),
        "Thumbprint": thumbprint,
        "TrustedThumbprints": [peer.thumbprint for peer in config.trusted],
        "PollingProxy": (
            f"http://{config.polling_proxy_username + '@' if config.polling_proxy_username else ''}"
            f"{config.polling_proxy_host}:{config.polling_proxy_port or 80}"
            if config.polling_proxy_host
            else None
        ),
        "PollingServers": [
            {
                "Address": server.address,
                "Thumbprint": server.thumbprint,
                "SubscriptionId": config.subscription_id,
            }
            for server in config.polling_servers
        ],
        "Trust": [
            {"Thumbprint": peer.thumbprint, "Sha256": peer.sha256, "Pending": peer.is_pending}
            for peer in config.trusted
        ],
        **drain_document(config.home),
    }


def drain_document(home: Path) -> dict[str, Any]:
    """Whether `tentacle drain` left the instance draining (the running agent and the
    next one refuse new scripts), and since when."""
    try:
        state = drain.read_request(home)
    except ConfigError as error:
        return {"Draining": None, "DrainingSince": None, "DrainingProblem": str(error)}
    draining = state is not None and state.draining
    return {"Draining": draining, "DrainingSince": state.since if state and draining else None}


_SETTING_OF_KEY = setting_of_shown(InstanceConfig)


def _text(key: str, value: Any, overrides: dict[str, str]) -> str:
    if isinstance(value, list):
        value = ", ".join(value) or "(none)"
    elif value is None:
        value = "(none)"
    variable = overrides.get(_SETTING_OF_KEY.get(key, ""))
    return f"{value}  (from {variable})" if variable else str(value)
