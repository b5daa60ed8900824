"""The SSH connection of one (target, user), shared by every step of its worker.

A connection is opened on first use, carries every step, check and transfer of
its worker as channels at once, stays open between them (closed once idle for
``idle_timeout``), and is opened again after it failed. Every connection checks
the server's host key against the pinned fingerprint before authenticating.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from agent.client.ssh.types import HostKeyMismatch, SshCredentials, SshLoginFailed, SshTarget
from agent.errors import ConnectionLost

log = logging.getLogger("agent.client.ssh")

IDLE_TIMEOUT = 300.0  # seconds a connection without channels stays open
MAX_SESSIONS = 10  # sshd's default MaxSessions: channels at once per connection
KEEPALIVE_COUNT = 3  # keepalives unanswered before a connection counts as dropped


async def host_fingerprint(host: str, port: int = 22, timeout: float = 10.0) -> str:
    """The server's host key's SHA256 fingerprint (``SHA256:...``, as ``ssh-keygen -lf``
    prints it), from a key exchange without authentication. ConnectionLost when the
    server cannot be reached or presents no key."""
    address = SshTarget(host, port, "").address
    try:
        async with asyncio.timeout(timeout):
            key = await asyncssh.get_server_host_key(host, port, config=None)
    except TimeoutError:
        raise ConnectionLost(
            f"{address} did not complete an SSH handshake within {timeout:g} s"
        ) from None
    except (OSError, asyncssh.Error) as error:
        raise ConnectionLost(f"cannot reach the SSH server {address}: {_reason(error)}") from None
    if key is None:
        raise ConnectionLost(f"the SSH server {address} presented no host key")
    return str(key.get_fingerprint("sha256"))


def _reason(error: BaseException) -> str:
    if isinstance(error, asyncssh.Error):
        return error.reason or type(error).__name__
    return str(error) or type(error).__name__


class _Client(asyncssh.SSHClient):
    """Pins the host key (asyncssh asks it about every key it does not trust already:
    none, as the connection trusts no key) and learns when the connection ends."""

    def __init__(self, target: SshTarget, on_lost: Callable[[_Client], None]) -> None:
        self.target = target
        self.presented: str | None = None
        self._on_lost = on_lost

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        self.presented = str(key.get_fingerprint("sha256"))
        return self.presented == self.target.fingerprint

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(self)


@dataclass(frozen=True)
class Settings:
    """What every connection of one SshConnections shares."""

    root: str = ".tentacle"
    connect_timeout: float = 15.0
    keepalive: float = 30.0
    idle_timeout: float = IDLE_TIMEOUT
    max_sessions: int = MAX_SESSIONS
    step_helper: bool = True  # steps through a helper where the target has python3

    @property
    def step_channels(self) -> int:
        """Steps at once on one connection: the rest of sshd's MaxSessions is for
        SFTP (one) and the short commands (cancel, capabilities: two)."""
        return max(1, self.max_sessions - 3)


@dataclass
class Link:
    """One (target, user)'s connection: opened when needed, shared, reopened after a
    failure. ``busy`` counts the channels and transfers using it (idle timer)."""

    target: SshTarget
    credentials: SshCredentials
    settings: Settings
    connection: asyncssh.SSHClientConnection | None = None
    client: _Client | None = None
    sftp: asyncssh.SFTPClient | None = None
    busy: int = 0
    opened: int = 0  # connections opened so far (what tests and logs count)
    state: dict[str, Any] = field(default_factory=dict)  # per connection (root, bundle...)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    prepare_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    helper_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one helper starting
    steps: asyncio.Semaphore = field(init=False)
    control: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    def __post_init__(self) -> None:
        self.steps = asyncio.Semaphore(self.settings.step_channels)

    _idle: asyncio.TimerHandle | None = None

    async def connect(self) -> asyncssh.SSHClientConnection:
        """The open connection, opening it if there is none (one at a time)."""
        async with self._lock:
            if self.connection is not None:
                return self.connection
            self.connection = await self._open()
            self.opened += 1
            self.state = {}
            return self.connection

    async def _open(self) -> asyncssh.SSHClientConnection:
        target, credentials, settings = self.target, self.credentials, self.settings
        keys = [_private_key(target, credentials)] if credentials.private_key else []
        client = _Client(target, self._lost)
        try:
            async with asyncio.timeout(settings.connect_timeout):
                connection, _ = await asyncssh.create_connection(
                    lambda: client,
                    target.host,
                    target.port,
                    username=credentials.username,
                    client_keys=keys,
                    password=credentials.password,
                    known_hosts=([], [], []),  # trust no key: every one goes to the pin
                    agent_path=None,
                    config=None,
                    preferred_auth=_preferred(credentials),
                    kbdint_auth=False,
                    keepalive_interval=settings.keepalive,
                    keepalive_count_max=KEEPALIVE_COUNT,
                )
        except TimeoutError:
            raise ConnectionLost(
                f"the SSH server {target.address} did not let {credentials.username} log in "
                f"within {settings.connect_timeout:g} s"
            ) from None
        except asyncssh.HostKeyNotVerifiable:
            raise HostKeyMismatch(
                target.address, target.fingerprint, client.presented or "no key"
            ) from None
        except asyncssh.PermissionDenied as error:
            raise SshLoginFailed(
                f"the SSH server {target.address} refused the login of {credentials.username} "
                f"({_methods(credentials)}): {_reason(error)}"
            ) from None
        except (OSError, asyncssh.Error) as error:
            raise ConnectionLost(
                f"cannot reach the SSH server {target.address}: {_reason(error)}"
            ) from None
        self.client = client
        log.info("SSH connection to %s as %s opened", target.address, credentials.username)
        return connection

    def _lost(self, client: _Client) -> None:
        if client is self.client:
            self.forget()

    def forget(self, connection: asyncssh.SSHClientConnection | None = None) -> None:
        """Drop the connection (``connection``, if given and still the current one):
        the next use opens a new one."""
        if connection is not None and connection is not self.connection:
            return
        old, self.connection, self.client, self.sftp = self.connection, None, None, None
        self.state = {}
        if old is not None:
            old.abort()

    async def sftp_client(self) -> asyncssh.SFTPClient:
        connection = await self.connect()
        if self.sftp is None:
            self.sftp = await connection.start_sftp_client()
        return self.sftp

    @contextlib.asynccontextmanager
    async def using(self) -> Any:
        """Count a use (the idle timer waits for the last to end)."""
        self.busy += 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        try:
            yield
        finally:
            self.busy -= 1
            if self.busy == 0 and self.connection is not None:
                loop = asyncio.get_running_loop()
                self._idle = loop.call_later(self.settings.idle_timeout, self._close_idle)

    def _close_idle(self) -> None:
        self._idle = None
        if self.busy == 0 and self.connection is not None:
            log.info("SSH connection to %s closed (idle)", self.target.address)
            connection = self.connection
            self.connection, self.client, self.sftp, self.state = None, None, None, {}
            connection.close()

    async def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        connection = self.connection
        self.connection, self.client, self.sftp, self.state = None, None, None, {}
        if connection is not None:
            connection.close()
            with contextlib.suppress(Exception):
                await connection.wait_closed()


def _private_key(target: SshTarget, credentials: SshCredentials) -> Any:
    try:
        return asyncssh.import_private_key(credentials.private_key or "", credentials.passphrase)
    except (asyncssh.KeyImportError, ValueError) as error:
        hint = ""
        if "assphrase" in str(error) or "decrypt" in str(error).lower():
            hint = (
                " (the key is encrypted: a wrong or missing passphrase)"
                if credentials.passphrase
                else " (the key is encrypted and no passphrase was given)"
            )
        raise SshLoginFailed(
            f"cannot use the private key of {credentials.username} for {target.address}: "
            f"{error}{hint}; expected an OpenSSH or PEM private key and its passphrase if "
            "it has one"
        ) from None


def _preferred(credentials: SshCredentials) -> tuple[str, ...]:
    methods = []
    if credentials.private_key:
        methods.append("publickey")
    if credentials.password is not None:
        methods.append("password")
    return tuple(methods)


def _methods(credentials: SshCredentials) -> str:
    return (
        " then ".join(
            {"publickey": "with its key", "password": "with its password"}[m]
            for m in _preferred(credentials)
        )
        or "with no key and no password"
    )
