"""A hub's home folder: its settings (hub.yaml), certificate (identity.pem) and,
by default, its SQLite database (hub.db). Everything secret is 0600.

``create_home`` makes one; ``load_home`` reads it back. Settings precedence is
the agent's: a command-line flag over hub.yaml over the default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.atomicfile import write_atomic
from agent.certs import Identity, generate_identity, load_identity, save_identity
from agent.errors import ConfigError

SETTINGS_FILE = "hub.yaml"
IDENTITY_FILE = "identity.pem"
DATABASE_FILE = "hub.db"
DEFAULT_LISTEN = "127.0.0.1:8065"
DEFAULT_POLLING_PORT = 10943
DEFAULT_TASK_CAP = 5


@dataclass(frozen=True)
class HubSettings:
    """What hub.yaml holds. ``database`` is a URL (sqlite:///... or postgresql://...)."""

    database: str
    listen: str = DEFAULT_LISTEN
    polling_port: int = DEFAULT_POLLING_PORT
    node_name: str = "hub"
    task_cap: int = DEFAULT_TASK_CAP
    # a certificate and key (one PEM file) the operator gives, for CA-signed HTTPS;
    # without it the hub serves HTTPS on its own certificate, pinned by thumbprint
    https_certificate: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "Database": self.database,
            "Listen": self.listen,
            "PollingPort": self.polling_port,
            "NodeName": self.node_name,
            "TaskCap": self.task_cap,
            "HttpsCertificate": self.https_certificate,
        }


_KEYS = {
    "Database": ("database", str),
    "Listen": ("listen", str),
    "PollingPort": ("polling_port", int),
    "NodeName": ("node_name", str),
    "TaskCap": ("task_cap", int),
    "HttpsCertificate": ("https_certificate", str),
}


def parse_settings(text: str, source: Path) -> HubSettings:
    """hub.yaml's settings; ConfigError naming the file and the setting when one is wrong."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping of settings")
    values: dict[str, Any] = {}
    for key, value in document.items():
        if key not in _KEYS:
            raise ConfigError(f"{source}: unknown setting {key!r} (known: {', '.join(_KEYS)})")
        field, kind = _KEYS[key]
        if value is None:
            continue
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be {kind.__name__}, not {value!r}")
        values[field] = value
    if "database" not in values:
        raise ConfigError(f"{source}: Database is required (a sqlite:/// or postgresql:// URL)")
    return HubSettings(**values)


@dataclass(frozen=True)
class HubHome:
    path: Path
    settings: HubSettings

    @property
    def identity_path(self) -> Path:
        return self.path / IDENTITY_FILE

    def identity(self) -> Identity:
        return load_identity(self.identity_path)

    def with_settings(self, **changes: Any) -> HubHome:
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, **changes))

    def save(self) -> None:
        text = yaml.safe_dump(self.settings.to_document(), sort_keys=False)
        write_atomic(self.path / SETTINGS_FILE, text.encode())


def create_home(path: Path, database: str | None = None) -> HubHome:
    """Make a hub's home at ``path``: settings and a new certificate. ConfigError if
    a hub already lives there (its certificate is never replaced)."""
    path = path.expanduser().absolute()
    if (path / SETTINGS_FILE).exists() or (path / IDENTITY_FILE).exists():
        raise ConfigError(f"a hub already exists in {path}: use it, or choose another --home")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    url = database or f"sqlite:///{path / DATABASE_FILE}"
    if database is None:  # SQLite makes its -wal and -shm files with the database's mode
        (path / DATABASE_FILE).touch(mode=0o600)
    home = HubHome(path, HubSettings(database=url))
    save_identity(home.identity_path, generate_identity("Tentacle Hub"))
    home.save()
    return home


def load_home(path: Path) -> HubHome:
    path = path.expanduser().absolute()
    settings_path = path / SETTINGS_FILE
    try:
        text = settings_path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"no hub in {path} ({SETTINGS_FILE} is missing):"
            f" run 'tentacle hub create --home {path}'"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read {settings_path}: {error.strerror}") from None
    return HubHome(path, parse_settings(text, settings_path))
