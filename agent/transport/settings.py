"""What a channel needs to know about this side, whichever way it connects."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.certs import Identity
from agent.protocol import SUPPORTED_VERSIONS, Connection, Hello, Limits
from agent.protocol.connection import DEFAULT_HEARTBEAT_INTERVAL


@dataclass(frozen=True)
class ChannelSettings:
    identity: Identity
    name: str
    version: str
    services: tuple[str, ...] = ()
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    # How long closing waits for the peer to answer the close; a dead peer never does.
    close_timeout: float = 2.0
    limits: Limits = field(default_factory=Limits)

    def connection(self, *, dialer: bool, now: float) -> Connection:
        hello = Hello(
            versions=SUPPORTED_VERSIONS,
            name=self.name,
            version=self.version,
            services=self.services,
            limits=self.limits.as_dict(),
        )
        return Connection(
            hello,
            dialer=dialer,
            now=now,
            heartbeat_interval=self.heartbeat_interval,
            limits=self.limits,
        )
