"""Polling servers: the hubs a polling agent dials, and its subscription id.

The subscription id (``poll://`` + 20 characters + ``/``, as Tentacle makes them)
is generated once per instance and kept across restarts and re-registrations,
so that a hub always knows the agent by the same address.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from agent.certs import parse_thumbprint
from agent.errors import CertificateError

SUBSCRIPTION_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
SUBSCRIPTION_LENGTH = 20
DEFAULT_POLLING_PORT = 10943
_SUBSCRIPTION = re.compile(rf"poll://[a-z2-9]{{{SUBSCRIPTION_LENGTH}}}/")
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True)
class PollingServer:
    """A hub to dial: ``https://HOST:PORT/`` and the thumbprint it must present."""

    address: str
    thumbprint: str

    @classmethod
    def at(cls, host: str, port: int, thumbprint: str) -> PollingServer:
        """Raises ValueError for a bad host or port, CertificateError for a bad thumbprint."""
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        if not _HOST.fullmatch(host):
            raise ValueError(f"expected a host name or IP address, got {host!r}")
        if not 1 <= port <= 65535:
            raise ValueError(f"expected a port number from 1 to 65535, got {port}")
        return cls(f"https://{host.lower()}:{port}/", parse_thumbprint(thumbprint))


def new_subscription_id() -> str:
    token = "".join(secrets.choice(SUBSCRIPTION_ALPHABET) for _ in range(SUBSCRIPTION_LENGTH))
    return f"poll://{token.lower()}/"


def coerce_subscription_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SUBSCRIPTION.fullmatch(value):
        raise ValueError(
            f"expected poll:// and {SUBSCRIPTION_LENGTH} characters and /, got {value!r}"
        )
    return value


def coerce_polling_servers(value: Any) -> tuple[PollingServer, ...]:
    """A list of ``{address, thumbprint}`` mappings (or PollingServers)."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of polling servers, got {value!r}")
    servers = []
    for item in value:
        if isinstance(item, PollingServer):
            servers.append(item)
            continue
        if not isinstance(item, dict) or set(item) != {"address", "thumbprint"}:
            raise ValueError(f"expected a polling server as address and thumbprint, got {item!r}")
        address = item["address"]
        if not isinstance(address, str) or not re.fullmatch(r"https://[^/\s]+:\d+/", address):
            raise ValueError(f"expected an address like https://HOST:10943/, got {address!r}")
        try:
            servers.append(PollingServer(address, parse_thumbprint(str(item["thumbprint"]))))
        except CertificateError as error:
            raise ValueError(str(error)) from None
    return tuple(servers)


def with_server(
    servers: tuple[PollingServer, ...], server: PollingServer
) -> tuple[PollingServer, ...]:
    """Add ``server``, replacing one at the same address (its thumbprint may change)."""
    kept = tuple(s for s in servers if s.address != server.address)
    return (*kept, server)
