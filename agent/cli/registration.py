"""register-worker, deregister-worker, poll-server: a worker and a hub, introduced.

As Tentacle does it: the agent calls the hub's API with an API key, the hub
stores the agent's certificate, and the agent trusts the hub's; a listening
worker is dialled by the hub, a polling one dials the hub's polling port.
The same agent registering again updates its record (found by certificate)
and never makes a duplicate; a name taken by another machine is refused
unless ``--force``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from agent.certs import Identity, load_certificate, sha1_thumbprint, sha256_thumbprint
from agent.cli.certificates import instance_identity
from agent.cli.context import current
from agent.cli.options import instance_option
from agent.cli.polling import instead_of, warn_if_idle
from agent.client.hub_api import HubApi, HubApiError
from agent.config.instances import Instance
from agent.config.model import InstanceConfig
from agent.config.polling import (
    DEFAULT_POLLING_PORT,
    PollingServer,
    new_subscription_id,
    with_server,
    without_servers,
)
from agent.config.trust import add_trusted_certificate, remove_trust
from agent.errors import TentacleError
from agent.hub.rules.names import control_character_problem
from agent.hub.rules.uris import BadUri, uri_host

F = TypeVar("F", bound=Callable[..., Any])
STYLES = ("TentaclePassive", "TentacleActive")


class RegistrationError(TentacleError):
    pass


def _api_key(_context: click.Context, _parameter: click.Parameter, value: str | None) -> str | None:
    """The key without the whitespace around it (a key file with Windows line ends keeps
    a \r in ``$(cat key.txt)``); anything else than letters, digits and "-" inside it
    is refused here, without the key in the message, rather than by the HTTP stack."""
    if value is None:
        return None
    key = value.strip()
    if not key or not all(c.isascii() and (c.isalnum() or c == "-") for c in key):
        raise click.BadParameter(
            "an API key is API- followed by letters and digits; this one is empty or "
            "holds a space or a control character"
        )
    return key


def hub_options(function: F) -> F:
    """``--server``, ``--apikey`` and ``--server-thumbprint``, also from the environment."""
    for option in reversed(
        [
            click.option(
                "--server",
                required=True,
                envvar="TENTACLE_SERVER_URL",
                metavar="URL",
                help="the hub, e.g. https://hub:8065/ [env TENTACLE_SERVER_URL]",
            ),
            click.option(
                "--apikey",
                "api_key",
                required=True,
                envvar="TENTACLE_API_KEY",
                metavar="KEY",
                callback=_api_key,
                help="an API key of the hub [env TENTACLE_API_KEY]",
            ),
            click.option(
                "--server-thumbprint",
                envvar="TENTACLE_SERVER_THUMBPRINT",
                metavar="T",
                help="pin the hub's HTTPS certificate (tentacle hub show-thumbprint); "
                "without it the system's CAs must vouch for it "
                "[env TENTACLE_SERVER_THUMBPRINT]",
            ),
        ]
    ):
        function = option(function)
    return function


@dataclass(frozen=True)
class Existing:
    """What the hub already has of this agent (by certificate) and of the name."""

    same_certificate: dict[str, Any] | None
    same_name: dict[str, Any] | None


def registration_target(existing: Existing, name: str, force: bool) -> str | None:
    """The worker id to update, or None to create one; RegistrationError if the name
    belongs to another machine and ``force`` was not given."""
    mine, named = existing.same_certificate, existing.same_name
    if mine is not None:
        if named is not None and named["Id"] != mine["Id"] and not force:
            raise RegistrationError(
                f"a worker named {named['Name']!r} exists already ({named['Id']}, another "
                "machine): choose another --name, or --force to take the name over"
            )
        return str(mine["Id"])
    if named is not None:
        if not force:
            raise RegistrationError(
                f"a worker named {named['Name']!r} exists already ({named['Id']}, thumbprint "
                f"{named['Thumbprint']}): choose another --name, or --force to replace it"
            )
        return str(named["Id"])
    return None


def displaced(existing: Existing, force: bool) -> str | None:
    """The id of another machine's worker whose name ``--force`` takes over for this
    agent's own record (deleted first: two workers cannot share a name), or None."""
    mine, named = existing.same_certificate, existing.same_name
    if force and mine is not None and named is not None and named["Id"] != mine["Id"]:
        return str(named["Id"])
    return None


