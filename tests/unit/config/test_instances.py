from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent.certs import generate_identity, save_identity
from agent.config import InstanceIndex, load_config, save_config
from agent.config.instances import (
    change_home,
    check_port_free,
    create_instance,
    open_instance,
)
from agent.errors import ConfigError, InstanceError


@pytest.fixture
def index(tmp_path: Path) -> InstanceIndex:
    return InstanceIndex(tmp_path / "instances")


def test_create_lays_out_home_config_and_entry(tmp_path: Path, index: InstanceIndex) -> None:
    instance = create_instance(index, tmp_path, "Worker One")
    assert instance.config_path == tmp_path / "worker-one" / "tentacle.yaml"
    assert instance.config.home == tmp_path / "worker-one"
    assert stat.S_IMODE(instance.config.home.stat().st_mode) == 0o700
    assert stat.S_IMODE(instance.config_path.stat().st_mode) == 0o600
    assert open_instance(index, "worker one") == instance


def test_instances_get_distinct_ports_and_homes(tmp_path: Path, index: InstanceIndex) -> None:
    first = create_instance(index, tmp_path, "a")
    second = create_instance(index, tmp_path, "b")
    assert (first.config.port, second.config.port) == (10933, 10934)
    assert first.config.home != second.config.home
    with pytest.raises(ConfigError, match="port 10933 is already used by instance 'a'"):
        check_port_free(index, "b", 10933)
    check_port_free(index, "a", 10933)  # its own port is no collision
    check_port_free(index, "b", 0)  # ephemeral ports never collide


def test_an_instance_that_does_not_listen_frees_its_port(
    tmp_path: Path, index: InstanceIndex
) -> None:
    first = create_instance(index, tmp_path, "a")
    first.save(first.config.with_settings(no_listen=True))
    assert create_instance(index, tmp_path, "b").config.port == 10933


def test_an_existing_config_is_adopted_not_overwritten(
    tmp_path: Path, index: InstanceIndex
) -> None:
    path = tmp_path / "elsewhere" / "agent.yaml"
    path.parent.mkdir()
    path.write_text("port: 12345\n")
    instance = create_instance(index, tmp_path, "adopted", config_path=path)
    assert instance.config.port == 12345
    assert path.read_text() == "port: 12345\n"


def test_a_failed_create_leaves_nothing_behind(tmp_path: Path, index: InstanceIndex) -> None:
    index.directory.write_text("a file where the index folder should be")
    with pytest.raises(FileExistsError):
        create_instance(index, tmp_path / "homes", "x")
    assert not (tmp_path / "homes").exists()


def test_a_corrupt_adopted_config_is_refused_and_not_registered(
    tmp_path: Path, index: InstanceIndex
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("port: [\n")
    with pytest.raises(ConfigError, match="bad.yaml line 2"):
        create_instance(index, tmp_path, "x", config_path=path)
    with pytest.raises(InstanceError):
        create_instance(index, tmp_path, "bad name!")
    assert index.entries() == []


def test_changing_home_moves_the_identity(tmp_path: Path, index: InstanceIndex) -> None:
    instance = create_instance(index, tmp_path, "a")
    identity = generate_identity()
    save_identity(instance.config.identity_path, identity)
    moved, left = change_home(instance.config, tmp_path / "new-home")
    save_config(instance.config_path, moved)
    assert left == []
    assert not instance.config.identity_path.exists()
    assert moved.identity_path.read_bytes() == identity.to_pem()
    assert load_config(instance.config_path).home == tmp_path / "new-home"


def test_changing_home_moves_files_workspaces_journal_and_default_applications(
    tmp_path: Path, index: InstanceIndex
) -> None:
    old = create_instance(index, tmp_path, "a").config
    for name in ("Files/app.zip", "Work/t1/state.json", "Applications/App/1.0/run.sh"):
        (old.home / name).parent.mkdir(parents=True, exist_ok=True)
        (old.home / name).write_text(name)
    (old.home / "DeploymentJournal.json").write_text("[]")
    moved, left = change_home(old, tmp_path / "new-home")
    assert left == []
    for name in ("Files/app.zip", "Work/t1/state.json", "Applications/App/1.0/run.sh"):
        assert (moved.home / name).read_text() == name
        assert not (old.home / name).exists()
    assert (moved.home / "DeploymentJournal.json").read_text() == "[]"
    assert (old.home / "tentacle.yaml").exists()  # the config file stays where the index says


def test_changing_home_keeps_what_the_new_home_has_and_an_explicit_app_folder(
    tmp_path: Path, index: InstanceIndex
) -> None:
    apps = tmp_path / "apps"
    old = create_instance(index, tmp_path, "a").config.with_settings(application_directory=apps)
    (old.home / "Files").mkdir()
    (old.home / "Files" / "old.txt").write_text("old")
    apps.mkdir()
    (tmp_path / "new-home" / "Files").mkdir(parents=True)
    moved, left = change_home(old, tmp_path / "new-home")
    assert left == [
        f"{tmp_path / 'new-home' / 'Files'} already exists, so {old.home / 'Files'} "
        "was left where it is"
    ]
    assert (old.home / "Files" / "old.txt").exists()
    assert moved.applications == apps
    assert apps.is_dir()
