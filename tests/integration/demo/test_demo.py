"""`make demo`'s script, run as a person runs it: a hub, a listening and a polling
agent registered into the default pool, both health-checked Healthy, all stopped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(300)  # the demo's own bound (240 s) is the one that matters
def test_the_demo_runs_to_the_end_with_both_workers_healthy(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TENTACLE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        ["bash", str(ROOT / "demo" / "demo.sh")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"ServerTasks-\d+ Success in", out), out[-3000:]
    table = out.split("== The workers, both Healthy", 1)[1].split("==", 1)[0]
    assert re.search(r"demo-listening\s+Workers-\d+\s+Healthy", table), table
    assert re.search(r"demo-polling\s+Workers-\d+\s+Healthy", table), table
    tasks = out.split("== A script task on every worker", 1)[1].split("\n==", 1)[0]
    assert "[demo-listening]" in tasks, tasks
    assert "[demo-polling]" in tasks, tasks
    deployed = out.split("== A deployment through the hub", 1)[1].split("\n==", 1)[0]
    assert "Deployed to both workers through the hub" in deployed, deployed
    assert "correct horse" not in out + done.stderr  # the demo's sensitive value
    stopping = out.split("== Everything stops cleanly on SIGTERM", 1)[1]
    assert (stopping.count("agent stopped"), stopping.count("hub stopped")) == (2, 1), stopping
    assert list(tmp_path.iterdir()) == [], "the demo leaves its temporary folder behind"
