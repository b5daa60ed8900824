"""Sensitive variables stay off the worker's disk, and a stopped step leaves no files.

The real `tentacle calamari` executor runs a real script that reads a
sensitive variable and then blocks opening a FIFO nobody writes to; while it
blocks, every regular file under the TMPDIR the test sets and under the
workspace is searched for the secret and its base64; then the executor gets
SIGTERM and must forward it, wait and remove its private folder.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers.cli import TentacleCli

SECRET = "pa55word-S3cret!"
READY = "ready"
PADDING = "." * 200  # pushes READY past what the masker holds back for the secret's forms

BASH = f"""
value=$(get_octopusvariable Password)
echo "length: ${{#value}}"
echo {READY}
echo {PADDING}
read -r _ < "$BLOCK_ON"
echo "never: the FIFO has no writer"
"""

PYTHON = f"""
import os
print("length:", len(get_octopusvariable("Password")), flush=True)
print("{READY}", flush=True)
print("{PADDING}", flush=True)
open(os.environ["BLOCK_ON"]).read()
print("never: the FIFO has no writer")
"""


def forms(secret: str) -> list[bytes]:
    """The secret as written and as base64 (padded or not)."""
    encoded = base64.b64encode(secret.encode())
    return [secret.encode(), encoded, encoded.rstrip(b"=")]


def files_holding(secret: str, *roots: Path) -> list[str]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():  # not the FIFO: reading it would block
                data = path.read_bytes()
                found += [f"{path}: {form!r}" for form in forms(secret) if form in data]
    return found


class Step:
    """A private TMPDIR, a workspace, a FIFO to block on and the variables file (kept
    outside both: it is the test's input, not something the executor wrote)."""

    def __init__(self, root: Path) -> None:
        self.tmp = root / "tmp"
        self.workspace = root / "workspace"
        self.inputs = root / "inputs"
        for folder in (self.tmp, self.workspace, self.inputs):
            folder.mkdir()
        self.fifo = root / "block"
        os.mkfifo(self.fifo)
        self.variables = self.inputs / "variables.json"
        self.variables.write_text(json.dumps([
            {"name": "Password", "value": SECRET, "sensitive": True},
            {"name": "Greeting", "value": "hello"},
        ]))  # fmt: skip

    def start(self, tentacle: TentacleCli, *args: str) -> subprocess.Popen[str]:
        env = {**tentacle.env, "TMPDIR": str(self.tmp), "BLOCK_ON": str(self.fifo)}
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "calamari", *args, "--variables", str(self.variables)],
            env=env, cwd=self.workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def check_while_blocked_then_stop(self, process: subprocess.Popen[str]) -> str:
        """Wait for READY, search the files, SIGTERM; returns the output before READY."""
        assert process.stdout is not None
        seen = []
        for line in process.stdout:  # ends at EOF if the executor dies early
            if line.rstrip("\n") == READY:
                break
            seen.append(line)
        else:
            process.kill()
            pytest.fail(f"no {READY!r} line: {''.join(seen)} {process.communicate()}")
        assert list(self.tmp.glob("tentacle-script-*")), "the private folder is in our TMPDIR"
        assert files_holding(SECRET, self.tmp, self.workspace) == []
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 128 + signal.SIGTERM, (out, err)
        assert "Traceback" not in err, err
        assert "never" not in out
        assert list(self.tmp.glob("tentacle-script-*")) == [], "the folder is removed on SIGTERM"
        return "".join(seen)


@pytest.mark.parametrize(("name", "body"), [("step.sh", BASH), ("step.py", PYTHON)])
def test_run_script_keeps_secrets_off_disk_and_cleans_up_on_sigterm(
    tentacle: TentacleCli, tmp_path: Path, name: str, body: str
) -> None:
    step = Step(tmp_path)
    script = step.workspace / name
    script.write_text(body)
    process = step.start(tentacle, "run-script", "--script", str(script))
    before = step.check_while_blocked_then_stop(process)
    assert f"length: {len(SECRET)}\n" in before  # the script did get the value


def test_deploy_package_keeps_secrets_off_disk_and_cleans_up_on_sigterm(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    step = Step(tmp_path)
    package = step.inputs / "Acme.Web.1.0.0.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("Deploy.sh", BASH)
    apps = step.workspace / "apps"
    process = step.start(tentacle, "deploy-package", "--package", str(package),
                         "--install-dir", str(apps))  # fmt: skip
    before = step.check_while_blocked_then_stop(process)
    assert f"length: {len(SECRET)}\n" in before
