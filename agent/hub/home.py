"""A hub's home folder: its settings (hub.yaml), certificate (identity.pem) and,
by default, its SQLite database (hub.db). Everything secret is 0600.

``create_home`` makes one; ``load_home`` reads it back. The settings are a
table (agent.config.settings) like the agent's, so their precedence is the
agent's: a command-line flag over the environment over hub.yaml over the default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.atomicfile import PRIVATE, write_atomic
from agent.certs import Identity, generate_identity, load_identity, save_identity
from agent.config import document
from agent.config.model import (
    MAX_PORT,
    coerce_bool,
    coerce_optional_path,
    coerce_port,
    coerce_uid_range,
)
from agent.config.settings import (
    Flag,
    apply_environment,
    as_text,
    document_of,
    setting,
    settings_of,
    with_settings,
)
from agent.errors import CertificateError, ConfigError
from agent.hub.rules.lease import DEFAULT_LEASE_SECONDS, MAX_LEASE_SECONDS, MIN_LEASE_SECONDS

SETTINGS_FILE = "hub.yaml"
IDENTITY_FILE = "identity.pem"
DATABASE_FILE = "hub.db"
HTTPS_CERTIFICATE_FILE = "https.pem"
LOCK_FILE = "serve.lock"  # held (flock) by the process serving from this home
DEFAULT_LISTEN = "127.0.0.1:8065"
DEFAULT_POLLING_PORT = 10943
DEFAULT_TASK_CAP = 5
MAX_TASK_CAP = 1000
DEFAULT_MAX_PACKAGE_BYTES = 2 * 1024**3  # 2 GiB
MAX_PACKAGE_BYTES = 2**53  # what every database's BIGINT and JSON number hold exactly
HEADER = "# tentacle hub settings. Change them with `tentacle hub configure`.\n"


def coerce_database(value: Any) -> str:
    """A database URL: sqlite:///PATH or postgresql://USER@HOST/DB."""
    if not isinstance(value, str) or not value.startswith(("sqlite:///", "postgresql://")):
        raise ValueError(f"expected a sqlite:/// or postgresql:// URL, got {value!r}")
    return value


def coerce_listen(value: Any) -> str:
    """HOST:PORT ([::1]:8065 for IPv6; :8065 for every address)."""
    text = value.strip() if isinstance(value, str) else ""
    _, sep, port = text.rpartition(":")
    if not sep or not port.isdecimal() or not 0 <= int(port) <= MAX_PORT:
        raise ValueError(f"expected HOST:PORT (e.g. {DEFAULT_LISTEN}), got {value!r}")
    return text


def shared_port(api_port: int, polling_port: int) -> str | None:
    """Why the API and the polling listener cannot both listen, or None. They listen
    on one host (Listen's), so one port number for both is one address: the
    second bind would fail, after the start had migrated the database. Port 0
    (a free one each) is never shared."""
    if api_port != polling_port or api_port == 0:
        return None
    return (
        f"Listen and PollingPort are both port {api_port}: the API and polling agents"
        " each need their own port (or 0 for a free one)"
    )


MAX_NODE_NAME = 200  # hub_nodes.name and server_tasks.server_node
NODE_NAME_PUNCTUATION = " .-_"
NODE_NAME_RULE = (
    f"a node name of 1 to {MAX_NODE_NAME} characters: ASCII letters and digits, spaces, '.',"
    " '-' and '_' (such as a machine's name)"
)


def coerce_node_name(value: Any) -> str:
    """A hub node's name, as Octopus's are: a machine's name, say. Names are one node
    whatever their case ("HUB" is "hub": agent.hub.store.nodes compares them so). ASCII
    only: the database's unique index on lower(name) is what makes them one, and
    SQLite's lower() folds ASCII alone ("hüb" and "HÜB" would be two nodes)."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise ValueError(f"expected {NODE_NAME_RULE}, got {value!r}")
    if len(text) > MAX_NODE_NAME:
        raise ValueError(f"expected {NODE_NAME_RULE}, got {len(text)} characters")
    wrong = [c for c in text if not ((c.isascii() and c.isalnum()) or c in NODE_NAME_PUNCTUATION)]
    if wrong:
        raise ValueError(f"expected {NODE_NAME_RULE}, got {value!r} (with {wrong[0]!r})")
    return text


USER_NAME_RULE = (
    "a user name of 1 to 32 characters: ASCII letters, digits, '.', '-' and '_', not starting"
    " with '-' (or '' for none)"
)


def coerce_user_name(value: Any) -> str | None:
    """A local account's name as useradd takes it, or None (an empty text) for none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = value.strip() if isinstance(value, str) else ""
    allowed = all((c.isascii() and c.isalnum()) or c in "._-" for c in text)
    if not text or len(text) > 32 or text.startswith("-") or not allowed:
        raise ValueError(f"expected {USER_NAME_RULE}, got {value!r}")
    return text


