"""A throwaway PostgreSQL server for the store's tests: its own cluster in a
temporary folder, run as an unprivileged user (postgres refuses root), on a
free loopback port, stopped at the end of the session.

Needs Debian's ``postgresql`` package (``.ci/run`` installs it); without it the
tests that ask for PostgreSQL fail saying so, never skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

UNPRIVILEGED = "nobody"


def _debian_version(path: str) -> tuple[int, ...]:
    """/usr/lib/postgresql/15/bin/initdb -> (15,): versions compare as numbers (9.6 < 15)."""
    version = Path(path).parts[-3]
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _binary(name: str) -> str:
    """``name`` on PATH, else in Debian's /usr/lib/postgresql/VERSION/bin (the newest),
    which is where the postgresql package puts it without linking it onto PATH."""
    debian = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_debian_version)
    found = shutil.which(name) or (debian[-1] if debian else None)
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed: apt-get install postgresql (see .ci/run)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """``start()`` a cluster; ``url(database)`` for SQLAlchemy; ``stop()`` removes it."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tentacle-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self._as_user: list[str] = []

    def _run(self, *command: str, timeout: float = 120) -> None:
        subprocess.run([*self._as_user, *command], check=True, capture_output=True, timeout=timeout)

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", UNPRIVILEGED, "--"]
        self._run(
            _binary("initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.resume()
        return self

    def pause(self) -> None:
        """Stop the server, keeping its data (a database outage); ``resume`` restarts it."""
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server on its data (after ``start`` made it, or ``pause`` stopped it)."""
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "60",
                  "-l", str(self.folder / "log"), "start")  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the cluster at once: a throwaway one needs no clean shutdown. Bounded:
        if pg_ctl does not see it gone within seconds, the postmaster is killed."""
        try:
            self._run(
                _binary("pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "-t",
                "15",
                "stop",
                timeout=20,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._kill_postmaster()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)


async def fresh_database(server: PostgresServer, name: str, template: str | None = None) -> str:
    """A new database named ``name`` on ``server``, empty or a copy of ``template``;
    returns its URL."""
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(host="127.0.0.1", port=server.port, user="postgres")
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        copy = f' TEMPLATE "{template}"' if template else ""
        await connection.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await connection.close()
    return server.url(name)
