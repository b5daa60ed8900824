"""`make deb`: the package built once per run, its contents and control fields read
with dpkg-deb, installed with dpkg on this machine, run, then purged; and the
maintainer scripts' service handling against a recording systemctl."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent import __version__

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "packaging" / "deb"
IS_ROOT = os.geteuid() == 0
# building the package (a venv of every dependency, compressed) takes minutes on a
# loaded machine; the bound covers the fixture that builds it too
pytestmark = pytest.mark.timeout(600)
needs_dpkg = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None, reason="dpkg-deb is missing (Debian's dpkg)"
)


def run(*command: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, **kwargs
    )  # type: ignore[call-overload]
    if check:
        assert completed.returncode == 0, completed
    return completed  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/tentacle_<version>_<arch>.deb from `make deb`, built once per test run:
    the xdist workers of one run share it (built under a lock by the first)."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"solo-{os.getpid()}")
    shared = tmp_path_factory.getbasetemp().parent / f"deb-{run_id}"
    shared.mkdir(exist_ok=True)
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = shared / "built"
        if not built.exists():
            run("make", "-C", str(ROOT), "deb")
            arch = run("dpkg", "--print-architecture").stdout.strip()
            built.write_text(str(ROOT / "dist" / f"tentacle_{__version__}_{arch}.deb"))
    path = Path(built.read_text())
    assert path.is_file(), path
    return path


@needs_dpkg
def test_the_control_fields(deb: Path) -> None:
    fields = run("dpkg-deb", "-f", str(deb)).stdout
    arch = run("dpkg", "--print-architecture").stdout.strip()
    assert "Package: tentacle\n" in fields
    assert f"Version: {__version__}\n" in fields
    assert f"Architecture: {arch}\n" in fields
    depends = run("dpkg-deb", "-f", str(deb), "Depends").stdout.strip()
    # the venv is of this python3.11: its site-packages and extensions are 3.11's
    assert depends == "python3 (>= 3.11), python3 (<< 3.12), adduser"
    assert int(run("dpkg-deb", "-f", str(deb), "Installed-Size").stdout) > 1000


@needs_dpkg
def test_the_contents(deb: Path, tmp_path: Path) -> None:
    listing = run("dpkg-deb", "-c", str(deb)).stdout.splitlines()
    names = {line.split()[5] for line in listing}
    for wanted in (
        "./opt/tentacle/bin/tentacle",
        "./opt/tentacle/pyvenv.cfg",
        "./lib/systemd/system/tentacle@.service",
        "./lib/systemd/system/tentacle-hub.service",
        "./etc/tentacle/",
    ):
        assert wanted in names, wanted
    assert any(
        line.endswith("./usr/bin/tentacle -> /opt/tentacle/bin/tentacle") for line in listing
    )
    assert {line.split()[1] for line in listing} == {"root/root"}
    # the venv names its final place, never the staging folder it was built in
    run("dpkg-deb", "-x", str(deb), str(tmp_path))
    app = tmp_path / "opt" / "tentacle"
    for script in ("tentacle", "alembic"):
        first = (app / "bin" / script).read_text().splitlines()[0]
        assert first == "#!/opt/tentacle/bin/python3", (script, first)
    assert "command = /usr/bin/python3 -m venv /opt/tentacle" in (app / "pyvenv.cfg").read_text()
    stray = run("grep", "-rlI", "-F", str(tmp_path), str(app), check=False)
    assert stray.stdout == "", stray.stdout
    assert list(app.rglob("site-packages/agent/systemd/tentacle@.service"))  # tentacle service


@needs_dpkg
@pytest.mark.skipif(not IS_ROOT, reason="dpkg -i and --purge need root")
def test_installed_it_runs_and_a_purge_leaves_nothing(deb: Path) -> None:
    assert run("dpkg", "-s", "tentacle", check=False).returncode != 0, (
        "a tentacle package is installed already: this test would remove it"
    )
    for folder in ("/etc/tentacle", "/var/lib/tentacle", "/opt/tentacle"):
        if os.path.lexists(folder):  # a purge removes them: never someone else's
            pytest.skip(f"{folder} exists already on this machine: a purge would remove it")
    try:
        installed = run("dpkg", "-i", str(deb))
        hint = "no instance is configured, so nothing was started"
        assert hint in installed.stdout, (installed, list(Path("/etc/tentacle").rglob("*")))
        version = run("/usr/bin/tentacle", "version").stdout
        assert __version__ in version, version
        user = run("getent", "passwd", "tentacle").stdout.strip().split(":")
        assert int(user[2]) < 1000  # a system user
        assert user[5] == "/var/lib/tentacle"
        # the system user runs it too (no bytecode to write where it may not)
        as_user = run("runuser", "-u", "tentacle", "--", "/usr/bin/tentacle", "version")
        assert __version__ in as_user.stdout
        assert Path("/etc/tentacle").is_dir()
    finally:
        purged = run("dpkg", "--purge", "tentacle", check=False)
    assert purged.returncode == 0, purged
    for gone in ("/opt/tentacle", "/usr/bin/tentacle", "/etc/tentacle", "/var/lib/tentacle",
                 "/lib/systemd/system/tentacle@.service"):  # fmt: skip
        assert not os.path.lexists(gone), gone
    assert run("getent", "passwd", "tentacle", check=False).returncode == 2
    assert run("getent", "group", "tentacle", check=False).returncode == 2


def maintainer_script(
    tmp_path: Path, script: str, *arguments: str, systemd: bool = True
) -> list[str]:
    """Run packaging/deb/SCRIPT ARGUMENTS as dpkg would, with a systemctl that records
    its calls first on PATH and, with ``systemd``, /run/systemd/system present (in a
    private mount namespace: the machine's /run is not touched); the calls made."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    calls.write_text("")
    (fake / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (fake / "systemctl").chmod(0o755)
    for name in ("adduser", "getent"):  # "the user exists": no user is made here
        (fake / name).write_text("#!/bin/sh\nexit 0\n")
        (fake / name).chmod(0o755)
    command = f'"{SCRIPTS / script}" ' + " ".join(f'"{a}"' for a in arguments)
    if systemd:
        command = f"mount -t tmpfs none /run/systemd && mkdir /run/systemd/system && {command}"
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    run("unshare", "--mount", "sh", "-c", command, env=env)
    return calls.read_text().splitlines()


needs_namespace = pytest.mark.skipif(
    not IS_ROOT or shutil.which("unshare") is None,
    reason="a private mount namespace (unshare --mount) needs root",
)


@needs_namespace
def test_an_upgrade_restarts_only_the_running_agents(tmp_path: Path) -> None:
    calls = maintainer_script(tmp_path, "postinst", "configure", "0.0.9")
    assert calls == ["daemon-reload", "try-restart tentacle@*.service tentacle-hub.service"]
    # and the old version's prerm stops nothing on the way
    assert maintainer_script(tmp_path, "prerm", "upgrade", __version__) == []


@needs_namespace
def test_a_first_install_starts_nothing(tmp_path: Path) -> None:
    assert maintainer_script(tmp_path, "postinst", "configure", "") == ["daemon-reload"]


@needs_namespace
def test_without_systemd_the_scripts_call_no_systemctl(tmp_path: Path) -> None:
    assert maintainer_script(tmp_path, "postinst", "configure", "0.0.9", systemd=False) == []
    assert maintainer_script(tmp_path, "prerm", "remove", systemd=False) == []


@needs_namespace
def test_a_removal_stops_the_agents(tmp_path: Path) -> None:
    assert maintainer_script(tmp_path, "prerm", "remove") == [
        "stop tentacle@*.service tentacle-hub.service"
    ]
    assert maintainer_script(tmp_path, "postrm", "remove") == ["daemon-reload"]
