"""Instances as a whole: an index entry plus its config file and home.

These operations keep the invariants that span files: an instance is either
fully created (home, config, index entry) or not at all, and two instances
on one host never share a home or a listening port.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.certs import IDENTITY_FILE_NAME
from agent.config.document import load_config, save_config
from agent.config.environment import apply_environment
from agent.config.index import InstanceEntry, InstanceIndex, instance_slug
from agent.config.model import DEFAULT_PORT, MAX_PORT, InstanceConfig
from agent.errors import ConfigError

CONFIG_FILE_NAME = "tentacle.yaml"
HOME_MODE = 0o700


@dataclass(frozen=True)
class Instance:
    """A named instance with its config as stored in its file."""

    name: str
    config_path: Path
    config: InstanceConfig

    def effective(self, environ: Mapping[str, str]) -> InstanceConfig:
        """The config with environment overrides applied (environment > file)."""
        return apply_environment(self.config, environ)

    def save(self, config: InstanceConfig) -> Instance:
        save_config(self.config_path, config)
        return Instance(self.name, self.config_path, config)


def open_instance(index: InstanceIndex, name: str | None) -> Instance:
    """Load the named instance (or the only one). Raises InstanceError or ConfigError."""
    entry = index.resolve(name)
    return Instance(entry.name, entry.config_path, load_config(entry.config_path))


def create_instance(
    index: InstanceIndex,
    config_home: Path,
    name: str,
    config_path: Path | None = None,
    home: Path | None = None,
) -> Instance:
    """Create and register an instance; all or nothing.

    Defaults: config at ``<config_home>/<slug>/tentacle.yaml``, home = the config's
    folder, port = the lowest from 10933 that no other instance uses. An existing
    config file is adopted (and validated), not overwritten. Raises InstanceError
    for a bad or taken name, ConfigError for an invalid existing config.
    """
    slug = instance_slug(name)
    index.check_available(name)
    path = (config_path or config_home / slug / CONFIG_FILE_NAME).absolute()
    created: list[Path] = []
    try:
        config = _adopt_or_create_config(index, path, home, created)
        _make_private_dir(config.home, created)
        index.add(InstanceEntry(name, path))
    except BaseException:
        _undo(created)
        raise
    return Instance(name, path, config)


def delete_instance(index: InstanceIndex, name: str | None) -> InstanceEntry:
    """Forget an instance. Its config file and home are left in place."""
    entry = index.resolve(name)
    return index.remove(entry.name)


def ports_in_use(index: InstanceIndex, excluding: str | None = None) -> dict[int, str]:
    """Listening port -> instance name, for the other instances that listen.

    Instances whose config cannot be read are skipped: they cannot listen either.
    """
    used: dict[int, str] = {}
    for entry in index.entries():
        if excluding is not None and entry.name.lower() == excluding.lower():
            continue
        with contextlib.suppress(ConfigError):
            config = load_config(entry.config_path)
            if not config.no_listen and config.port:
                used.setdefault(config.port, entry.name)
    return used


def check_port_free(index: InstanceIndex, name: str, port: int) -> None:
    """Raises ConfigError if another instance on this host listens on ``port``."""
    owner = ports_in_use(index, excluding=name).get(port)
    if port and owner is not None:
        raise ConfigError(f"port {port} is already used by instance {owner!r}; choose another")


# What lives in an instance home and moves with it (its config file may live
# there too, but stays where the index says it is).
HOME_CONTENTS = (IDENTITY_FILE_NAME, "Files", "Work", "Applications", "DeploymentJournal.json")


def change_home(config: InstanceConfig, new_home: Path) -> tuple[InstanceConfig, list[str]]:
    """Point the instance at ``new_home``, moving the home's contents along with it.

    Moves the identity, uploaded files, script workspaces, the deployment
    journal and the default applications folder (an application directory
    set explicitly stays where it is). Something of the same name already in
    the new home (a restored backup, say) is kept, and the old one left in
    place. Returns the new config and one line per thing left behind. The
    agent must be stopped: its running scripts' folders move.
    """
    new = config.with_settings(home=new_home)
    if new.home == config.home:
        return new, []
    new.home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    left: list[str] = []
    for name in HOME_CONTENTS:
        if name == "Applications" and config.application_directory is not None:
            continue
        old_path, new_path = config.home / name, new.home / name
        if not old_path.exists():
            continue
        if new_path.exists():
            left.append(f"{new_path} already exists, so {old_path} was left where it is")
            continue
        shutil.move(old_path, new_path)
    return new, left


def _adopt_or_create_config(
    index: InstanceIndex, path: Path, home: Path | None, created: list[Path]
) -> InstanceConfig:
    if path.exists():
        config = load_config(path)
        if home is not None:
            config = config.with_settings(home=home.absolute())
            save_config(path, config)
        return config
    _make_private_dir(path.parent, created)
    config = InstanceConfig(home=(home or path.parent).absolute(), port=_free_port(index))
    save_config(path, config)
    created.append(path)
    return config


def _free_port(index: InstanceIndex) -> int:
    used = ports_in_use(index)
    return next(port for port in range(DEFAULT_PORT, MAX_PORT + 1) if port not in used)


def _make_private_dir(directory: Path, created: list[Path]) -> None:
    missing = [path for path in (directory, *directory.parents) if not path.exists()]
    directory.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    created.extend(reversed(missing))


def _undo(created: list[Path]) -> None:
    for path in reversed(created):
        with contextlib.suppress(OSError):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
