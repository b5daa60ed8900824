"""new-certificate, show-thumbprint, export-certificate."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent.atomicfile import write_atomic
from agent.certs import (
    Identity,
    exposed_identity_warning,
    generate_identity,
    load_identity,
    save_identity,
)
from agent.cli.context import current
from agent.cli.options import instance_option
from agent.cli.output import emit_fields, emit_json, format_option
from agent.config.instances import HOME_MODE
from agent.errors import CertificateError

PUBLIC = 0o644


@click.command("new-certificate")
@instance_option
@click.option("--if-blank", "-b", is_flag=True, help="keep an existing certificate")
def new_certificate_command(instance_name: str | None, if_blank: bool) -> None:
    """Generate the instance's self-signed certificate and private key (0600)."""
    instance = current().open(instance_name)
    path = instance.config.identity_path
    if if_blank and path.exists():
        existing = load_identity(path)  # a corrupt one is an error, never silently replaced
        click.echo(f"Instance {instance.name!r} already has a certificate: {existing.thumbprint}")
        return
    old = _previous_thumbprint(path)
    path.parent.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    identity = generate_identity()
    save_identity(path, identity)
    click.echo(f"Generated a new certificate for {instance.name!r}: {identity.thumbprint}")
    if old is not None:
        click.echo(
            f"It replaces {old}: every peer that trusted the old one must trust "
            "the new one (export-certificate, then configure --trust-certificate).",
            err=True,
        )


def _previous_thumbprint(path: Path) -> str | None:
    """The thumbprint of the identity about to be replaced, if there is one."""
    if not path.exists():
        return None
    try:
        return load_identity(path).thumbprint
    except CertificateError:
        return "an unreadable certificate"


def instance_identity(name: str, path: Path) -> Identity:
    """Instance ``name``'s identity from ``path``; a missing one says how to make it, and
    one that other users can read is warned about."""
    if not path.exists():
        raise CertificateError(
            f"instance {name!r} has no certificate yet (no {path}); create one with: "
            f"tentacle new-certificate --instance {name}"
        )
    warning = exposed_identity_warning(path)
    if warning is not None:
        click.echo(f"warning: {warning}", err=True)
    return load_identity(path)


@click.command("show-thumbprint")
@instance_option
@format_option
def show_thumbprint_command(instance_name: str | None, output_format: str) -> None:
    """Show the instance's certificate thumbprints (SHA-1 as Octopus shows it, and SHA-256)."""
    instance = current().open(instance_name)
    identity = instance_identity(instance.name, instance.config.identity_path)
    if output_format == "json":
        emit_json({"Thumbprint": identity.thumbprint, "Sha256": identity.sha256})
    else:
        emit_fields([("Thumbprint", identity.thumbprint), ("SHA-256", identity.sha256)])


@click.command("export-certificate")
@instance_option
@click.option(
    "--file", "file_name", required=True, metavar="PATH", help="PEM file, or - for stdout"
)
def export_certificate_command(instance_name: str | None, file_name: str) -> None:
    """Write the instance's public certificate (never its key) as PEM."""
    instance = current().open(instance_name)
    identity = instance_identity(instance.name, instance.config.identity_path)
    if file_name == "-":
        sys.stdout.write(identity.certificate_pem.decode("ascii"))
        return
    path = Path(file_name).expanduser().absolute()
    write_atomic(path, identity.certificate_pem, mode=PUBLIC)
    click.echo(f"Exported certificate {identity.thumbprint} to {path}")