SSH_ROOT_RULE = (
    "a folder on the SSH workers: relative to the login's home unless absolute, without"
    " '..', spaces or control characters"
)
DEFAULT_SSH_ROOT = ".tentacle"


def coerce_ssh_root(value: Any) -> str:
    """The SSH workers' folder on each target (agent.client.SshConnections' root)."""
    text = value.strip() if isinstance(value, str) else ""
    parts = text.split("/")
    allowed = all(c.isprintable() and not c.isspace() for c in text)
    if not text or len(text) > 200 or ".." in parts or not allowed:
        raise ValueError(f"expected {SSH_ROOT_RULE}, got {value!r}")
    return text


def coerce_task_cap(value: Any) -> int:
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.strip().isdecimal():
        number = int(value)
    if number is None or not 1 <= number <= MAX_TASK_CAP:
        raise ValueError(f"expected a whole number from 1 to {MAX_TASK_CAP}, got {value!r}")
    return number


def coerce_lease_seconds(value: Any) -> int:
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.strip().isdecimal():
        number = int(value)
    if number is None or not MIN_LEASE_SECONDS <= number <= MAX_LEASE_SECONDS:
        raise ValueError(
            f"expected a whole number of seconds from {MIN_LEASE_SECONDS} to"
            f" {MAX_LEASE_SECONDS}, got {value!r}"
        )
    return number


def coerce_package_bytes(value: Any) -> int:
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.strip().isdecimal():
        number = int(value)
    if number is None or not 1 <= number <= MAX_PACKAGE_BYTES:
        raise ValueError(f"expected a number of bytes from 1 to {MAX_PACKAGE_BYTES}, got {value!r}")
    return number


