"""Sensitive values: sealed at rest with the hub's key, never shown, and handed to the
executor only inside its encrypted variables file.

The hub's key is 32 random bytes in ``<home>/secrets.key`` (0600), made the first
time a hub serves from that home. A task's sensitive variable is stored as
``{"Name", "Value": "********", "IsSensitive": true, "SealedValue": "<token>"}``:
the token is AES-256-GCM of the value (a random 96-bit nonce per value, the
variable's name as associated data, so a token moved to another name does not
open), in base64. Every answer shows the arguments without ``SealedValue``
(:func:`shown_arguments`); a rerun copies the stored arguments, token included.
Anyone with the database alone learns nothing of the values; with the database
and the hub's home, everything: back them up apart.

For a step, the values are opened and written as Calamari's encrypted variables
file (``IV__`` + IV + AES-256-CBC, key PBKDF2-HMAC-SHA1 of a password, salt
"Octopuss", 1000 rounds: what ``agent.calamari.variables`` reads), with a new
random password for every step.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.calamari.masking import MASK
from agent.calamari.variables import ENCRYPTED_HEADER, encryption_key
from agent.errors import TentacleError

KEY_FILE = "secrets.key"
KEY_BYTES = 32
NONCE_BYTES = 12
TOKEN_PREFIX = "aesgcm1:"  # noqa: S105 - the format's tag, not a secret
SEALED = "SealedValue"


class SecretError(TentacleError):
    """A sealed value cannot be opened (another hub's key, or damaged)."""


@dataclass(frozen=True)
class DeployVariable:
    """One variable of a deployment, its value in the clear (in memory only)."""

    name: str
    value: str | None
    sensitive: bool = False


class HubKey:
    """The hub's key for values at rest."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SecretError(f"the hub's key must be {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def of_home(cls, home: Path) -> HubKey:
        """The key in ``home``, made now if there is none (0600, written whole: two
        processes making it at once end up with one key)."""
        path = home / KEY_FILE
        if not path.exists():
            temporary = home / f".{KEY_FILE}.{secrets.token_hex(6)}"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_bytes(KEY_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
            with contextlib.suppress(FileExistsError):  # another process's won
                os.link(temporary, path)
            temporary.unlink()
        data = path.read_bytes()
        if len(data) != KEY_BYTES:
            raise SecretError(
                f"{path} holds {len(data)} bytes, not a {KEY_BYTES}-byte key: restore it from "
                "the backup of this hub's home (sensitive values sealed with it cannot be "
                "opened without it)"
            )
        return cls(data)

    def seal(self, name: str, value: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), name.lower().encode())
        return TOKEN_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, name: str, token: str) -> str:
        if not token.startswith(TOKEN_PREFIX):
            raise SecretError(f"the sensitive value of {name} is not sealed by a hub")
        try:
            data = base64.b64decode(token[len(TOKEN_PREFIX) :], validate=True)
            nonce, sealed = data[:NONCE_BYTES], data[NONCE_BYTES:]
            plain = self._aead.decrypt(nonce, sealed, name.lower().encode())
        except (binascii.Error, InvalidTag, ValueError):
            raise SecretError(
                f"the sensitive value of {name} cannot be opened with this hub's key "
                f"({KEY_FILE} is not the one it was sealed with, or the value is damaged)"
            ) from None
        return plain.decode()


def seal_variables(variables: Sequence[dict[str, Any]], key: HubKey) -> list[dict[str, Any]]:
    """The variables as stored: each sensitive value replaced by ``********`` and its
    sealed token (a value already sealed, from a rerun, stays as it is)."""
    stored = []
    for variable in variables:
        entry = dict(variable)
        if entry.get("IsSensitive") and SEALED not in entry:
            value = entry.get("Value")
            entry[SEALED] = key.seal(str(entry["Name"]), "" if value is None else str(value))
            entry["Value"] = MASK
        stored.append(entry)
    return stored


def opened_variables(variables: Sequence[dict[str, Any]], key: HubKey) -> list[DeployVariable]:
    """The stored variables with their values in the clear; SecretError if one cannot
    be opened."""
    opened = []
    for entry in variables:
        name, sensitive = str(entry["Name"]), bool(entry.get("IsSensitive"))
        value = entry.get("Value")
        if sensitive and SEALED in entry:
            value = key.open(name, str(entry[SEALED]))
        opened.append(DeployVariable(name, None if value is None else str(value), sensitive))
    return opened


def shown_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """A task's arguments as every answer shows them: sensitive values masked and no
    sealed token (nor any value of a variable marked sensitive)."""
    variables = arguments.get("Variables")
    if not isinstance(variables, list):
        return arguments
    shown = copy.deepcopy(arguments)
    for entry in shown["Variables"]:
        if isinstance(entry, dict) and (SEALED in entry or entry.get("IsSensitive")):
            entry.pop(SEALED, None)
            entry["Value"] = MASK
    return shown


def one_time_password() -> str:
    """A step's password for its variables file (used once, never stored)."""
    return secrets.token_urlsafe(32)


def encrypted_variables_file(variables: Sequence[DeployVariable], password: str) -> bytes:
    """The executor's encrypted variables file for ``variables`` (Calamari's format)."""
    document = [{"name": v.name, "value": v.value, "sensitive": v.sensitive} for v in variables]
    plain = json.dumps(document).encode()
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    iv = secrets.token_bytes(16)
    encryptor = Cipher(algorithms.AES(encryption_key(password)), modes.CBC(iv)).encryptor()
    return ENCRYPTED_HEADER + iv + encryptor.update(padded) + encryptor.finalize()