async def _find(hub: HubApi, identity: Identity, name: str, space: str = "/api") -> Existing:
    by_certificate = await hub.get(f"{space}/workers/all", thumbprint=identity.thumbprint)
    by_name = await hub.get(f"{space}/workers/all", name=name)
    return Existing(by_certificate[0] if by_certificate else None, by_name[0] if by_name else None)


def _named(resources: list[dict[str, Any]], wanted: str) -> list[dict[str, Any]]:
    """The resources whose Id is ``wanted``, or whose Name is in any case (the hub's
    names are unique whatever their case, as Octopus's are)."""
    folded = wanted.casefold()
    return [r for r in resources if wanted == r["Id"] or folded == str(r["Name"]).casefold()]


async def _pool_ids(hub: HubApi, wanted: tuple[str, ...], space: str = "/api") -> list[str]:
    pools = await hub.get(f"{space}/workerpools/all")
    found = []
    for text in wanted:
        match = _named(pools, text)
        if not match:
            known = ", ".join(repr(p["Name"]) for p in pools)
            raise RegistrationError(f"the hub has no worker pool {text!r} (it has {known})")
        found.append(match[0]["Id"])
    return found


async def _policy_id(hub: HubApi, wanted: str | None, space: str = "/api") -> str | None:
    if wanted is None:
        return None
    policies = await hub.get(f"{space}/machinepolicies/all")
    match = _named(policies, wanted)
    if not match:
        known = ", ".join(repr(p["Name"]) for p in policies)
        raise RegistrationError(f"the hub has no machine policy {wanted!r} (it has {known})")
    return str(match[0]["Id"])


def _worker_name(name: str) -> str:
    """``--name`` as given; RegistrationError (one line, before the hub is contacted)
    if it is empty or only blanks."""
    if not name.strip():
        raise RegistrationError(
            f"--name {name!r}: expected the worker's name on the hub (leave --name out "
            "for this machine's name)"
        )
    if problem := control_character_problem(name):
        raise RegistrationError(f"--name must not contain {problem}")
    return name


def _public_host(given: str | None) -> str:
    """The host the hub dials, as a URI writes it (``--publicHostName``, else this
    machine's FQDN); RegistrationError, one line before the hub is contacted, if it is
    not a host name or address (a port goes in --tentacle-comms-port)."""
    host = given.strip() if given is not None else socket.getfqdn()
    try:
        return uri_host(host)
    except BadUri as error:
        source = "--publicHostName" if given is not None else "this machine's name"
        raise RegistrationError(
            f"{source}: {error}; expected a DNS name, an IPv4 or an IPv6 address"
            " (the port goes in --tentacle-comms-port)"
        ) from None


def _hub_host(server: str) -> str:
    host = urlsplit(server).hostname
    if not host:
        raise click.BadParameter(
            f"expected a URL like https://HOST:8065/, got {server!r}", param_hint="--server"
        )
    return host


@dataclass(frozen=True)
class Plan:
    """What registering changes: the worker body for the hub, and the instance's config."""

    body: dict[str, Any]
    config: InstanceConfig
    description: str