@dataclass(frozen=True)
class HubSettings:
    """What hub.yaml holds, declared in the settings table (agent.config.settings):
    the file's keys are Octopus-style (``Listen``), the fields Python's (``listen``).

    Precedence is the agent's: flag > environment > hub.yaml > default.
    """

    database: str = setting(
        "", coerce_database, required=True, key="Database", shown_as="Database",
        env="TENTACLE_HUB_DATABASE",
        help="the store: sqlite:///PATH or postgresql://USER@HOST/DB (set by hub create)",
    )  # fmt: skip
    listen: str = setting(
        DEFAULT_LISTEN, coerce_listen, key="Listen", shown_as="Listen",
        env="TENTACLE_HUB_LISTEN", flag=Flag("--listen", metavar="HOST:PORT"),
        help=f"where the API listens (default {DEFAULT_LISTEN})",
    )  # fmt: skip
    polling_port: int = setting(
        DEFAULT_POLLING_PORT, coerce_port, key="PollingPort", shown_as="PollingPort",
        env="TENTACLE_HUB_POLLING_PORT", flag=Flag("--polling-port", "int", 0, MAX_PORT),
        help=f"the port polling workers dial (default {DEFAULT_POLLING_PORT}; 0 picks a free one)",
    )  # fmt: skip
    node_name: str = setting(
        "hub", coerce_node_name, key="NodeName", shown_as="NodeName",
        env="TENTACLE_HUB_NODE_NAME", flag=Flag("--node-name", metavar="NAME"),
        help="this hub node's name (tasks record which node ran them)",
    )  # fmt: skip
    task_cap: int = setting(
        DEFAULT_TASK_CAP, coerce_task_cap, key="TaskCap", shown_as="TaskCap",
        env="TENTACLE_HUB_TASK_CAP", flag=Flag("--task-cap", "int", 1, MAX_TASK_CAP, "N"),
        help=f"tasks this node runs at once (default {DEFAULT_TASK_CAP})",
    )  # fmt: skip
    # How long this node's lease on its name lasts unrenewed (it renews it every
    # quarter of that): another process with the same NodeName refuses to start
    # while the lease is live, and takes over once it expired (agent.hub.lease).
    node_lease_seconds: int = setting(
        DEFAULT_LEASE_SECONDS, coerce_lease_seconds, key="NodeLeaseSeconds",
        shown_as="NodeLeaseSeconds", env="TENTACLE_HUB_NODE_LEASE_SECONDS",
        flag=Flag("--node-lease-seconds", "int", MIN_LEASE_SECONDS, MAX_LEASE_SECONDS, "S"),
        help=f"how long a node that stopped renewing its name keeps it before another"
        f" process may take over (default {DEFAULT_LEASE_SECONDS})",
    )  # fmt: skip
    # The largest package POST /api/packages/raw takes (413 beyond it): uploads are
    # streamed to disk, so this bounds the disk an upload may fill, not memory.
    max_package_bytes: int = setting(
        DEFAULT_MAX_PACKAGE_BYTES, coerce_package_bytes, key="MaxPackageBytes",
        shown_as="MaxPackageBytes", env="TENTACLE_HUB_MAX_PACKAGE_BYTES",
        flag=Flag("--max-package-bytes", "int", 1, MAX_PACKAGE_BYTES, "BYTES"),
        help=f"the largest package the repository takes (default {DEFAULT_MAX_PACKAGE_BYTES})",
    )  # fmt: skip
    # A certificate and key (one PEM file, in the home) the operator gave, for
    # CA-signed HTTPS; without it the hub serves HTTPS on its own certificate,
    # pinned by thumbprint. `hub configure --https-certificate` validates and copies it.
    https_certificate: Path | None = setting(
        None, coerce_optional_path, key="HttpsCertificate", shown_as="HttpsCertificate",
        dump=as_text, help="a PEM with the certificate (and chain) and its key, for "
        "CA-signed HTTPS: validated and copied into the home",
    )  # fmt: skip

    # The built-in worker runs steps on the hub's machine when a pool has no workers at
    # all (agent.hub.builtin); off, such a task fails saying so. `hub serve
    # --no-builtin-worker` turns it off for one run.
    builtin_worker: bool = setting(
        True, coerce_bool, key="BuiltinWorker", shown_as="BuiltinWorker",
        env="TENTACLE_HUB_BUILTIN_WORKER", flag=Flag("--builtin-worker", "bool"),
        help="run steps on the hub's own machine when a pool has no workers (default true)",
    )  # fmt: skip
    builtin_worker_user: str | None = setting(
        None, coerce_user_name, key="BuiltinWorkerUser", shown_as="BuiltinWorkerUser",
        env="TENTACLE_HUB_BUILTIN_WORKER_USER",
        flag=Flag("--builtin-worker-user", metavar="USER"),
        help="run the built-in worker's steps as this unprivileged user (the hub runs as"
        " root); '' for none",
    )  # fmt: skip

    # The built-in worker's steps run as their isolation group's uid (agent.scripts.users)
    # when the hub may switch users and no BuiltinWorkerUser is set, as an agent's do.
    builtin_worker_script_users: bool = setting(
        True, coerce_bool, key="BuiltinWorkerScriptUsers", shown_as="BuiltinWorkerScriptUsers",
        env="TENTACLE_HUB_BUILTIN_WORKER_SCRIPT_USERS",
        flag=Flag("--builtin-worker-script-users", "bool"),
        help="run the built-in worker's steps as their project's own uid (default true; needs"
        " root and a home other users can reach, else steps of a project are refused)",
    )  # fmt: skip
    builtin_worker_uid_range: tuple[int, int] = setting(
        (60928, 61183), coerce_uid_range, key="BuiltinWorkerUidRange",
        shown_as="BuiltinWorkerUidRange", env="TENTACLE_HUB_BUILTIN_WORKER_UID_RANGE",
        flag=Flag("--builtin-worker-uid-range", metavar="A-B"), dump=lambda r: f"{r[0]}-{r[1]}",
        help="the uids of the built-in worker's isolation groups (apart from every agent's"
        " range on this machine)",
    )  # fmt: skip

    # Where SSH workers keep the hub's files on each target: each step's working folder
    # (Work/<ticket>, 0700), the executor's zipapp (cached by content hash), the locks.
    ssh_worker_root: str = setting(
        DEFAULT_SSH_ROOT, coerce_ssh_root, key="SshWorkerRoot", shown_as="SshWorkerRoot",
        env="TENTACLE_HUB_SSH_WORKER_ROOT", flag=Flag("--ssh-worker-root", metavar="DIR"),
        help=f"the SSH workers' folder on each target, relative to the login's home unless"
        f" absolute (default {DEFAULT_SSH_ROOT})",
    )  # fmt: skip

    def to_document(self) -> dict[str, Any]:
        """hub.yaml's mapping, keyed as the file is."""
        return document_of(self)


