"""container-start: the container image's entrypoint (packaging/container/Containerfile).

Driven by Tentacle's container variables (agent/cli/container_settings.py), it
creates or reuses the instance in the volume (``TENTACLE_CONFIG_HOME``),
registers the worker with the hub once, then replaces itself with
``tentacle agent`` (``execve``: the same process, so that the container
engine's SIGTERM reaches the agent, which drains) without the API key in its
environment.

Registered once: the hub's answer is recorded in the instance's home
(``container-registration.json``) with what was asked. A restarted container
with the same volume reuses its certificate and that record; it asks the hub
(by thumbprint) whether the worker is still there and registers again only if it
is not (a policy deleted it while the container was down) or if the variables
ask for something else. Registering again updates the record found by
certificate, so it never duplicates the worker either. A hub that cannot be
reached at the first start fails the start (exit 1: the container engine
restarts it) before anything of the hub is saved in the volume.

Exit codes: 3 a variable is missing or malformed, or the hub refused what they
ask for (an unknown pool, a bad key): restarting will not mend it; 1 the hub
could not be reached; otherwise the agent's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from agent.atomicfile import write_atomic
from agent.certs import Identity, generate_identity, save_identity
from agent.cli.agent_cmd import EXIT_CONFIGURATION, own_executable
from agent.cli.certificates import instance_identity
from agent.cli.container_settings import (
    SECRET_VARIABLES,
    ContainerSettings,
    VariableError,
    settings_from,
)
from agent.cli.context import Context, current
from agent.cli.registration import Registered, RegistrationError, Wanted, register_with
from agent.client.hub_api import HubApi, HubApiError
from agent.config.instances import HOME_MODE, Instance, create_instance, open_instance

DEFAULT_INSTANCE = "Tentacle"
RECORD_NAME = "container-registration.json"


class _Refused(click.ClickException):
    """The variables cannot work (or the hub refused them): a person must change them."""

    exit_code = EXIT_CONFIGURATION


class _Unreachable(click.ClickException):
    """The hub could not be reached: the next start may succeed."""

    exit_code = 1


@dataclass(frozen=True)
class Asked:
    """What a registration asked the hub for: a record that differs asks again."""

    ServerUrl: str
    Space: str
    Name: str
    CommunicationStyle: str
    WorkerPools: list[str]
    MachinePolicy: str | None
    PublicHost: str
    ListeningPort: int | None
    PollingHost: str
    PollingPort: int | None
    Thumbprint: str


@click.command("container-start")
@click.option(
    "--instance",
    "instance_name",
    default=DEFAULT_INSTANCE,
    show_default=True,
    metavar="NAME",
    help="the instance in the volume",
)
def container_start_command(instance_name: str) -> None:
    """The container's entrypoint: register once from Tentacle's container variables,
    then run the agent in its place.

    The variables: ServerUrl, ServerApiKey, ServerThumbprint, TargetWorkerPool,
    TargetName, MachinePolicy, Space; ServerCommsAddress or ServerPort (polling), else
    ListeningPort, PublicHostNameConfiguration and CustomPublicHostName (listening).
    A missing or malformed one exits 3, a hub that cannot be reached exits 1."""
    context = current()
    try:
        settings = settings_from(context.environ, socket.gethostname, socket.getfqdn)
    except VariableError as error:
        raise _Refused(str(error)) from None
    instance = _configured(_instance(context, instance_name), settings)
    identity = _identity(instance)
    record_path = instance.config.home / RECORD_NAME
    asked = _asked(settings, instance, context, identity)
    try:
        asyncio.run(_register_once(settings, instance, identity, asked, record_path))
    except RegistrationError as error:
        raise _Refused(f"{error} (check the container's variables)") from None
    except HubApiError as error:
        failure = _Unreachable if error.transient else _Refused
        raise failure(
            f"could not register with the hub at {settings.server_url}: {error}; nothing "
            "was registered: the next start tries again"
        ) from None
    _exec_agent(instance.name, context)


def _instance(context: Context, name: str) -> Instance:
    """The instance in the volume, created at the first start."""
    if context.index.find(name) is not None:
        return open_instance(context.index, name)
    instance = create_instance(context.index, context.config_home, name)
    click.echo(f"Created instance {name!r} in {instance.config.home}")
    return instance


def _configured(instance: Instance, settings: ContainerSettings) -> Instance:
    """A polling worker does not listen; a listening one does."""
    if instance.config.no_listen == settings.polling:
        return instance
    return instance.save(instance.config.with_settings(no_listen=settings.polling))


def _identity(instance: Instance) -> Identity:
    """The instance's certificate, made at the first start and kept in the volume."""
    path = instance.config.identity_path
    if not path.exists():
        path.parent.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
        save_identity(path, generate_identity())
    identity = instance_identity(instance.name, path)
    click.echo(f"Instance {instance.name!r}, thumbprint {identity.thumbprint}")
    return identity


