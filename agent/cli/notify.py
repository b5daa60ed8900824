"""systemd's notification protocol (sd_notify) for `tentacle agent` and `hub serve`.

Under a ``Type=notify`` unit systemd passes ``NOTIFY_SOCKET`` (a path, or an
abstract-namespace name written with a leading ``@``) and, with
``WatchdogSec=``, ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, the process it is
meant for). The process sends datagrams of ``KEY=VALUE`` lines: ``READY=1``
once it serves, ``STOPPING=1`` when a stop begins, ``STATUS=...`` for
``systemctl status``, and ``WATCHDOG=1`` at least once per ``WATCHDOG_USEC``
(here every half of it). Without ``NOTIFY_SOCKET`` every call does nothing.

Only the CLI reads the environment: the daemons get callbacks. A notification
that cannot be sent (systemd went away) is logged once and never stops the
process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

from agent.errors import ConfigError

log = logging.getLogger(__name__)

SOCKET_VARIABLE = "NOTIFY_SOCKET"
WATCHDOG_VARIABLE = "WATCHDOG_USEC"
WATCHDOG_PID_VARIABLE = "WATCHDOG_PID"
JOURNAL_VARIABLE = "JOURNAL_STREAM"
# For this process alone: a script given them would speak for the agent (or feed its
# watchdog), and its output goes to the agent, not to the journal.
SERVICE_VARIABLES = (SOCKET_VARIABLE, WATCHDOG_VARIABLE, WATCHDOG_PID_VARIABLE, JOURNAL_VARIABLE)


def socket_address(value: str) -> str | bytes:
    """The address ``NOTIFY_SOCKET`` names: a path, or (``@name``) the abstract
    socket ``\\0name``. Raises ConfigError for anything else."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise ConfigError(
        f"{SOCKET_VARIABLE}={value!r} is not a notification socket: expected an absolute "
        "path or an abstract socket name starting with '@' (systemd sets it for Type=notify)"
    )


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 messages (half of ``WATCHDOG_USEC``), or None when no
    watchdog is asked for, or it is meant for another process (``WATCHDOG_PID``).
    Raises ConfigError for a value that is not a positive number of microseconds."""
    text = environ.get(WATCHDOG_VARIABLE, "").strip()
    if not text:
        return None
    meant_for = environ.get(WATCHDOG_PID_VARIABLE, "").strip()
    if meant_for and meant_for != str(pid):
        return None  # inherited from a parent that systemd watches, not for us
    if not text.isdigit() or int(text) == 0:
        raise ConfigError(
            f"{WATCHDOG_VARIABLE}={text!r} is not a watchdog interval: expected a positive "
            "whole number of microseconds (systemd sets it from WatchdogSec=)"
        )
    return int(text) / 2_000_000


class Notifier:
    """Sends sd_notify messages to ``address`` (None: sends nothing)."""

    def __init__(self, address: str | bytes | None, interval: float | None = None) -> None:
        self.address = address
        self.interval = interval if address is not None else None
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Notifier:
        """The notifier systemd asked for, if any. Raises ConfigError for values that
        systemd would never set."""
        value = environ.get(SOCKET_VARIABLE, "")
        if not value:
            return cls(None)
        return cls(socket_address(value), watchdog_interval(environ, os.getpid()))

    @property
    def active(self) -> bool:
        return self.address is not None

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def send(self, *lines: str) -> None:
        """One datagram of ``lines``; a failure is logged (once) and swallowed."""
        if self.address is None:
            return
        message = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(message, self.address)
        except OSError as error:
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self._shown(), error)
                self._failed = True

    async def keep_alive(self) -> None:
        """Send WATCHDOG=1 now and every ``interval`` seconds, until cancelled; returns
        at once when no watchdog is asked for."""
        if self.interval is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _shown(self) -> str:
        address = self.address
        if isinstance(address, bytes):
            return "@" + address[1:].decode(errors="replace")
        return str(address)


def without_service_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` less the variables systemd meant for this process only."""
    return {key: value for key, value in environ.items() if key not in SERVICE_VARIABLES}


def on_journal(environ: Mapping[str, str], descriptor: int) -> bool:
    """Whether ``descriptor`` is the journal stream systemd connected (``JOURNAL_STREAM``
    is "DEVICE:INODE" of it; a redirected stderr no longer matches)."""
    device, _, inode = environ.get(JOURNAL_VARIABLE, "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(descriptor)
    except OSError:
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