def plan(
    config: InstanceConfig,
    identity: Identity,
    hub_pem: str,
    *,
    style: str,
    name: str,
    pools: list[str],
    policy: str | None,
    host: str,
    port: int | None,
    hub_host: str,
    polling_port: int,
) -> Plan:
    """The registration's two halves, decided before anything is sent or saved."""
    hub_certificate = load_certificate(hub_pem.encode(), "the hub's certificate")
    config = config.with_trusted(add_trusted_certificate(config.trusted, hub_certificate))
    hub_thumbprint = hub_certificate_thumbprint(hub_pem)
    if style == "TentacleActive":
        subscription = config.subscription_id or new_subscription_id()
        server = PollingServer.at(hub_host, polling_port, hub_thumbprint)
        moved = instead_of(config.polling_servers, server)
        # in place of this node's entry: the same hub on the same host at another
        # port is this node moved, not a new one (see with_server)
        config = config.with_settings(
            subscription_id=subscription,
            polling_servers=with_server(config.polling_servers, server),
        )
        uri, description = subscription, f"polling {server.address}{moved} as {subscription}"
    else:
        uri = f"https://{host}:{port or config.port}/"
        description = f"listening on {uri}"
        # the hub dials a listening worker: polling it too would only hold idle connections
        kept, dropped = without_servers(config.polling_servers, _of_hub(hub_thumbprint))
        if dropped:
            config = config.with_settings(polling_servers=kept)
            description += "; no longer polling " + ", ".join(s.address for s in dropped)
    body: dict[str, Any] = {
        "Name": name,
        "Thumbprint": identity.thumbprint,
        "Certificate": identity.certificate_pem.decode("ascii"),
        "Endpoint": {"CommunicationStyle": style, "Uri": uri},
        "WorkerPoolIds": pools,
    }
    if policy is not None:
        body["MachinePolicyId"] = policy
    return Plan(body, config, description)


def _of_hub(*thumbprints: str) -> Callable[[PollingServer], bool]:
    """Whether a polling entry pins one of ``thumbprints`` (the hub's SHA-1, SHA-256)."""
    return lambda server: server.thumbprint in thumbprints


def hub_certificate_thumbprint(pem: str) -> str:
    return sha1_thumbprint(load_certificate(pem.encode(), "the hub's certificate"))


@dataclass(frozen=True)
class Wanted:
    """What a registration asks for, checked before the hub is contacted: the hub's
    names (pools, policy) are resolved by :func:`register_with`. ``polling_port`` None
    takes the one the hub reports; ``space`` is a path prefix (``/api`` or
    ``/api/Spaces-N``) for the space-scoped collections."""

    style: str
    name: str
    pools: tuple[str, ...]
    policy: str | None
    host: str
    port: int | None
    hub_host: str
    polling_port: int | None
    force: bool
    space: str = "/api"


@dataclass(frozen=True)
class Registered:
    """The hub's answer (the worker resource), the plan applied, whether the worker
    is new, and the id of another machine's worker deleted for its name, if any."""

    worker: dict[str, Any]
    plan: Plan
    created: bool
    displaced: str | None


async def register_with(
    hub: HubApi, config: InstanceConfig, identity: Identity, wanted: Wanted
) -> Registered:
    """Create or update this agent's worker on ``hub`` (found by certificate, so that
    registering again never duplicates it). Nothing local is saved: the caller saves
    ``plan.config`` once the hub has answered. HubApiError or RegistrationError."""
    root = await hub.root()
    reported = root.get("PollingPort")
    hub_pem = (await hub.get("/api/certificates/certificate-global"))["CertificatePem"]
    chosen = plan(
        config,
        identity,
        hub_pem,
        style=wanted.style,
        name=wanted.name,
        pools=await _pool_ids(hub, wanted.pools, wanted.space),
        policy=await _policy_id(hub, wanted.policy, wanted.space),
        host=wanted.host,
        port=wanted.port,
        hub_host=wanted.hub_host,
        polling_port=wanted.polling_port
        or (reported if isinstance(reported, int) else DEFAULT_POLLING_PORT),
    )
    existing = await _find(hub, identity, wanted.name, wanted.space)
    target = registration_target(existing, wanted.name, wanted.force)
    if (other := displaced(existing, wanted.force)) is not None:
        await hub.request("DELETE", f"{wanted.space}/workers/{other}")
    if target is None:
        worker = await hub.request("POST", f"{wanted.space}/workers", chosen.body)
        return Registered(worker, chosen, True, other)
    current_worker = await hub.get(f"{wanted.space}/workers/{target}")
    body = {**current_worker, **chosen.body}
    worker = await hub.request("PUT", f"{wanted.space}/workers/{target}", body)
    return Registered(worker, chosen, False, other)


