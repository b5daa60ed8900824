"""tentacle service: units written from the templates, verified by systemd-analyze, and
systemctl driven through a recording stand-in (systemd does not run here)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli.units import hub_unit_text
from agent.scripts.runner import installed_executable
from tests.helpers import users
from tests.helpers.cli import Result, TentacleCli

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (chown, useradd)")
UNIT = "tentacle@agent-one.service"

# a shell script, not Python: it starts in a millisecond. Each call is one line of
# tab-separated arguments; FAKE_SYSTEMCTL_FAIL="VERB CODE" makes VERB exit CODE.
FAKE_SYSTEMCTL = r"""#!/bin/sh
{ printf '%s\t' "$@"; printf '\n'; } >> "$FAKE_SYSTEMCTL_LOG"
if [ "$1" = status ]; then
    echo "* $3 - Tentacle worker agent (instance agent-one)"
    echo "     Active: inactive (dead)"
fi
if [ -n "$FAKE_SYSTEMCTL_FAIL" ] && [ "$1" = "${FAKE_SYSTEMCTL_FAIL%% *}" ]; then
    exit "${FAKE_SYSTEMCTL_FAIL#* }"
fi
exit 0
"""


class Service:
    """`tentacle service` with a recording systemctl first on PATH and a unit folder."""

    def __init__(self, tentacle: TentacleCli, root: Path) -> None:
        self.tentacle = tentacle
        self.units = root / "units"
        self.log = root / "systemctl.log"
        bin_folder = root / "bin"
        bin_folder.mkdir()
        fake = bin_folder / "systemctl"
        fake.write_text(FAKE_SYSTEMCTL)
        fake.chmod(0o755)
        self.env = {
            "PATH": f"{bin_folder}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "TENTACLE_SYSTEMD_UNIT_DIR": str(self.units),
            "FAKE_SYSTEMCTL_LOG": str(self.log),
        }

    def run(self, *args: str, fail: str = "") -> Result:
        env = {**self.env, "FAKE_SYSTEMCTL_FAIL": fail}
        return self.tentacle.run("service", "--instance", "Agent One", *args, env=env)

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split("\t")[:-1] for line in self.log.read_text().splitlines()]

    def unit(self) -> str:
        return (self.units / UNIT).read_text()


@pytest.fixture
def service(tentacle: TentacleCli, tmp_path: Path) -> Service:
    tentacle.ok("create-instance", "--instance", "Agent One")
    return Service(tentacle, tmp_path)


@pytest.fixture
def throwaway_user() -> Iterator[pwd.struct_passwd]:
    """An unprivileged user with a home under /home, removed afterwards (nothing runs
    as it here: the unit is only written and verified)."""
    if not ROOT:
        pytest.skip("creating a user needs root")
    with users.throwaway_user("ts") as user:
        yield user


def verify(unit: Path) -> None:
    """systemd-analyze verify, for real: exit 0 and not one complaint about the unit
    (an unknown directive is only a warning, so the output must be empty too)."""
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: run .ci/system-deps"
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit.parent}:"}, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stdout + result.stderr) == (0, ""), unit.read_text()


def directives(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if "=" in line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_install_writes_a_unit_that_verifies_then_reloads_and_enables(service: Service) -> None:
    result = service.run("--install")
    assert result.code == 0, result
    assert service.calls() == [["daemon-reload"], ["enable", UNIT]]
    unit = service.units / UNIT
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    verify(unit)
    values = directives(service.unit())
    home = service.tentacle.config_home / "agent-one"
    assert values["ExecStart"] == f"{installed_executable()} agent --instance %i"
    assert os.path.isabs(values["ExecStart"].split()[0])
    assert values["User"] == "root"
    assert values["Environment"] == f'"TENTACLE_CONFIG_HOME={service.tentacle.config_home}"'
    assert values["ReadWritePaths"] == str(home)
    for key, value in {"Type": "notify", "KillMode": "process", "Delegate": "yes",
                       "RestartPreventExitStatus": "3", "Restart": "on-failure",
                       "NoNewPrivileges": "yes", "ProtectSystem": "no"}.items():  # fmt: skip
        assert values[key] == value, key
    # longer than the agent's default grace, so that systemd never kills a draining agent
    assert int(values["TimeoutStopSec"].removesuffix("s")) > 30


@needs_root
def test_a_non_root_user_gets_its_home_and_a_tighter_unit_that_verifies(
    service: Service, throwaway_user: pwd.struct_passwd
) -> None:
    result = service.run("--install", "--username", throwaway_user.pw_name)
    assert result.code == 0, result
    verify(service.units / UNIT)
    values = directives(service.unit())
    assert values["User"] == throwaway_user.pw_name
    assert values["ProtectSystem"] == "full"
    assert values["ProtectHome"] == "read-only"
    home = service.tentacle.config_home / "agent-one"
    assert values["ReadWritePaths"] == f"{home} -{throwaway_user.pw_dir}"
    index_entry = service.tentacle.config_home / "instances" / "agent-one.json"
    for path in [home, *home.rglob("*"), index_entry]:
        assert path.stat().st_uid == throwaway_user.pw_uid, path
    assert f"{home} now belongs to {throwaway_user.pw_name}" in result.out


def test_paths_with_blanks_and_percent_signs_stay_literal(
    tentacle: TentacleCli, tmp_path: Path
) -> None:
    home = tmp_path / "odd 100% home"
    tentacle.ok("create-instance", "--instance", "Agent One", "--home", str(home))
    service = Service(tentacle, tmp_path)
    assert service.run("--install").code == 0
    verify(service.units / UNIT)
    assert directives(service.unit())["ReadWritePaths"].startswith(f'"{tmp_path}/odd 100%% home"')


def test_the_hub_unit_verifies(tmp_path: Path) -> None:
    unit = tmp_path / "tentacle-hub.service"
    unit.write_text(hub_unit_text(installed_executable(), tmp_path / "hub", "root"))
    verify(unit)
    values = directives(unit.read_text())
    assert values["ExecStart"].endswith(f"hub serve --home {tmp_path / 'hub'}")
    assert values["ReadWritePaths"] == str(tmp_path / "hub")
    assert values["Type"] == "notify"


def test_verify_does_catch_a_unit_that_cannot_run(tmp_path: Path) -> None:
    """The check above is not a rubber stamp: a missing program fails it."""
    unit = tmp_path / "tentacle-hub.service"
    unit.write_text(hub_unit_text("/nonexistent/tentacle", tmp_path / "hub", "root"))
    with pytest.raises(AssertionError, match="nonexistent"):
        verify(unit)


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_start_stop_and_restart_are_one_systemctl_call_each(service: Service, action: str) -> None:
    assert service.run(f"--{action}").code == 0
    assert service.calls() == [[action, UNIT]]


def test_install_then_start_in_that_order(service: Service) -> None:
    assert service.run("--start", "--install").code == 0
    assert service.calls() == [["daemon-reload"], ["enable", UNIT], ["start", UNIT]]


def test_status_shows_systemctls_output_and_passes_its_exit_code_on(service: Service) -> None:
    result = service.run("--status", fail="status 3")
    assert result.code == 3
    assert "Active: inactive (dead)" in result.out
    assert service.calls() == [["status", "--no-pager", UNIT]]


def test_a_failing_systemctl_call_is_named_and_its_code_passed_on(service: Service) -> None:
    result = service.run("--install", fail="enable 5")
    assert result.code == 5, result
    assert f"error: systemctl enable {UNIT} failed (exit 5)" in result.err
    assert "Traceback" not in result.err


def test_uninstall_disables_stops_and_removes_the_unit(service: Service) -> None:
    assert service.run("--install").code == 0
    result = service.run("--uninstall")
    assert result.code == 0, result
    assert not (service.units / UNIT).exists()
    assert service.calls()[2:] == [["disable", "--now", UNIT], ["daemon-reload"]]


def test_uninstalling_what_is_not_installed_says_so(service: Service) -> None:
    result = service.run("--uninstall")
    assert result.code == 1
    assert f"{UNIT} is not installed: there is no {service.units / UNIT}" in result.err
    assert service.calls() == []


def test_an_unknown_user_is_refused_before_anything_is_written(service: Service) -> None:
    result = service.run("--install", "--username", "no-such-user-here")
    assert result.code == 1
    assert "no user named 'no-such-user-here'" in result.err
    assert "useradd" in result.err
    assert not service.units.exists()
    assert service.calls() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give an action: --install"),
        (("--install", "--uninstall"), "--install and --uninstall cannot be given together"),
        (("--start", "--stop"), "--start and --stop cannot be given together"),
        (("--start", "--username", "root"), "--username goes with --install"),
    ],
)
def test_bad_combinations_are_usage_errors(
    service: Service, args: tuple[str, ...], message: str
) -> None:
    result = service.run(*args)
    assert result.code == 2, result
    assert message in result.err
    assert service.calls() == []


def test_an_unknown_instance_is_named(service: Service) -> None:
    result = service.tentacle.run("service", "--instance", "nope", "--start", env=service.env)
    assert result.code == 1
    assert "unknown instance 'nope'" in result.err


def test_without_systemctl_the_error_says_systemd_is_needed(
    service: Service, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = service.tentacle.run("service", "--instance", "Agent One", "--start",
                                  env={**service.env, "PATH": str(empty)})  # fmt: skip
    assert result.code == 1
    assert "systemctl is not on PATH" in result.err
