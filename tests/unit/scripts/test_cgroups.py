"""agent.scripts.cgroups: what the agent may use, limits, counters, and the kill without
cgroup.kill. The cgroupfs parts run on the machine's real cgroups (as root, as CI)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config.model import coerce_cpu_weight, coerce_size
from agent.scripts import cgroups, runner
from agent.scripts.cgroups import Limits, ScriptGroup
from tests.helpers.eventually import eventually

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="cgroups need root (CI runs as root)")

MOUNTINFO = """\
24 30 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
26 24 0:24 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory
27 24 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
28 24 0:26 / /sys/fs/cgroup/freezer rw shared:13 - cgroup cgroup rw,freezer
"""
CGROUP = "9:name=systemd:/\n4:memory:/box/1\n2:cpu,cpuacct:/\n0::/system.slice/t.service\n"


def test_the_mounts_name_the_v2_hierarchy_and_the_limits_v1_controllers(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(MOUNTINFO)
    assert cgroups._mounts(tmp_path / "mountinfo") == {
        "cgroup2": Path("/sys/fs/cgroup/unified"),
        "memory": Path("/sys/fs/cgroup/memory"),
        "cpu": Path("/sys/fs/cgroup/cpu,cpuacct"),
    }
    assert cgroups._mounts(tmp_path / "missing") == {}


def test_the_own_cgroups_are_read_per_hierarchy(tmp_path: Path) -> None:
    (tmp_path / "cgroup").write_text(CGROUP)
    own = cgroups._own_cgroups(tmp_path / "cgroup")
    assert own[""] == "/system.slice/t.service"
    assert (own["memory"], own["cpu"], own["cpuacct"]) == ("/box/1", "/", "/")


def test_without_cgroup2_cgroups_are_unavailable(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(MOUNTINFO.replace("cgroup2 cgroup2", "ext4 /dev/x"))
    (tmp_path / "cgroup").write_text(CGROUP)
    with pytest.raises(cgroups.Unavailable, match="no cgroup v2 hierarchy is mounted"):
        cgroups.detect("x", tmp_path)


def test_a_folder_that_is_not_cgroupfs_is_unavailable(tmp_path: Path) -> None:
    fake = tmp_path / "fs"
    fake.mkdir()
    (fake / "cgroup.procs").write_text("")
    (tmp_path / "mountinfo").write_text(f"25 24 0:23 / {fake} rw - cgroup2 cgroup2 rw\n")
    (tmp_path / "cgroup").write_text("0::/\n")
    with pytest.raises(cgroups.Unavailable, match="is not a cgroup v2 folder"):
        cgroups.detect("x", tmp_path)


@needs_root
def test_an_unprivileged_agent_is_told_why_it_has_no_cgroups() -> None:
    """A real process of another uid against the machine's real cgroups."""
    code = "from agent.scripts import cgroups\ntry:\n    cgroups.detect('x')\n" \
           "except cgroups.Unavailable as why:\n    print(why)\n"  # fmt: skip
    setpriv = shutil.which("setpriv")  # util-linux
    if setpriv is None:
        pytest.skip("setpriv is needed to run a process as another user")
    done = subprocess.run([setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups",
                           sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parents[3])  # fmt: skip
    assert "no write access to the agent's cgroup" in done.stdout
    assert "(uid 65534): cgroups need root or a delegated subtree" in done.stdout


def test_a_call_asks_for_less_than_configured_never_more() -> None:
    configured = Limits(memory_bytes=100, pids=10, cpu_weight=50)
    assert Limits(200, 5, 300).within(configured) == Limits(100, 5, 300)
    assert Limits().within(configured) == configured
    assert Limits(7).within(Limits()) == Limits(7)
    assert not Limits()
    assert Limits(pids=3).describe() == "3 processes"


@pytest.mark.parametrize(
    ("typed", "size"), [("0", 0), ("512", 512), ("64k", 65536), ("512M", 512 << 20),
                        (" 2G ", 2 << 30), ("1t", 1 << 40), ("3kb", 3072), (12, 12)],
)  # fmt: skip
def test_sizes_take_units(typed: object, size: int) -> None:
    assert coerce_size(typed) == size


@pytest.mark.parametrize("typed", ["", "M", "-1", "1.5G", "12Q", True, -3])
def test_a_bad_size_names_what_was_expected(typed: object) -> None:
    with pytest.raises(ValueError, match=r"expected bytes \(e.g. 536870912 or 512M\)"):
        coerce_size(typed)


@pytest.mark.parametrize("typed", [-1, 10001, "x"])
def test_a_bad_cpu_weight_names_the_range(typed: object) -> None:
    with pytest.raises(ValueError, match="expected a CPU weight from 1 to 10000"):
        coerce_cpu_weight(typed)


def test_the_hits_come_from_the_event_counters(tmp_path: Path) -> None:
    v2, memory, pids = (tmp_path / name for name in ("v2", "memory", "pids"))
    for folder in (v2, memory, pids):
        folder.mkdir()
    group = ScriptGroup(v2, {"memory": memory, "pids": pids})
    assert group.hits() == cgroups.Hits(0, 0)
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (pids / "pids.events").write_text("max 5\n")
    assert group.hits() == cgroups.Hits(2, 5)
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\n")
    assert group.hits().oom_kills == 3


@pytest.fixture
def real_group() -> Iterator[ScriptGroup]:
    """A real v2 cgroup of this test's own (under the agent-like base this user may use)."""
    layout = cgroups.detect("unit-" + os.urandom(4).hex())
    trees = cgroups.ProcessTrees(layout)
    group = trees.create("k", Limits())
    try:
        yield group
    finally:
        group.kill()
        for _ in range(1000):
            if group.remove():
                break
        trees.close()


@needs_root
async def test_without_cgroup_kill_each_member_is_killed_frozen(real_group: ScriptGroup) -> None:
    """The kill for kernels before 5.14: a setsid daemon that double-forked dies too."""
    daemon = subprocess.Popen(
        ["sh", "-c", 'read -r go; (setsid sleep 3600 &); exec sleep 3600'],
        stdin=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        real_group.join(daemon.pid)
        assert daemon.stdin is not None
        daemon.stdin.write(b"go\n")
        daemon.stdin.close()
        await eventually(lambda: len(real_group.members()) == 2, "the daemon to fork")
        real_group.kill_each()
        await eventually(lambda: not real_group.populated(), "every member to die")
        assert daemon.wait() == -signal.SIGKILL
    finally:
        daemon.kill()
        daemon.wait()


@needs_root
def test_a_cgroup_with_a_process_left_is_not_removed(real_group: ScriptGroup) -> None:
    sleeper = subprocess.Popen(["sleep", "3600"])
    try:
        real_group.join(sleeper.pid)
        assert not real_group.remove()
        assert real_group.exists()
        assert real_group.members() == [sleeper.pid]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_failed_join_ends_the_wrapper_before_the_script_runs(tmp_path: Path) -> None:
    """The wrapper waits on its gate: a join that fails leaves nothing run, nothing recorded."""
    (tmp_path / "script.sh").write_text("touch ran\n")
    joined: list[int] = []

    def refuse(pid: int) -> None:
        joined.append(pid)
        raise PermissionError(13, "refused by the test")

    with pytest.raises(PermissionError, match="refused by the test"):
        runner.launch(tmp_path, "bash", [], {"PATH": os.environ["PATH"]}, join=refuse)
    assert len(joined) == 1
    assert runner.is_zombie(joined[0]), "reaped by launch: gone"
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / runner.PID_FILE).exists()
