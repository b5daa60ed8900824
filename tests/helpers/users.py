"""Throwaway unprivileged users for tests that need another uid (they run as root, as CI does)."""

from __future__ import annotations

import pwd
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def throwaway_user(prefix: str) -> Iterator[pwd.struct_passwd]:
    """A new user ``<prefix><8 hex>`` with a home of its own, and /bin/sh; afterwards
    whatever still runs as it is killed, then the user and its home are removed."""
    name = f"{prefix}{secrets.token_hex(4)}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        # what its steps left running (a script polling for a file the test's cleanup
        # removed polls on forever), else userdel refuses and both outlive the test
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def kill_uids(uids: tuple[int, int]) -> None:
    """Kill whatever still runs as a uid of the range ``uids`` (first, last): the
    scripts a test's agents ran as their groups' uids."""
    for uid in range(uids[0], uids[1] + 1):
        subprocess.run(["pkill", "-KILL", "-U", str(uid)], check=False)
