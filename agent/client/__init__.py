"""The library a server uses to reach agents (the hub, the tests and `tentacle client`).

Everything a caller needs is exported here, so that the hub imports ``agent.client``
and never ``agent.transport`` (tests/test_architecture.py holds it to that): the
``Worker`` interface and its agent implementation, the channel settings, the
polling listener, SSH workers (agent.client.ssh), the retry policy and the errors a
caller must catch.
"""

import importlib
from typing import TYPE_CHECKING

from agent.client.agent_client import AgentClient, Endpoint, TransferError
from agent.client.connections import IDLE_TIMEOUT, Connections
from agent.client.discovery import Discovered, discover
from agent.client.polling_listener import (
    DEFAULT_QUEUE_TIMEOUT,
    AgentNotConnected,
    PollingListener,
)
from agent.client.scripts import (
    LogChunk,
    ScriptOutcome,
    ScriptRequest,
    execute_script,
    takes_environment,
)
from agent.client.worker import Progress, Worker
from agent.errors import (
    ConnectionLost,
    RemoteError,
    TentacleError,
    TrustError,
    UnsupportedFeature,
)
from agent.protocol.limits import Limits
from agent.protocol.messages import DRAINING
from agent.protocol.retry import CLIENT, Backoff
from agent.protocol.services import ENVIRONMENT_SERVICE
from agent.transport.dialer import Proxy
from agent.transport.settings import ChannelSettings

CLIENT_RETRY = CLIENT

# SSH workers load asyncssh, which most callers (register-worker, `tentacle client`, an
# agent) never use: its names are imported on first use, and seen whole by mypy
_SSH_NAMES = frozenset(
    {"HostKeyMismatch", "SshConnections", "SshCredentials", "SshLoginFailed", "SshTarget",
     "SshWorker", "host_fingerprint"}
)  # fmt: skip
if TYPE_CHECKING:
    from agent.client.ssh import (
        HostKeyMismatch,
        SshConnections,
        SshCredentials,
        SshLoginFailed,
        SshTarget,
        SshWorker,
        host_fingerprint,
    )
else:

    def __getattr__(name: str) -> object:
        if name in _SSH_NAMES:
            return getattr(importlib.import_module("agent.client.ssh"), name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLIENT_RETRY",
    "DEFAULT_QUEUE_TIMEOUT",
    "DRAINING",
    "ENVIRONMENT_SERVICE",
    "IDLE_TIMEOUT",
    "AgentClient",
    "AgentNotConnected",
    "Backoff",
    "ChannelSettings",
    "ConnectionLost",
    "Connections",
    "Discovered",
    "Endpoint",
    "HostKeyMismatch",
    "Limits",
    "LogChunk",
    "PollingListener",
    "Progress",
    "Proxy",
    "RemoteError",
    "ScriptOutcome",
    "ScriptRequest",
    "SshConnections",
    "SshCredentials",
    "SshLoginFailed",
    "SshTarget",
    "SshWorker",
    "TentacleError",
    "TransferError",
    "TrustError",
    "UnsupportedFeature",
    "Worker",
    "discover",
    "execute_script",
    "host_fingerprint",
    "takes_environment",
]
