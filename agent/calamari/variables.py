"""A deployment's variables: from a variables file, the environment and earlier steps.

Names are case-insensitive, values are Octostache templates evaluated when
read (:meth:`VariableSet.get`), and the sensitive ones are known so that
output can be masked.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.calamari.aes import PaddingError, decrypt_cbc
from agent.calamari.templates import evaluate

ENCRYPTED_HEADER = b"IV__"
KEY_SALT = b"Octopuss"
KEY_ITERATIONS = 1000
BAD_KEY_MESSAGE = "wrong password, or the file is damaged"


class VariablesError(Exception):
    """A variables file could not be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Variable:
    name: str
    value: str | None
    sensitive: bool = False


class VariableSet:
    def __init__(self, variables: Iterable[Variable] = ()) -> None:
        self._variables: dict[str, Variable] = {}
        for variable in variables:
            self.set(variable.name, variable.value, sensitive=variable.sensitive)

    def set(self, name: str, value: str | None, *, sensitive: bool = False) -> None:
        """Define (or replace) ``name``."""
        self._variables[name.lower()] = Variable(name, value, sensitive)

    def raw(self, name: str) -> str | None:
        variable = self._variables.get(name.lower())
        return None if variable is None else variable.value

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of ``name`` with its templates evaluated; ``default`` if undefined."""
        raw = self.raw(name)
        if raw is None:
            return default
        return evaluate(raw, self.as_mapping())

    def flag(self, name: str, default: bool = False) -> bool:
        """``name`` read as a boolean ("true"/"False"…); ``default`` when unset or not one."""
        value = (self.get(name) or "").strip().lower()
        return {"true": True, "false": False}.get(value, default)

    def evaluated(self) -> dict[str, str | None]:
        """Name -> value with templates evaluated (None stays None)."""
        return {variable.name: self.get(variable.name) for variable in self._variables.values()}

    def as_mapping(self) -> dict[str, str | None]:
        """Name -> raw value, for :func:`agent.calamari.templates.evaluate`."""
        return {variable.name: variable.value for variable in self._variables.values()}

    def sensitive_values(self) -> builtins.set[str]:
        return {v.value for v in self._variables.values() if v.sensitive and v.value}

    def __iter__(self) -> Iterator[Variable]:
        return iter(self._variables.values())

    def __len__(self) -> int:
        return len(self._variables)

    def with_environment(self, environ: Mapping[str, str]) -> VariableSet:
        """Also every environment variable, as ``env:NAME``."""
        for name, value in environ.items():
            self.set(f"env:{name}", value)
        return self

    def set_output(self, name: str, value: str | None, *, sensitive: bool = False) -> list[str]:
        """Record an output variable of this step, as Calamari does: as ``name``, and as
        ``Octopus.Action[ACTION].Output.name`` (and ``...Output[MACHINE].name``) when the
        action (and machine) are known. Returns the names set."""
        names = [name]
        action = self.get("Octopus.Action.Name")
        if action:
            names.append(f"Octopus.Action[{action}].Output.{name}")
            machine = self.get("Octopus.Machine.Name")
            if machine:
                names.append(f"Octopus.Action[{action}].Output[{machine}].{name}")
        for each in names:
            self.set(each, value, sensitive=sensitive)
        return names


def load_variables(path: Path, password: str | None = None) -> VariableSet:
    """Read a variables file: a JSON list of ``{"name", "value", "sensitive"}`` objects
    (Calamari's ``{"k", "v", "s"}`` too), or a JSON object of name -> value.

    An encrypted file (Calamari's format: ``IV__``, a 16-byte IV, then AES-256-CBC
    with a key derived from ``password``) needs the password. Raises
    VariablesError naming the file and what is wrong with it.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise VariablesError(f"cannot read variables file {path}: {error.strerror}") from None
    encrypted = data.startswith(ENCRYPTED_HEADER)
    if encrypted:
        data = _decrypted(data, path, password)
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        if encrypted:  # a wrong key can, rarely, still leave valid padding
            raise VariablesError(f"variables file {path}: {BAD_KEY_MESSAGE}") from None
        raise VariablesError(f"variables file {path} is not JSON: {error}") from None
    return VariableSet(_entries(document, path))


def encryption_key(password: str) -> bytes:
    """Calamari's key for a password: PBKDF2-HMAC-SHA1, salt "Octopuss", 1000 rounds."""
    return hashlib.pbkdf2_hmac("sha1", password.encode(), KEY_SALT, KEY_ITERATIONS, 32)


def _decrypted(data: bytes, path: Path, password: str | None) -> bytes:
    if not password:
        raise VariablesError(
            f"variables file {path} is encrypted (it starts with IV__): a password is needed"
        )
    iv, ciphertext = data[4:20], data[20:]
    try:
        return decrypt_cbc(encryption_key(password), iv, ciphertext)
    except PaddingError:
        raise VariablesError(f"variables file {path}: {BAD_KEY_MESSAGE}") from None
    except ValueError as error:
        raise VariablesError(
            f"variables file {path} is not a valid encrypted file: {error}"
        ) from None


def _entries(document: object, path: Path) -> list[Variable]:
    if isinstance(document, dict):
        return [Variable(str(name), _text(value, path, name)) for name, value in document.items()]
    if not isinstance(document, list):
        raise VariablesError(
            f"variables file {path}: expected a JSON list of variables or an object"
        )
    variables = []
    for position, entry in enumerate(document):
        if not isinstance(entry, dict):
            raise VariablesError(f"variables file {path}: entry {position} is not an object")
        name = entry.get("name", entry.get("k"))
        if not isinstance(name, str) or not name:
            raise VariablesError(
                f'variables file {path}: entry {position} has no name ("name" or "k")'
            )
        sensitive = entry.get("sensitive", entry.get("s", False))
        if not isinstance(sensitive, bool):
            raise VariablesError(f"variables file {path}: {name}: sensitive must be true or false")
        variables.append(
            Variable(name, _text(entry.get("value", entry.get("v")), path, name), sensitive)
        )
    return variables


def _text(value: object, path: Path, name: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    raise VariablesError(
        f"variables file {path}: {name}: the value must be text, not {type(value).__name__}"
    )
