"""SshConnections: one SSH connection per (target, user), shared by every step."""

from __future__ import annotations

import asyncio

from agent.client.ssh.connections import IDLE_TIMEOUT, MAX_SESSIONS, Link, Settings
from agent.client.ssh.types import SshCredentials, SshTarget
from agent.client.ssh.worker import SshWorker


class SshConnections:
    """One SSH connection per (target, username), shared by every step and check, kept
    open between steps (idle ones closed after ``idle_timeout``), re-established after a
    failure. ``root`` is the workers' folder on the targets (relative to the login's
    home unless absolute). ``max_sessions`` is the targets' sshd MaxSessions (10 by
    default): steps beyond what it leaves wait for a channel. ``step_helper`` False
    runs every step through the shell wrapper, as on a target without python3."""

    def __init__(
        self,
        *,
        root: str = ".tentacle",
        connect_timeout: float = 15.0,
        keepalive: float = 30.0,
        idle_timeout: float = IDLE_TIMEOUT,
        max_sessions: int = MAX_SESSIONS,
        step_helper: bool = True,
    ) -> None:
        self.settings = Settings(
            root, connect_timeout, keepalive, idle_timeout, max_sessions, step_helper
        )
        self._links: dict[tuple[str, int, str], Link] = {}

    def link(self, target: SshTarget, credentials: SshCredentials) -> Link:
        """The (target, user)'s link; new credentials or a new pin replace its connection."""
        key = (target.host, target.port, credentials.username)
        link = self._links.get(key)
        if link is not None and (link.target, link.credentials) != (target, credentials):
            link.forget()
            link.target, link.credentials = target, credentials
        if link is None:
            link = self._links[key] = Link(target, credentials, self.settings)
        return link

    def worker(self, target: SshTarget, credentials: SshCredentials, name: str = "") -> SshWorker:
        """A ``Worker`` running on ``target`` as ``credentials.username`` over the shared
        connection (agent.client.ssh.worker.SshWorker)."""
        return SshWorker(self.link(target, credentials), name or target.address)

    async def close(self) -> None:
        """Close every connection (a worker used again opens its own again, and the
        next close closes it too: the links stay known)."""
        await asyncio.gather(*(link.close() for link in self._links.values()))
