"""Whatever a request carries, the hub's own log never shows an API key: not even
the lines aiohttp writes itself about a request it could not parse."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import TentacleCli

READY = re.compile(r"Hub listening on: https://127\.0\.0\.1:(\d+)/")
KEY = "API-" + "K" * 32


def _send_raw(port: int, request: bytes) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # what is checked here is the log, not the peer
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    with context.wrap_socket(raw) as tls:
        tls.sendall(request)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        return answer


class ServedHub:
    """A real ``tentacle hub serve`` in a child process; its stderr is read once stopped."""

    def __init__(self, tentacle: TentacleCli, home: Path) -> None:
        tentacle.ok("hub", "create", "--home", str(home))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "hub", "serve", "--home", str(home), "--listen",
             "127.0.0.1:0", "--polling-port", "0"],
            env=tentacle.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = READY.search(line)
        assert match, f"no readiness line, got {line!r}"
        self.port = int(match.group(1))

    def send(self, request: str) -> bytes:
        """The raw answer; its status line must say 400 (what is sent here is malformed)."""
        answer = _send_raw(self.port, request.encode())
        assert b" 400 " in answer.split(b"\r\n", 1)[0], answer[:200]
        return answer

    def stop(self) -> str:
        """Stop it as an operator does and return everything it logged."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) == 0
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()


@pytest.fixture
def served(tentacle: TentacleCli, tmp_path: Path) -> Iterator[ServedHub]:
    hub = ServedHub(tentacle, tmp_path / "hub")
    try:
        yield hub
    finally:
        hub.kill()


def test_a_request_too_long_to_parse_does_not_put_its_key_in_the_log(served: ServedHub) -> None:
    # beyond every limit the hub raises aiohttp's parser to, so aiohttp answers itself
    target = f"/api/{KEY}?apikey={KEY}&pad=" + "x" * 70_000
    served.send(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n")
    log = served.stop()
    assert "K" * 20 not in log, log[-2000:]


def _encoded(text: str) -> str:
    return "".join(f"%{ord(c):02X}" for c in text)


def test_a_percent_encoded_key_in_a_request_line_aiohttp_cannot_parse_is_masked(
    served: ServedHub,
) -> None:
    for shown in (KEY.replace("-", "%2D"), _encoded(KEY)):
        served.send(f"GET /api/workers?apikey={shown} HTTP/1.1 junk\r\nHost: h\r\n\r\n")
    log = served.stop()
    assert "K" * 20 not in log, log[-2000:]
    assert "%4B" * 20 not in log, log[-2000:]
    assert log.count("apikey=API-********") == 2, log[-2000:]


def test_a_malformed_request_is_one_warning_line_not_a_traceback(served: ServedHub) -> None:
    served.send("GET /api/workers HTTP/1.1 junk\r\nHost: h\r\n\r\n")
    served.send("GET /api/workers HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n")
    log = served.stop()
    assert "Traceback" not in log, log
    assert " ERROR " not in log, log
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) == 2, log
    assert "malformed request from 127.0.0.1, answered 400: Bad status line" in warnings[0]
    assert "HTTP/1.1 junk" in warnings[0]  # what was wrong, on the one line
    assert "Invalid header token: b'Bad Header'" in warnings[1], warnings
