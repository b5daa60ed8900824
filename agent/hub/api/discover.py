"""/api/workers/discover?host=H&port=P&type=TentaclePassive: who listens there, before
it is added (Octopus's discover answers with a WorkerResource-shaped body).

The hub dials without a pin (it does not know the thumbprint yet) through
``agent.client.discovery``: a bare TLS handshake tells the agent's certificate;
its capabilities (the facts) come only if the agent already trusts the hub.
See docs/decisions.md. Dialing an address the caller chose is a change-class
power (a hub could be made to probe a network), so it needs ConfigureServer.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from aiohttp import web

from agent.client import Discovered, discover
from agent.errors import ConnectionLost
from agent.hub.api.context import caller_of, context_of
from agent.hub.api.errors import ApiError, bad_request, forbidden, invalid
from agent.hub.api.routes import Routes
from agent.hub.health import facts_of

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
DEFAULT_PORT = 10933
DISCOVERABLE = "TentaclePassive"


def _host(value: str | None, errors: list[str]) -> str:
    text = (value or "").strip().strip("[]")
    if not text:
        errors.append("host is required: the agent's host name or IP address")
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        if not _HOSTNAME.match(text):
            errors.append(f"host: expected a host name or an IP address, got {value!r}")
    return text


def _port(value: str | None, errors: list[str]) -> int:
    if value is None or value == "":
        return DEFAULT_PORT  # Tentacle's listening port, as Octopus defaults it
    if not value.strip().isdecimal() or not 1 <= int(value) <= 65535:
        errors.append(f"port: expected a port number from 1 to 65535, got {value!r}")
        return 0
    return int(value)


def _check_type(value: str | None) -> None:
    kind = value or DISCOVERABLE
    if kind == DISCOVERABLE:
        return
    if kind == "TentacleActive":
        raise bad_request(
            "type: a polling agent (TentacleActive) cannot be discovered, it dials the hub: "
            "register it from the agent (tentacle register-worker --comms-style TentacleActive)"
        )
    raise bad_request(f"type: only {DISCOVERABLE} can be discovered, got {kind!r}")


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
    errors: list[str] = []
    host = _host(request.query.get("host"), errors)
    port = _port(request.query.get("port"), errors)
    if errors:
        raise invalid(errors)
    _check_type(request.query.get("type"))
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
