"""What every command needs from the process: the environment and the index."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from agent.config.index import InstanceIndex
from agent.config.instances import Instance, open_instance

CONFIG_HOME_VARIABLE = "TENTACLE_CONFIG_HOME"
SYSTEM_CONFIG_HOME = Path("/etc/tentacle")


def config_home(environ: Mapping[str, str], is_root: bool) -> Path:
    """Where the instance index and default configs live.

    ``TENTACLE_CONFIG_HOME`` wins; otherwise ``/etc/tentacle`` for root and
    ``$XDG_CONFIG_HOME/tentacle`` (default ``~/.config/tentacle``) for anyone else.
    """
    if environ.get(CONFIG_HOME_VARIABLE):
        return Path(environ[CONFIG_HOME_VARIABLE]).expanduser().absolute()
    if is_root:
        return SYSTEM_CONFIG_HOME
    xdg = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg).expanduser().absolute() / "tentacle"


@dataclass(frozen=True)
class Context:
    environ: Mapping[str, str]
    config_home: Path

    @property
    def index(self) -> InstanceIndex:
        return InstanceIndex(self.config_home / "instances")

    def open(self, name: str | None) -> Instance:
        return open_instance(self.index, name)


def current() -> Context:
    """The context for this process, built once per command invocation."""
    ctx = click.get_current_context()
    found = ctx.find_object(Context)
    if found is None:
        environ = dict(os.environ)
        found = Context(environ, config_home(environ, os.geteuid() == 0))
        ctx.obj = found
    return found
