"""The error taxonomy shared by every layer.

Every failure the project expects to happen (bad input, an untrusted peer, a
missing file) is a :class:`TentacleError`. The command line turns these into one
line on stderr and exit code 1; anything else is a bug and keeps its traceback.

``retryable`` says whether repeating the same operation may succeed (a dropped
connection) or never will (a malformed config file).
"""

from __future__ import annotations


class TentacleError(Exception):
    """A controlled failure: the message says what was wrong and what was expected."""

    retryable: bool = False


class ConfigError(TentacleError):
    """An instance configuration (file, index, environment or flag) is invalid."""


class InstanceError(TentacleError):
    """An instance is unknown, duplicated or ambiguous."""


class CertificateError(TentacleError):
    """A certificate or thumbprint is malformed, missing or does not match."""


class ProtocolError(TentacleError):
    """The peer broke the RPC protocol; the connection cannot continue.

    ``limit`` names the limit that was exceeded, when that was the cause.
    """

    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class RemoteError(TentacleError):
    """A call failed on the peer. ``kind`` is the protocol's error kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.remote_message = message


class ConnectionLost(TentacleError):
    """The connection to the peer dropped, or the peer stopped answering."""

    retryable = True


class UnsupportedFeature(TentacleError):
    """The peer does not serve what a request needs (an older agent): nothing was sent."""


class TrustError(TentacleError):
    """A peer presented a certificate we do not trust, or refused ours."""


class CallError(TentacleError):
    """Raised by a service to fail one call with a protocol error ``kind``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