@click.command("register-worker")
@instance_option
@hub_options
@click.option(
    "--workerpool",
    "pools",
    multiple=True,
    required=True,
    metavar="POOL",
    help="a worker pool (name or id) to join; repeat for several",
)
@click.option(
    "--comms-style",
    type=click.Choice(STYLES),
    default="TentaclePassive",
    show_default=True,
    help="TentaclePassive: the hub dials this agent; TentacleActive: this agent polls the hub",
)
@click.option("--name", help="the worker's name on the hub (default: this machine's name)")
@click.option("--policy", help="a machine policy (name or id; default: the hub's default)")
@click.option(
    "--publicHostName",
    "public_host",
    metavar="HOST",
    help="how the hub reaches a listening agent (default: this machine's FQDN)",
)
@click.option(
    "--tentacle-comms-port",
    type=click.IntRange(1, 65535),
    help="the port the hub dials (default: the instance's listening port)",
)
@click.option(
    "--server-comms-port",
    type=click.IntRange(1, 65535),
    help="the hub's polling port (TentacleActive; default: the one the hub reports, "
    f"else {DEFAULT_POLLING_PORT})",
)
@click.option(
    "--force",
    is_flag=True,
    help="take the name over from another machine; register as listening even if "
    "the instance does not listen (NoListen true)",
)
def register_worker_command(
    instance_name: str | None,
    server: str,
    api_key: str,
    server_thumbprint: str | None,
    pools: tuple[str, ...],
    comms_style: str,
    name: str | None,
    policy: str | None,
    public_host: str | None,
    tentacle_comms_port: int | None,
    server_comms_port: int | None,
    force: bool,
) -> None:
    """Register this instance with a hub as a worker, in one or more worker pools."""
    worker_name = socket.gethostname() if name is None else _worker_name(name)
    hub_host = _hub_host(server)
    host = _public_host(public_host) if comms_style == "TentaclePassive" else ""
    instance = current().open(instance_name)
    if comms_style == "TentaclePassive" and instance.config.no_listen and not force:
        raise RegistrationError(
            f"instance {instance.name} does not listen (NoListen is true), so the hub could "
            "never dial it: listen with `tentacle configure --instance "
            f"{instance.name} --noListen false` first, or register it as polling "
            "(--comms-style TentacleActive), or --force"
        )
    identity = instance_identity(instance.name, instance.config.identity_path)
    wanted = Wanted(
        style=comms_style,
        name=worker_name,
        pools=pools,
        policy=policy,
        host=host,
        port=tentacle_comms_port,
        hub_host=hub_host,
        polling_port=server_comms_port,
        force=force,
    )

    async def register() -> Registered:
        async with HubApi(server, api_key, server_thumbprint) as hub:
            return await register_with(hub, instance.config, identity, wanted)

    registered = asyncio.run(register())
    if registered.displaced is not None:
        click.echo(
            f"Deleted {registered.displaced}, another machine's worker, whose name --force takes"
        )
    worker, chosen, created = registered.worker, registered.plan, registered.created
    instance.save(chosen.config)
    verb = "Registered" if created else "Updated the registration of"
    click.echo(f"{verb} {worker['Name']} as {worker['Id']} on {server} ({chosen.description})")
    if comms_style == "TentacleActive":
        click.echo("Restart the agent for it to start polling the hub")


