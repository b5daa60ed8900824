"""`make demo`'s script, run as a person runs it: a hub, a listening and a polling
agent registered into the default pool, both health-checked Healthy, all stopped."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """The demo's TMPDIR: a folder others may search, as /tmp is on a person's machine
    (pytest's are root's alone, and as root the demo's scripts run as other uids)."""
    folder = Path(tempfile.mkdtemp(prefix="demo-", dir="/tmp"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(300)  # the demo's own bound (240 s) is the one that matters
def test_the_demo_runs_to_the_end_with_both_workers_healthy(tmp_path: Path, open_tmp: Path) -> None:
    """Run as ``DEMO_KEEP=1 make demo``: it stops at the web page's address, the page
    is served there, and a Ctrl-C (SIGINT) lets it go on to stop everything cleanly.
    As root its scripts run as their isolation groups' uids (TENTACLE_ variables are
    not passed: ScriptUsers is on)."""
    errors = tmp_path / "demo.stderr"
    tmp_path = open_tmp
    env = {key: value for key, value in os.environ.items() if not key.startswith("TENTACLE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TMPDIR"] = str(tmp_path)
    env["DEMO_KEEP"] = "1"
    with (
        errors.open("w") as stderr,
        subprocess.Popen(
            ["bash", str(ROOT / "demo" / "demo.sh")],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        ) as demo,
    ):
        try:
            head = _until_kept(demo)
            _assert_page_served(head)
            os.killpg(demo.pid, signal.SIGINT)  # a Ctrl-C at a terminal: the whole group
            rest, _ = demo.communicate(timeout=120)
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGKILL)
    out = head + rest
    assert demo.returncode == 0, out[-3000:] + errors.read_text()[-3000:]
    assert re.search(r"ServerTasks-\d+ Success in", out), out[-3000:]
    table = out.split("== The workers, both Healthy", 1)[1].split("==", 1)[0]
    assert re.search(r"demo-listening\s+Workers-\d+\s+Healthy", table), table
    assert re.search(r"demo-polling\s+Workers-\d+\s+Healthy", table), table
    tasks = out.split("== A script task on every worker", 1)[1].split("\n==", 1)[0]
    assert "[demo-listening]" in tasks, tasks
    assert "[demo-polling]" in tasks, tasks
    deployed = out.split("== A deployment through the hub", 1)[1].split("\n==", 1)[0]
    assert "Deployed to both workers through the hub" in deployed, deployed
    assert "correct horse" not in out + errors.read_text()  # the demo's sensitive value
    stopping = out.split("== Everything stops cleanly on SIGTERM", 1)[1]
    assert (stopping.count("agent stopped"), stopping.count("hub stopped")) == (2, 1), stopping
    assert list(tmp_path.iterdir()) == [], "the demo leaves its temporary folder behind"


KEPT = "press Ctrl-C to stop them"


def _until_kept(demo: subprocess.Popen[str]) -> str:
    """The demo's output up to the line that says it keeps running (the demo's own
    240 s bound is the test's: pytest's timeout ends a demo that never gets there)."""
    assert demo.stdout is not None
    lines = []
    for line in demo.stdout:
        lines.append(line)
        if KEPT in line:
            return "".join(lines)
    raise AssertionError("the demo ended before keeping its hub running:\n" + "".join(lines))


def _assert_page_served(out: str) -> None:
    """The address printed serves the page, from the hub whose thumbprint it printed."""
    page = re.search(r"^Web page: https://(127\.0\.0\.1):(\d+)(/app/)$", out, re.MULTILINE)
    assert page, out[-3000:]
    assert re.search(r"^Sign in with the API key: API-[A-Z0-9]{26,}$", out, re.MULTILINE), out
    printed = re.search(r"its thumbprint is ([0-9A-F]{40})", out)
    assert printed, out[-3000:]
    host, port, path = page.group(1), int(page.group(2)), page.group(3)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # pinned below, by the thumbprint the demo printed
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=30)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        assert connection.sock is not None
        der = connection.sock.getpeercert(binary_form=True)
        assert der is not None
        thumbprint = hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()
        assert thumbprint == printed.group(1)
        assert answer.status == 200
        assert b"<html" in answer.read()
    finally:
        connection.close()
