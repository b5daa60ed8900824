"""create-instance, delete-instance, list-instances through the real command."""

from __future__ import annotations

import stat

from tests.helpers.cli import TentacleCli


def test_create_then_list_as_text_and_json(tentacle: TentacleCli) -> None:
    tentacle.ok("create-instance", "--instance", "Worker")
    tentacle.ok("create-instance", "--instance", "Second")
    listed = tentacle.ok("list-instances", "--format", "json").json()
    assert listed == [
        {
            "InstanceName": "Second",
            "ConfigurationFilePath": str(tentacle.config_home / "second" / "tentacle.yaml"),
        },
        {
            "InstanceName": "Worker",
            "ConfigurationFilePath": str(tentacle.config_home / "worker" / "tentacle.yaml"),
        },
    ]
    table = tentacle.ok("list-instances").out.splitlines()
    assert table[0].split() == ["Instance", "Config", "file"]
    assert [line.split()[0] for line in table[2:]] == ["Second", "Worker"]


def test_no_instances_listed(tentacle: TentacleCli) -> None:
    assert tentacle.ok("list-instances", "--format", "json").json() == []
    assert "No instances" in tentacle.ok("list-instances").out


def test_config_file_and_home_can_be_chosen(tentacle: TentacleCli) -> None:
    config = tentacle.root / "etc" / "agent.yaml"
    home = tentacle.root / "var" / "agent"
    tentacle.ok("create-instance", "--instance", "a", "--config", str(config), "--home", str(home))
    shown = tentacle.ok("show-configuration", "--format", "json").json()
    assert shown["ConfigurationFilePath"] == str(config)
    assert shown["Home"] == str(home)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_duplicate_instance_is_refused_and_the_first_is_untouched(tentacle: TentacleCli) -> None:
    tentacle.ok("create-instance", "--instance", "Worker")
    config = tentacle.config_home / "worker" / "tentacle.yaml"
    before = config.read_bytes()
    failure = tentacle.fails("create-instance", "--instance", "WORKER")
    assert "'Worker' already exists" in failure.err
    assert config.read_bytes() == before
    assert len(tentacle.ok("list-instances", "--format", "json").json()) == 1


def test_invalid_instance_name(tentacle: TentacleCli) -> None:
    failure = tentacle.fails("create-instance", "--instance", "../escape")
    assert "invalid instance name '../escape'" in failure.err
    assert not tentacle.config_home.exists()


def test_delete_forgets_the_instance_but_keeps_its_files(tentacle: TentacleCli) -> None:
    tentacle.ok("create-instance", "--instance", "gone")
    tentacle.ok("new-certificate", "--instance", "gone")
    result = tentacle.ok("delete-instance", "--instance", "GONE")
    assert "kept" in result.out
    assert tentacle.ok("list-instances", "--format", "json").json() == []
    assert (tentacle.config_home / "gone" / "identity.pem").exists()
    assert "unknown instance 'gone'" in tentacle.fails("delete-instance", "--instance", "gone").err


def test_missing_required_option_is_a_usage_error(tentacle: TentacleCli) -> None:
    failure = tentacle.fails("create-instance", code=2)
    assert "--instance" in failure.err
    assert "No such command" in tentacle.fails("no-such-verb", code=2).err
