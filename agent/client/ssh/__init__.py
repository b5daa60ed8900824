"""SSH workers: machines without an agent, reached over SSH (asyncssh).

``SshConnections`` keeps one connection per (target, user) and hands out
``SshWorker`` objects implementing ``agent.client.Worker``; ``host_fingerprint``
fetches a server's host key fingerprint for an operator to pin. See
docs/decisions.md ("Steps over SSH").
"""

from agent.client.ssh.connections import host_fingerprint
from agent.client.ssh.pool import SshConnections
from agent.client.ssh.types import (
    HostKeyMismatch,
    SshCredentials,
    SshLoginFailed,
    SshTarget,
    check_fingerprint,
)
from agent.client.ssh.worker import SshWorker

__all__ = [
    "HostKeyMismatch",
    "SshConnections",
    "SshCredentials",
    "SshLoginFailed",
    "SshTarget",
    "SshWorker",
    "check_fingerprint",
    "host_fingerprint",
]
