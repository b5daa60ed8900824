"""Run the real `tentacle` command in a child process, in a private config home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


# Hubs of the tests: the built-in worker's steps as the hub's user (pytest's folders are
# root's alone); tests/integration/hub/test_builtin_script_users.py turns it on
HUB_TEST_ENV = {"TENTACLE_HUB_BUILTIN_WORKER_SCRIPT_USERS": "off"}


class TentacleCli:
    """`tentacle` with TENTACLE_CONFIG_HOME pointing into a test's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_home = root / "config"
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith("TENTACLE_")
        }
        self.env["TENTACLE_CONFIG_HOME"] = str(self.config_home)
        # pytest's folders are root's alone (0700): a script run as its isolation group's
        # uid could not reach a workspace there. Tests of that set it on, in a folder
        # others may search (tests/integration/scripts/test_script_users.py).
        self.env["TENTACLE_SCRIPT_USERS"] = "off"
        self.env.update(HUB_TEST_ENV)  # and the hub's built-in worker's steps likewise

    def run(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        completed = subprocess.run(
            [sys.executable, "-m", "agent", *args],
            env={**self.env, **(env or {})},
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return Result(completed.returncode, completed.stdout, completed.stderr)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """Run and require exit code 0."""
        result = self.run(*args, env=env)
        assert result.code == 0, f"tentacle {' '.join(args)} failed: {result}"
        return result

    def fails(self, *args: str, code: int = 1, env: dict[str, str] | None = None) -> Result:
        """Run and require the given failure code, one clear line and no traceback."""
        result = self.run(*args, env=env)
        assert result.code == code, f"expected exit {code}: {result}"
        assert "Traceback" not in result.err, result.err
        assert result.err.strip(), "a failure must say why on stderr"
        return result
