"""An SSH worker's endpoint, judged as plain functions: its host, port and pinned
host key fingerprint (``Endpoint.Host``, ``Port``, ``Fingerprint`` of /api/workers,
and the discover route's ``host`` and ``port``)."""

from __future__ import annotations

import ipaddress
import re

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
SSH_PORT = 22
STYLE = "Ssh"


def host_of(value: object, field: str, what: str) -> tuple[str, str | None]:
    """(the host, normalised: an IP address in its canonical form; a problem or None).
    ``field`` and ``what`` name it in the problem ("host", "the agent's host name")."""
    if value is not None and not isinstance(value, str):
        return "", f"{field} must be a string: {what} or IP address"
    text = (value or "").strip().strip("[]")
    if not text:
        return "", f"{field} is required: {what} or IP address"
    try:
        return str(ipaddress.ip_address(text)), None
    except ValueError:
        if not _HOSTNAME.match(text):
            return text, f"{field}: expected a host name or an IP address, got {value!r}"
    return text, None


def port_problem(value: object, field: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return f"{field} must be a port number from 1 to 65535, not {value!r}"
    return None


def fingerprint_problem(value: object, field: str) -> str | None:
    if not isinstance(value, str) or not FINGERPRINT.match(value.strip()):
        return (
            f"{field} must be the SSH host key's SHA256 fingerprint: SHA256: followed by 43 "
            f"base64 characters, as `ssh-keygen -lf` or `tentacle hub ssh-fingerprint` "
            f"print it, not {str(value)[:80]!r}"
        )
    return None


def ssh_uri(host: str, port: int) -> str:
    """``ssh://host:port/`` (``[host]`` for an IPv6 address): an SSH worker's Uri."""
    shown = f"[{host}]" if ":" in host else host
    return f"ssh://{shown}:{port}/"
