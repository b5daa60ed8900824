"""/api/workers/discover?host=H&port=P&type=TentaclePassive: who listens there, before
it is added (Octopus's discover answers with a WorkerResource-shaped body).
``type=Ssh`` reads an SSH server's host key fingerprint (a key exchange, no login),
for the operator to confirm before pinning it (port 22 unless given).

The hub dials without a pin (it does not know the thumbprint yet) through
``agent.client.discovery``: a bare TLS handshake tells the agent's certificate;
its capabilities (the facts) come only if the agent already trusts the hub.
See docs/decisions.md. Dialing an address the caller chose is a change-class
power (a hub could be made to probe a network), so it needs ConfigureServer.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.client import Discovered, discover, host_fingerprint
from agent.errors import ConnectionLost
from agent.hub.api.context import caller_of, context_of
from agent.hub.api.errors import ApiError, bad_request, forbidden, invalid
from agent.hub.api.routes import Routes
from agent.hub.health import facts_of
from agent.hub.rules.ssh import SSH_PORT, host_of, ssh_uri

DEFAULT_PORT = 10933
DISCOVERABLE = "TentaclePassive"
SSH = "Ssh"
SSH_TIMEOUT = 10.0  # seconds to read an SSH server's host key


def _host(value: str | None, errors: list[str], what: str) -> str:
    host, problem = host_of(value, "host", what)
    if problem is not None:
        errors.append(problem)
    return host


def _port(value: str | None, errors: list[str], default: int) -> int:
    if value is None or value == "":
        return default  # Tentacle's listening port or SSH's, as Octopus defaults them
    if not value.strip().isdecimal() or not 1 <= int(value) <= 65535:
        errors.append(f"port: expected a port number from 1 to 65535, got {value!r}")
        return 0
    return int(value)


def _check_type(value: str | None) -> str:
    kind = value or DISCOVERABLE
    if kind in (DISCOVERABLE, SSH):
        return kind
    if kind == "TentacleActive":
        raise bad_request(
            "type: a polling agent (TentacleActive) cannot be discovered, it dials the hub: "
            "register it from the agent (tentacle register-worker --comms-style TentacleActive)"
        )
    raise bad_request(f"type: only {DISCOVERABLE} or {SSH} can be discovered, got {kind!r}")


def ssh_resource(host: str, port: int, fingerprint: str) -> dict[str, Any]:
    """A WorkerResource-shaped body for an SSH server not added yet: its host key's
    fingerprint, for a person to confirm before pinning it."""
    uri = ssh_uri(host, port)
    address = uri[len("ssh://") : -1]
    return {
        "Id": None,
        "Name": host,
        "Thumbprint": None,
        "Uri": uri,
        "IsDisabled": False,
        "HealthStatus": "Unknown",
        "Endpoint": {
            "CommunicationStyle": SSH,
            "Host": host,
            "Port": port,
            "Fingerprint": fingerprint,
            "AccountId": None,
            "Uri": uri,
            "Thumbprint": None,
            "Id": None,
        },
        "Fingerprint": fingerprint,
        "DiscoveryMessage": (
            f"the SSH server at {address} presented the host key {fingerprint}: "
            "compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on that "
            "machine before pinning it"
        ),
    }


async def _discover_ssh(host: str, port: int) -> web.Response:
    try:
        fingerprint = await host_fingerprint(host, port, timeout=SSH_TIMEOUT)
    except ConnectionLost as error:
        raise bad_request(f"cannot read the SSH host key of {host}:{port}: {error}") from None
    return web.json_response(ssh_resource(host, port, fingerprint))


def discovered_resource(found: Discovered, host: str) -> dict[str, Any]:
    """A WorkerResource-shaped body (no Id: not added yet) with the facts when known."""
    facts = facts_of(found.capabilities) if found.capabilities is not None else {}
    return {
        "Id": None,
        "Name": host,
        "Thumbprint": found.thumbprint,
        "Uri": found.url,
        "IsDisabled": False,
        "HealthStatus": "Unknown",
        "OperatingSystem": facts.get("OperatingSystem", "Unknown"),
        "Architecture": facts.get("Architecture", "Unknown"),
        "ShellName": facts.get("ShellName", "Unknown"),
        "AgentVersion": facts.get("AgentVersion"),
        "FreeDiskSpaceMegabytes": facts.get("FreeDiskSpaceMegabytes"),
        "Endpoint": {
            "CommunicationStyle": DISCOVERABLE,
            "Uri": found.url,
            "Thumbprint": found.thumbprint,
            "Id": None,
        },
        # ours: what a person needs to decide, and to finish the trust if it is missing
        "CertificateSha256": found.sha256,
        "TrustsHub": found.trusts_us,
        "DiscoveryMessage": found.refusal,
        "Facts": facts or None,
    }


async def discover_worker(request: web.Request) -> web.Response:
    if not caller_of(request).permission.allows_changes():
        raise forbidden(
            "discovering dials an address of the caller's choosing: it needs a ConfigureServer key"
        )
    kind = _check_type(request.query.get("type"))
    errors: list[str] = []
    if kind == SSH:
        host = _host(request.query.get("host"), errors, "the SSH server's host name")
        port = _port(request.query.get("port"), errors, SSH_PORT)
    else:
        host = _host(request.query.get("host"), errors, "the agent's host name")
        port = _port(request.query.get("port"), errors, DEFAULT_PORT)
    if errors:
        raise invalid(errors)
    if kind == SSH:
        return await _discover_ssh(host, port)
    context = context_of(request)
    if context.channel is None:
        raise ApiError(503, "this hub node cannot dial agents (it has no channel settings)")
    try:
        found = await discover(host, port, context.channel)
    except ConnectionLost as error:
        raise bad_request(f"cannot discover an agent at {host}:{port}: {error}") from None
    resource = discovered_resource(found, host)
    if found.refused_us:
        resource["DiscoveryMessage"] = (
            f"the agent refused the hub's certificate {context.thumbprint}: it does not trust "
            "the hub yet, so its thumbprint is known but not its facts. Register it from the "
            "agent (tentacle register-worker exchanges the certificates), or make it trust the "
            "hub's certificate (CertificatePem in GET /api) with tentacle configure "
            "--trust-certificate"
        )
    elif not found.trusts_us:
        resource["DiscoveryMessage"] = (
            f"the agent presented its certificate, but its facts could not be read: {found.refusal}"
        )
    return web.json_response(resource)


def add_routes(routes: Routes) -> None:
    routes.get("/workers/discover", discover_worker)