@click.command("deregister-worker")
@instance_option
@hub_options
def deregister_worker_command(
    instance_name: str | None, server: str, api_key: str, server_thumbprint: str | None
) -> None:
    """Remove this instance's worker from a hub, and stop trusting and polling that hub."""
    instance = current().open(instance_name)
    identity = instance_identity(instance.name, instance.config.identity_path)

    async def deregister() -> tuple[list[dict[str, Any]], str]:
        async with HubApi(server, api_key, server_thumbprint) as hub:
            workers = await hub.get("/api/workers/all", thumbprint=identity.thumbprint)
            for worker in workers:
                await hub.request("DELETE", f"/api/workers/{worker['Id']}")
            certificate = await hub.get("/api/certificates/certificate-global")
            return workers, str(certificate["CertificatePem"])

    workers, hub_pem = asyncio.run(deregister())
    forgotten = _forget_hub(instance, hub_pem)
    if not workers:
        click.echo(f"This instance ({identity.thumbprint}) was not registered on {server}")
    for worker in workers:
        click.echo(f"Deregistered {worker['Name']} ({worker['Id']}) from {server}")
    click.echo(forgotten)
    from agent.daemon import running_agent  # heavy: only here

    if (pid := running_agent(instance.config.home)) is not None:
        # the agent reads its trust and polling servers once, when it starts
        click.echo(
            f"The agent of this instance (pid {pid}) still trusts and polls the hub as it "
            "did when it started: stop or restart it"
        )


def _forget_hub(instance: Instance, hub_pem: str) -> str:
    """Drop the hub's polling entries (every node's) and its trust from the instance's
    config; returns a line saying what was dropped."""
    certificate = load_certificate(hub_pem.encode(), "the hub's certificate")
    sha1, sha256 = sha1_thumbprint(certificate), sha256_thumbprint(certificate)
    config = instance.config
    trusted, _ = remove_trust(config.trusted, sha1)
    trusted, _ = remove_trust(trusted, sha256)  # a bare trust given as SHA-256
    servers, dropped = without_servers(config.polling_servers, _of_hub(sha1, sha256))
    was_trusted = len(trusted) != len(config.trusted)
    config = config.with_trusted(trusted).with_settings(polling_servers=servers)
    instance.save(config)
    warn_if_idle(config)
    done = [f"polls {', '.join(s.address for s in dropped)}"] if dropped else []
    if was_trusted:
        done.append(f"trusts the hub's certificate {sha1}")
    if not done:
        return f"This instance neither polled nor trusted the hub ({sha1})"
    return f"This instance no longer {' and no longer '.join(done)}"


@click.command("poll-server")
@instance_option
@hub_options
@click.option(
    "--server-comms-port",
    type=click.IntRange(1, 65535),
    help=f"that hub node's polling port (default: the one it reports, else {DEFAULT_POLLING_PORT})",
)
def poll_server_command(
    instance_name: str | None,
    server: str,
    api_key: str,
    server_thumbprint: str | None,
    server_comms_port: int | None,
) -> None:
    """Poll another hub node too (the worker must be registered already)."""
    instance = current().open(instance_name)
    identity = instance_identity(instance.name, instance.config.identity_path)

    async def certificate() -> tuple[str, int]:
        async with HubApi(server, api_key, server_thumbprint) as hub:
            reported = (await hub.root()).get("PollingPort")
            if not await hub.get("/api/workers/all", thumbprint=identity.thumbprint):
                raise RegistrationError(
                    f"this instance ({identity.thumbprint}) is not registered on {server}: "
                    "run register-worker --comms-style TentacleActive first"
                )
            pem = (await hub.get("/api/certificates/certificate-global"))["CertificatePem"]
            port = server_comms_port or (
                reported if isinstance(reported, int) else DEFAULT_POLLING_PORT
            )
            return str(pem), port

    pem, polling_port = asyncio.run(certificate())
    config = instance.config
    if config.subscription_id is None:
        raise RegistrationError(
            "this instance has no subscription id: it was never registered "
            "as a polling worker (register-worker --comms-style TentacleActive)"
        )
    node = PollingServer.at(_hub_host(server), polling_port, hub_certificate_thumbprint(pem))
    hub_certificate = load_certificate(pem.encode(), "the hub's certificate")
    config = config.with_trusted(add_trusted_certificate(config.trusted, hub_certificate))
    instance.save(config.with_settings(polling_servers=with_server(config.polling_servers, node)))
    click.echo(
        f"Polling {node.address}{instead_of(config.polling_servers, node)} "
        f"(thumbprint {node.thumbprint}) as {config.subscription_id}; "
        "restart the agent for it to take effect"
    )


__all__ = [
    "HubApiError",
    "deregister_worker_command",
    "poll_server_command",
    "register_worker_command",
]
