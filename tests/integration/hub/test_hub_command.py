"""The hub's own verbs as a person runs them: create, create-api-key, show-thumbprint,
serve until SIGTERM; on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.helpers.cli import TentacleCli
from tests.helpers.postgres import PostgresServer, fresh_database

READY = re.compile(r"Hub listening on: (https://127\.0\.0\.1:\d+/)")


def test_a_hub_is_created_once_and_its_key_printed_once(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    home = tmp_path / "hub"
    created = tentacle.ok("hub", "create", "--home", str(home))
    assert f"Created a hub in {home}" in created.out
    for name in ("hub.yaml", "identity.pem", "hub.db"):
        assert (home / name).stat().st_mode & 0o077 == 0, name  # nothing for others to read
    again = tentacle.fails("hub", "create", "--home", str(home))
    assert "a hub already exists" in again.err
    key = tentacle.ok("hub", "create-api-key", "--home", str(home), "--name", "ci").out.strip()
    assert re.fullmatch(r"API-[A-Z0-9]{32}", key)
    assert key.encode() not in (home / "hub.db").read_bytes()  # only its hash is kept
    taken = tentacle.fails("hub", "create-api-key", "--home", str(home), "--name", "ci")
    assert "exists already" in taken.err
    shown = tentacle.ok("hub", "show-thumbprint", "--home", str(home), "--format", "json").json()
    assert re.fullmatch(r"[0-9A-F]{40}", shown["Thumbprint"])
    assert shown["HttpsThumbprint"] is None  # HTTPS on the hub's own certificate
    assert shown["Thumbprint"] in created.out


def test_serve_answers_and_stops_cleanly_on_sigterm(tentacle: TentacleCli, tmp_path: Path) -> None:
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
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = (
            ssl.CERT_NONE
        )  # the root document is public; pinning is tested elsewhere
        with urllib.request.urlopen(match.group(1) + "api", context=context, timeout=30) as r:
            root = json.load(r)
        assert root["Application"] == "Tentacle Hub"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert "Traceback" not in process.stderr.read()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()


def test_a_hub_is_created_on_postgresql(
    tentacle: TentacleCli, tmp_path: Path, postgres: PostgresServer
) -> None:
    import asyncio

    url = asyncio.run(fresh_database(postgres, "created_by_the_command"))
    home = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home), "--database", url)
    assert not (home / "hub.db").exists()
    assert url in (home / "hub.yaml").read_text()
    key = tentacle.ok("hub", "create-api-key", "--home", str(home), "--name", "pg").out.strip()
    assert key.startswith("API-")


def test_an_unreachable_database_is_one_clear_line(tentacle: TentacleCli, tmp_path: Path) -> None:
    result = tentacle.fails(
        "hub", "create", "--home", str(tmp_path / "hub"),
        "--database", "postgresql://hub:secret@127.0.0.1:1/hub",
    )  # fmt: skip
    assert "cannot open the database" in result.err
    assert "secret" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "hub").exists()  # nothing half-made: the next attempt may succeed
    tentacle.ok("hub", "create", "--home", str(tmp_path / "hub"))
