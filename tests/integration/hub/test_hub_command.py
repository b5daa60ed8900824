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
    assert "Warning" not in created.err, created.err  # a library's warnings are not for people
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


async def test_a_new_home_on_a_database_that_holds_a_hub_joins_it_only_when_asked(
    tentacle: TentacleCli, tmp_path: Path, postgres: PostgresServer
) -> None:
    """A mistyped --database must not silently make this home a node of another hub:
    refused, naming the hub found; --join makes it another node (as several nodes on
    one PostgreSQL will be), saying so; --join on a database without a hub is refused."""
    import asyncio

    from agent.hub.store.records import fact
    from tests.helpers.hub import running_hub

    url = await fresh_database(postgres, "joined_by_a_second_home")
    async with running_hub(tmp_path, url) as hub:
        status, worker = await hub.api.request("POST", "/api/workers", json={
            "Name": "w", "Thumbprint": "CD" * 20, "WorkerPoolIds": ["WorkerPools-1"],
            "Endpoint": {"CommunicationStyle": "TentaclePassive",
                         "Uri": "https://127.0.0.1:1/"}})  # fmt: skip
        assert status == 201, worker
        async with hub.server.store.connect() as conn:  # type: ignore[union-attr]
            installation = await fact(conn, "InstallationId")
    second = tmp_path / "second"
    refused = await asyncio.to_thread(
        tentacle.fails, "hub", "create", "--home", str(second), "--database", url
    )
    assert refused.err.strip() == (
        f"error: the database already holds a hub (InstallationId {installation}, 1 worker):"
        " add --join to make this home another node of that hub, or give --database a new"
        " database"
    )
    assert not second.exists()
    joined = await asyncio.to_thread(
        tentacle.ok, "hub", "create", "--home", str(second), "--database", url, "--join"
    )
    assert joined.out.splitlines()[:2] == [
        f"Created a home in {second} for another node of InstallationId {installation}, 1 worker",
        "Each node serving this database needs its own NodeName: tentacle hub configure"
        f" --home {second} --node-name NAME",
    ]
    empty = await fresh_database(postgres, "nothing_to_join")
    nothing = await asyncio.to_thread(
        tentacle.fails, "hub", "create", "--home", str(tmp_path / "third"), "--database",
        empty, "--join",
    )  # fmt: skip
    assert nothing.err.strip() == (
        "error: the database holds no hub to join: leave out --join to create one"
    )
