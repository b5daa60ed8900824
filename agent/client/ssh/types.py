"""What names an SSH worker: its address and pinned host key, and the login's secrets.

Pure data and errors, no I/O: the hub stores these and hands them to
``SshConnections.worker``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.errors import TrustError

FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


@dataclass(frozen=True)
class SshTarget:
    """A machine reached over SSH. ``fingerprint`` is its host key's SHA-256 fingerprint
    as ``ssh-keygen -lf`` prints it (``SHA256:`` + 43 base64 characters, no padding):
    every connection checks it before authenticating."""

    host: str
    port: int
    fingerprint: str

    @property
    def address(self) -> str:
        """``host:port`` (``[host]:port`` for an IPv6 address), as messages name it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class SshCredentials:
    """The login: a private key (OpenSSH or PEM text, encrypted with ``passphrase`` or
    not) or a password, or both (the key is tried first). Its repr names the user only."""

    username: str
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        shown = [f"username={self.username!r}"]
        for name in ("private_key", "passphrase", "password"):
            if getattr(self, name) is not None:
                shown.append(f"{name}='***'")
        return f"SshCredentials({', '.join(shown)})"


class HostKeyMismatch(TrustError):
    """The server presented a host key other than the pinned one: refused before any
    authentication was attempted. ``expected`` and ``presented`` are fingerprints."""

    def __init__(self, address: str, expected: str, presented: str) -> None:
        super().__init__(
            f"the SSH host key of {address} is {presented}, not the pinned {expected}: "
            "refused before authenticating (if the machine's key was changed on purpose, "
            "update the worker's fingerprint after checking it with `tentacle hub "
            "ssh-fingerprint`)"
        )
        self.address = address
        self.expected = expected
        self.presented = presented


class SshLoginFailed(TrustError):
    """The server refused the login, or the private key could not be read (a wrong
    passphrase, say): the message says which."""


def check_fingerprint(fingerprint: str) -> str:
    """``fingerprint`` if it has the form ``SHA256:`` + 43 base64 characters, else
    ValueError naming it and the expected form."""
    if not FINGERPRINT.fullmatch(fingerprint):
        raise ValueError(
            f"{fingerprint!r} is not an SSH host key fingerprint; expected SHA256: followed "
            "by 43 base64 characters, as `ssh-keygen -lf` prints it"
        )
    return fingerprint
