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