def _asked(
    settings: ContainerSettings, instance: Instance, context: Context, identity: Identity
) -> Asked:
    port = settings.listening_port
    if not settings.polling and port is None:  # the port the agent listens on
        port = instance.effective(context.environ).port
    return Asked(
        ServerUrl=settings.server_url,
        Space=settings.space,
        Name=settings.name,
        CommunicationStyle=settings.style,
        WorkerPools=list(settings.pools),
        MachinePolicy=settings.policy,
        PublicHost=settings.public_host,
        ListeningPort=port,
        PollingHost=settings.hub_comms_host if settings.polling else "",
        PollingPort=settings.polling_port,
        Thumbprint=identity.thumbprint,
    )


def read_record(path: Path) -> dict[str, Any] | None:
    """The recorded registration, or None if there is none (or it is unreadable: then
    registering again, which updates the worker found by certificate, repairs it)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


async def _register_once(
    settings: ContainerSettings,
    instance: Instance,
    identity: Identity,
    asked: Asked,
    record_path: Path,
) -> None:
    record = read_record(record_path)
    async with HubApi(settings.server_url, settings.api_key, settings.server_thumbprint) as hub:
        same = record is not None and record.get("Asked") == asdict(asked)
        if same and record is not None and await _still_there(hub, settings, identity, record):
            return
        space = await _space_prefix(hub, settings.space)
        registered = await register_with(hub, instance.config, identity, _wanted(asked, space))
    instance.save(registered.plan.config)
    _write_record(record_path, asked, registered)
    worker = registered.worker
    verb = "Registered" if registered.created else "Updated the registration of"
    click.echo(
        f"{verb} {worker['Name']} as {worker['Id']} on {settings.server_url} "
        f"({registered.plan.description})"
    )


async def _still_there(
    hub: HubApi, settings: ContainerSettings, identity: Identity, record: dict[str, Any]
) -> bool:
    """Whether the recorded worker is still on the hub (asked by thumbprint). A hub
    that cannot be reached now is trusted to still have it: the agent starts anyway
    and the hub finds it when it comes back."""
    worker = record.get("Worker", {})
    try:
        space = await _space_prefix(hub, settings.space)
        found = await hub.get(f"{space}/workers/all", thumbprint=identity.thumbprint)
    except HubApiError as error:
        if not error.transient:
            raise
        click.echo(
            f"Registered as {worker.get('Id')} (recorded); the hub cannot be asked now "
            f"({error}): starting the agent anyway",
            err=True,
        )
        return True
    if found:
        click.echo(
            f"Registered already as {found[0]['Id']} on {settings.server_url} "
            "(recorded in the volume): not registering again"
        )
        return True
    click.echo(
        f"The worker recorded as {worker.get('Id')} is no longer on the hub: registering again"
    )
    return False


async def _space_prefix(hub: HubApi, wanted: str) -> str:
    """The API prefix of the space named (or with the id) ``wanted``: ``/api`` for the
    default space, else ``/api/Spaces-N``; RegistrationError if the hub has none."""
    spaces = await hub.get("/api/spaces/all")
    folded = wanted.casefold()
    for space in spaces:
        if folded in (str(space["Id"]).casefold(), str(space["Name"]).casefold()):
            return "/api" if space.get("IsDefault") else f"/api/{space['Id']}"
    known = ", ".join(repr(space["Name"]) for space in spaces)
    raise RegistrationError(f"Space: the hub has no space {wanted!r} (it has {known})")


def _wanted(asked: Asked, space: str) -> Wanted:
    return Wanted(
        style=asked.CommunicationStyle,
        name=asked.Name,
        pools=tuple(asked.WorkerPools),
        policy=asked.MachinePolicy,
        host=asked.PublicHost,
        port=asked.ListeningPort,
        hub_host=asked.PollingHost,
        polling_port=asked.PollingPort,
        # the name is this container's: a container that lost its volume (and so its
        # certificate) takes its old record over instead of adding a second worker
        force=True,
        space=space,
    )


def _write_record(path: Path, asked: Asked, registered: Registered) -> None:
    worker = {key: registered.worker.get(key) for key in ("Id", "Name", "SpaceId")}
    record = {
        "Asked": asdict(asked),
        "Worker": worker,
        "RegisteredOn": datetime.now(UTC).isoformat(),
    }
    write_atomic(path, json.dumps(record, indent=2).encode("utf-8"))


def agent_environment(environ: dict[str, str]) -> dict[str, str]:
    """The agent's environment: this one without the secrets that registered it."""
    return {key: value for key, value in environ.items() if key not in SECRET_VARIABLES}


def _exec_agent(name: str, context: Context) -> NoReturn:
    """Become ``tentacle agent --instance NAME``: same pid, so signals reach it."""
    executable = own_executable()
    click.echo(f"Starting the agent: {executable} agent --instance {name}")
    sys.stdout.flush()
    sys.stderr.flush()
    arguments = [executable, "agent", "--instance", name]
    os.execve(executable, arguments, agent_environment(dict(context.environ)))  # noqa: S606