HUB_SETTINGS = settings_of(HubSettings)


def parse_settings(text: str, source: Path) -> HubSettings:
    """hub.yaml's settings; ConfigError naming the file, the line and the setting when one
    is wrong (Database is required)."""
    try:
        settings, _ = document.parse_settings(
            HubSettings, text, source, base={}, example=f"Listen: {DEFAULT_LISTEN}"
        )
    except TypeError:  # the required setting the file left out
        raise ConfigError(
            f"{source}: Database is required (a sqlite:/// or postgresql:// URL)"
        ) from None
    return settings


def https_certificate_problem(path: Path) -> str | None:
    """Why ``path`` cannot serve as the hub's HTTPS certificate, or None if it can:
    it must be readable and hold a certificate (its chain may follow) and the
    unencrypted private key that matches it, in a form TLS accepts."""
    try:
        load_identity(path)
    except CertificateError as error:
        return f"{error} (expected one PEM file with the certificate and its unencrypted key)"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(path)
    except (OSError, ssl.SSLError) as error:
        return f"{path} cannot be used for TLS: {error}"
    return None


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
        """A copy with the named settings coerced and replaced (ValueError naming a bad one)."""
        return dataclasses.replace(self, settings=with_settings(self.settings, changes))

    @property
    def settings_path(self) -> Path:
        return self.path / SETTINGS_FILE

    def save(self) -> None:
        text = HEADER + yaml.safe_dump(self.settings.to_document(), sort_keys=False)
        write_atomic(self.settings_path, text.encode(), mode=PRIVATE)

    def https_path(self) -> Path:
        """Where ``install_https_certificate`` copies the operator's certificate."""
        return self.path / HTTPS_CERTIFICATE_FILE

    def install_https_certificate(self, source: Path) -> HubHome:
        """A copy of this home serving HTTPS with the PEM at ``source``, copied into the
        home (0600) so that the hub never depends on a file elsewhere changing or
        going. ConfigError saying why when the file will not do; nothing is
        changed then."""
        problem = https_certificate_problem(source)
        if problem is not None:
            raise ConfigError(f"--https-certificate: {problem}")
        target = self.https_path()
        write_atomic(target, source.read_bytes(), mode=PRIVATE)
        return self.with_settings(https_certificate=target)

    def without_https_certificate(self) -> HubHome:
        """Back to HTTPS on the hub's own certificate (the copy is removed)."""
        self.https_path().unlink(missing_ok=True)
        return self.with_settings(https_certificate=None)


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


def discard_new_home(home: HubHome) -> None:
    """Undo ``create_home`` (its database could not be made): remove what it wrote, so
    that the same command can be run again once the database is reachable."""
    for name in (
        SETTINGS_FILE,
        IDENTITY_FILE,
        DATABASE_FILE,
        f"{DATABASE_FILE}-wal",
        f"{DATABASE_FILE}-shm",
    ):
        (home.path / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # left alone if it holds anything else
        home.path.rmdir()


def load_home(path: Path, environ: Mapping[str, str] | None = None) -> HubHome:
    """The hub in ``path``, with the TENTACLE_HUB_* variables in ``environ`` (the CLI
    hands the process's in) over hub.yaml. ConfigError naming what is wrong."""
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
    settings = apply_environment(parse_settings(text, settings_path), environ or {})
    return HubHome(path, settings)


class HomeInUse(ConfigError):
    """Another process serves from this home."""


class HomeLock:
    """An exclusive lock (flock) on the home's LOCK_FILE, held while a hub serves from
    it: a second ``serve`` on the same home is refused at once, and the lock goes
    with the process however it ends (kill -9 included), so it never needs
    clearing by hand. The file holds the holder's pid, for the refusal."""

    def __init__(self, path: Path) -> None:
        self.path = path / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or HomeInUse naming the process that has it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise HomeInUse(
                f"another hub is serving from {self.path.parent} (process {holder}): stop it,"
                " or serve this one from another --home"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
