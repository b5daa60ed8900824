"""Polling servers: the hubs a polling agent dials, and its subscription id.

The subscription id (``poll://`` + 20 characters + ``/``, as Tentacle makes them)
is generated once per instance and kept across restarts and re-registrations,
so that a hub always knows the agent by the same address.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
        return cls(polling_address(host, port), parse_thumbprint(thumbprint))

    @property
    def host(self) -> str:
        """The host, lower-cased (an IPv6 address without its brackets)."""
        return (urlsplit(self.address).hostname or "").lower()


def polling_address(host: str, port: int) -> str:
    """``https://HOST:PORT/`` as entries hold it; ValueError for a bad host or port."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    if not _HOST.fullmatch(host):
        raise ValueError(f"expected a host name or IP address, got {host!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"expected a port number from 1 to 65535, got {port}")
    return f"https://{host.lower()}:{port}/"


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
    """Add ``server`` in place of the entry of the same hub node (see :func:`same_node`),
    so that each node has one entry whatever its port was; any further entry of that
    node (configs written before this rule could hold several) is dropped. Order is
    kept: a new node goes last."""
    kept: list[PollingServer] = []
    placed = False
    for existing in servers:
        if not same_node(existing, server):
            kept.append(existing)
        elif not placed:
            kept.append(server)
            placed = True
    return tuple(kept) if placed else (*kept, server)


def same_node(a: PollingServer, b: PollingServer) -> bool:
    """Whether two entries are one hub node: the same address (its certificate may have
    changed), or the same certificate on the same host (its polling port moved).

    Nodes of one hub share its certificate, so the host tells them apart: another
    host with that thumbprint is another node (``poll-server``), not a move.
    """
    same_address = a.address.lower() == b.address.lower()
    return same_address or (a.thumbprint == b.thumbprint and a.host == b.host)


def without_servers(
    servers: tuple[PollingServer, ...], matches: Callable[[PollingServer], bool]
) -> tuple[tuple[PollingServer, ...], tuple[PollingServer, ...]]:
    """Split ``servers`` into (kept, removed): removed are those that ``matches``."""
    return (
        tuple(s for s in servers if not matches(s)),
        tuple(s for s in servers if matches(s)),
    )
