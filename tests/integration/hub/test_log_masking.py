"""Whatever a request carries, the hub's own log never shows an API key: not even
the lines aiohttp writes itself about a request it could not parse."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

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


def test_a_request_too_long_to_parse_does_not_put_its_key_in_the_log(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    home = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home))
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "hub", "serve", "--home", str(home), "--listen",
         "127.0.0.1:0", "--polling-port", "0"],
        env=tentacle.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = READY.search(line)
        assert match, f"no readiness line, got {line!r}"
        port = int(match.group(1))
        # beyond every limit the hub raises aiohttp's parser to, so aiohttp answers itself
        target = f"/api/{KEY}?apikey={KEY}&pad=" + "x" * 70_000
        answer = _send_raw(port, f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        assert b" 400 " in answer.split(b"\r\n", 1)[0], answer[:200]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        log = process.stderr.read()  # type: ignore[union-attr]
        assert "K" * 20 not in log, log[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
