"""configure, show-configuration and version through the real command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.cli import TentacleCli


@pytest.fixture
def pair(tentacle: TentacleCli) -> TentacleCli:
    """Two instances, a and b, each with a certificate exported to <root>/<name>.pem."""
    for name in ("a", "b"):
        tentacle.ok("create-instance", "--instance", name)
        tentacle.ok("new-certificate", "--instance", name)
        tentacle.ok(
            "export-certificate", "--instance", name, "--file", str(tentacle.root / f"{name}.pem")
        )
    return tentacle


def shown(tentacle: TentacleCli, name: str, **env: str) -> dict[str, Any]:
    config: dict[str, Any] = tentacle.ok(
        "show-configuration", "--instance", name, "--format", "json", env=env
    ).json()
    return config


def thumbprint(tentacle: TentacleCli, name: str) -> str:
    value: str = tentacle.ok("show-thumbprint", "--instance", name, "--format", "json").json()[
        "Thumbprint"
    ]
    return value


def config_file(tentacle: TentacleCli, name: str) -> Path:
    return tentacle.config_home / name / "tentacle.yaml"


def test_show_configuration_defaults(pair: TentacleCli) -> None:
    config = shown(pair, "a")
    home = str(pair.config_home / "a")
    assert config == {
        "InstanceName": "a",
        "ConfigurationFilePath": str(config_file(pair, "a")),
        "Home": home,
        "ApplicationDirectory": f"{home}/Applications",
        "Port": 10933,
        "ListenIpAddress": "any",
        "NoListen": False,
        "PollingConnectionCount": 2,
        "HeartbeatInterval": 30.0,
        "FileRoots": [],
        "MaxRunningScripts": 0,
        "WorkspaceRetention": 86400.0,
        "WorkspaceSweepInterval": 7200.0,
        "ScriptUsers": False,  # the tests' TENTACLE_SCRIPT_USERS=off (tests/helpers/cli.py)
        "ScriptUidRange": "61184-65519",
        "ScriptCgroups": True,
        "ScriptMemoryMax": 0,
        "ScriptPidsMax": 0,
        "ScriptCpuWeight": 0,
        "Thumbprint": thumbprint(pair, "a"),
        "TrustedThumbprints": [],
        "PollingProxy": None,
        "PollingServers": [],
        "Trust": [],
        "Draining": False,
        "DrainingSince": None,
    }
    assert shown(pair, "b")["Port"] == 10934


def test_two_instances_trust_each_other(pair: TentacleCli) -> None:
    pair.ok("configure", "--instance", "a", "--trust-certificate", str(pair.root / "b.pem"))
    pair.ok("configure", "--instance", "b", "--trust-certificate", str(pair.root / "a.pem"))
    assert shown(pair, "a")["TrustedThumbprints"] == [thumbprint(pair, "b")]
    assert shown(pair, "b")["TrustedThumbprints"] == [thumbprint(pair, "a")]
    stored = yaml.safe_load(config_file(pair, "a").read_text())
    assert stored["trusted"][0]["certificate"] == (pair.root / "b.pem").read_text()


def test_show_configuration_never_shows_a_private_key(pair: TentacleCli) -> None:
    pair.ok("configure", "--instance", "a", "--trust-certificate", str(pair.root / "b.pem"))
    for output_format in ("text", "json"):
        out = pair.ok("show-configuration", "--instance", "a", "--format", output_format).out
        assert "PRIVATE" not in out
        assert "BEGIN" not in out


def test_thumbprint_trust_is_pending_until_the_certificate_is_given(pair: TentacleCli) -> None:
    b = thumbprint(pair, "b")
    pair.ok("configure", "--instance", "a", "--trust", b.lower())
    assert shown(pair, "a")["Trust"] == [{"Thumbprint": b, "Sha256": None, "Pending": True}]
    assert "pending" in pair.ok("show-configuration", "--instance", "a").out
    pair.ok("configure", "--instance", "a", "--trust-certificate", str(pair.root / "b.pem"))
    [record] = shown(pair, "a")["Trust"]
    assert record["Thumbprint"] == b
    assert record["Pending"] is False


def test_trust_changes_apply_in_tentacles_order(pair: TentacleCli) -> None:
    a, b = thumbprint(pair, "a"), thumbprint(pair, "b")
    pair.ok("configure", "--instance", "a", "--trust", "AB" * 20, "--trust", "CD" * 20)
    # reset, then remove, then add: the removal of b happens before b is added
    pair.ok(
        "configure", "--instance", "a",
        "--trust-certificate", str(pair.root / "b.pem"),
        "--remove-trust", b,
        "--reset-trust",
        "--trust", a,
    )  # fmt: skip
    assert shown(pair, "a")["TrustedThumbprints"] == [a, b]
    pair.ok("configure", "--instance", "a", "--remove-trust", a)
    assert shown(pair, "a")["TrustedThumbprints"] == [b]
    result = pair.ok("configure", "--instance", "a", "--remove-trust", "EF" * 20)
    assert "nothing removed" in result.err


def test_settings_are_saved(pair: TentacleCli) -> None:
    apps = pair.root / "apps"
    pair.ok(
        "configure", "--instance", "a", "--port", "0", "--listenIpAddress", "127.0.0.1",
        "--noListen", "True", "--pollingConnectionCount", "5", "--app", str(apps),
    )  # fmt: skip
    config = shown(pair, "a")
    assert (config["Port"], config["ListenIpAddress"], config["NoListen"]) == (0, "127.0.0.1", True)
    assert (config["PollingConnectionCount"], config["ApplicationDirectory"]) == (5, str(apps))
    pair.ok("configure", "--instance", "a", "--listenIpAddress", "any", "--noListen", "false")
    assert (shown(pair, "a")["ListenIpAddress"], shown(pair, "a")["NoListen"]) == ("any", False)


def test_moving_home_takes_the_certificate_along(pair: TentacleCli) -> None:
    before = thumbprint(pair, "a")
    home = pair.root / "moved"
    pair.ok("configure", "--instance", "a", "--home", str(home))
    assert shown(pair, "a")["Home"] == str(home)
    assert thumbprint(pair, "a") == before
    assert (home / "identity.pem").exists()


def test_moving_home_takes_files_and_workspaces_along(pair: TentacleCli) -> None:
    old = pair.config_home / "a"
    (old / "Files").mkdir()
    (old / "Files" / "app.zip").write_text("zip")
    (old / "Work" / "t1").mkdir(parents=True)
    home = pair.root / "moved"
    pair.ok("configure", "--instance", "a", "--home", str(home))
    assert (home / "Files" / "app.zip").read_text() == "zip"
    assert (home / "Work" / "t1").is_dir()
    assert not (old / "Files").exists()
    assert not (old / "Work").exists()


def test_changes_are_shown_as_a_person_writes_them(pair: TentacleCli) -> None:
    root = pair.root / "shared"
    root.mkdir()
    out = pair.ok("configure", "--instance", "a", "--file-root", str(root), "--app",
                  str(pair.root / "apps")).out  # fmt: skip
    assert f"FileRoots: (none) -> {root}\n" in out
    assert (
        f"ApplicationDirectory: {pair.config_home / 'a' / 'Applications'} -> {pair.root / 'apps'}"
        in out
    )
    changed = pair.ok("configure", "--instance", "a", "--listenIpAddress", "127.0.0.1",
                      "--noListen", "true").out  # fmt: skip
    assert "ListenIpAddress: any -> 127.0.0.1\n" in changed
    assert "NoListen: false -> true\n" in changed
    assert "PosixPath" not in out


def test_a_file_root_must_be_an_existing_folder(pair: TentacleCli) -> None:
    missing = pair.root / "nowhere"
    failure = pair.fails("configure", "--instance", "a", "--file-root", str(missing), code=2)
    assert failure.err.splitlines()[-1] == (
        f"error: Invalid value for --file-root: {missing} does not exist; "
        "a file root must be an existing folder (create it first)"
    )
    (pair.root / "a-file").write_text("")
    failure = pair.fails("configure", "--instance", "a", "--file-root", str(pair.root / "a-file"),
                         code=2)  # fmt: skip
    assert "a-file is not a folder" in failure.err
    assert shown(pair, "a")["FileRoots"] == []


def test_environment_overrides_the_file_but_is_never_saved(pair: TentacleCli) -> None:
    env = {"TENTACLE_SERVICE_PORT": "15000", "TENTACLE_NO_LISTEN": "true"}
    config = shown(pair, "a", **env)
    assert (config["Port"], config["NoListen"]) == (15000, True)
    assert (
        "(from TENTACLE_SERVICE_PORT)"
        in pair.ok("show-configuration", "--instance", "a", env=env).out
    )
    pair.ok("configure", "--instance", "a", "--pollingConnectionCount", "3", env=env)
    stored = yaml.safe_load(config_file(pair, "a").read_text())
    assert (stored["port"], stored["no_listen"], stored["polling_connection_count"]) == (
        10933,
        False,
        3,
    )


def test_invalid_environment_variable_is_named(pair: TentacleCli) -> None:
    failure = pair.fails(
        "show-configuration", "--instance", "a", env={"TENTACLE_SERVICE_PORT": "99999"}
    )
    assert "TENTACLE_SERVICE_PORT" in failure.err
    assert "0 to 65535" in failure.err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--port", "70000"], 2, "70000 is not in the range 0<=x<=65535"),
        (["--port", "-1"], 2, "-1 is not in the range"),
        (["--port", "10934"], 1, "port 10934 is already used by instance 'b'"),
        (["--trust", "NOT-HEX"], 1, "malformed thumbprint 'NOT-HEX'"),
        (["--remove-trust", "123"], 1, "malformed thumbprint '123'"),
        (["--noListen", "perhaps"], 2, "'perhaps' is not a valid boolean"),
        (["--listenIpAddress", "10.0.0.300"], 2, "expected an IP address or 'any'"),
        (["--pollingConnectionCount", "0"], 2, "0 is not in the range 1<=x<=512"),
    ],
)
def test_bad_values_fail_clearly_and_change_nothing(
    pair: TentacleCli, args: list[str], code: int, message: str
) -> None:
    before = config_file(pair, "a").read_bytes()
    failure = pair.fails("configure", "--instance", "a", "--trust", "AB" * 20, *args, code=code)
    assert message in failure.err
    assert config_file(pair, "a").read_bytes() == before


def test_a_file_that_is_not_a_certificate_is_refused(pair: TentacleCli) -> None:
    fake = pair.root / "fake.pem"
    fake.write_text("-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n")
    failure = pair.fails("configure", "--instance", "a", "--trust-certificate", str(fake))
    assert f"{fake} is not an X.509 certificate: it is a PEM block" in failure.err
    failure = pair.fails("configure", "--instance", "a", "--trust-certificate", "/etc/passwd")
    assert failure.err == (
        "error: /etc/passwd is not an X.509 certificate: it is neither PEM nor DER; expected a "
        "PEM file (-----BEGIN CERTIFICATE-----) or DER bytes, as export-certificate writes\n"
    )
    missing = pair.root / "missing.pem"
    failure = pair.fails("configure", "--instance", "a", "--trust-certificate", str(missing))
    assert f"cannot read certificate file {missing}: No such file" in failure.err
    assert shown(pair, "a")["TrustedThumbprints"] == []


def test_a_corrupted_config_names_the_file_and_line(pair: TentacleCli) -> None:
    path = config_file(pair, "a")
    path.write_text(path.read_text().replace("port: 10933", "port: ten"))
    for args in (["show-configuration"], ["configure", "--port", "1"], ["show-thumbprint"]):
        failure = pair.fails(*args, "--instance", "a")
        assert f"{path} line 4: port: expected a port number" in failure.err


def test_instance_may_be_omitted_only_when_there_is_one(tentacle: TentacleCli) -> None:
    assert "no instances" in tentacle.fails("show-configuration").err
    tentacle.ok("create-instance", "--instance", "only")
    assert shown(tentacle, "only") == tentacle.ok("show-configuration", "--format", "json").json()
    tentacle.ok("create-instance", "--instance", "other")
    assert "several instances (only, other)" in tentacle.fails("show-configuration").err


def test_version(tentacle: TentacleCli) -> None:
    from agent import __version__

    assert tentacle.ok("version", "--format", "json").json()["InformationalVersion"] == __version__
    assert __version__ in tentacle.ok("version").out
