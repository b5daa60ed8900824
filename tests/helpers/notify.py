"""A systemd-like notification socket: what a Type=notify unit's manager receives."""

from __future__ import annotations

import os
import secrets
import socket
import time
from pathlib import Path

WAIT_BOUND = 60.0  # seconds: a bound for a hang, not an expectation


class NotifySocket:
    """An AF_UNIX datagram socket bound at ``path``, or in the abstract namespace when
    ``path`` is None; ``variable`` is the NOTIFY_SOCKET value that names it."""

    def __init__(self, path: Path | None = None) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"tentacle-test-{os.getpid()}-{secrets.token_hex(4)}"
            self.socket.bind("\0" + name)
            self.variable = "@" + name
        else:
            self.socket.bind(str(path))
            self.variable = str(path)
        self.messages: list[dict[str, str]] = []  # each datagram's KEY=VALUE lines

    def wait_for(self, key: str, value: str = "1", timeout: float = WAIT_BOUND) -> dict[str, str]:
        """The first message (received so far, or next) with ``key=value``; fails after
        ``timeout`` seconds naming what came."""
        self.wait_for_count(key, value, 1, timeout)
        return next(m for m in self.messages if m.get(key) == value)

    def wait_for_count(
        self, key: str, value: str = "1", count: int = 1, timeout: float = WAIT_BOUND
    ) -> None:
        """Until ``count`` messages with ``key=value`` have come; fails after ``timeout``
        seconds naming what came."""
        deadline = time.monotonic() + timeout
        while self.count(key, value) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"not {count} times {key}={value} within {timeout:g} s: {self.messages}"
                )
            self.socket.settimeout(remaining)
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                continue
            lines = data.decode().split("\n")
            self.messages.append(dict(line.split("=", 1) for line in lines if "=" in line))

    def count(self, key: str, value: str = "1") -> int:
        return sum(1 for message in self.messages if message.get(key) == value)

    def close(self) -> None:
        self.socket.close()
