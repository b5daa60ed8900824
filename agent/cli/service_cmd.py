"""service: run an instance's agent as a systemd service (tentacle@NAME.service).

``--install`` writes the instance's unit from the template ``systemd/tentacle@.service``
into the unit folder (``/etc/systemd/system``, or ``TENTACLE_SYSTEMD_UNIT_DIR``),
then runs ``systemctl daemon-reload`` and ``systemctl enable``; the other
actions are one ``systemctl`` call each. ``systemctl``'s exit code is passed on.
Every command is an argument list: no shell ever reads a name or a path.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from agent.atomicfile import write_atomic
from agent.cli.context import current
from agent.cli.options import instance_option
from agent.cli.units import (
    AGENT_TEMPLATE,
    check_unit_value,
    command_line,
    environment_assignment,
    path_list,
    read_template,
    render,
)
from agent.config.index import instance_slug
from agent.config.instances import Instance
from agent.errors import ConfigError, TentacleError
from agent.scripts.runner import installed_executable

UNIT_FOLDER = Path("/etc/systemd/system")
UNIT_FOLDER_VARIABLE = "TENTACLE_SYSTEMD_UNIT_DIR"  # for tests and unusual layouts
UNIT_MODE = 0o644  # systemd reads units as root; people read them to see what runs
# the order in which actions given together run: --install --start installs, then starts
ACTIONS = ("stop", "uninstall", "install", "start", "restart", "status")
EXCLUSIVE = (("install", "uninstall"), ("start", "stop"), ("start", "restart"), ("stop", "restart"))


def systemctl_failed(argv: Sequence[str], code: int) -> click.exceptions.Exit:
    """systemctl failed: say which call (its own output said why), and exit with its code."""
    click.echo(f"error: {' '.join(argv)} failed (exit {code})", err=True)
    return click.exceptions.Exit(code)


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int
    home: Path

    @property
    def is_root(self) -> bool:
        return self.uid == 0


def service_user(name: str) -> ServiceUser:
    """The account the unit runs as. Raises ConfigError if there is none of that name."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(
            f"no user named {name!r} on this machine: create it first (for example "
            f"`useradd --system --create-home {name}`), or name another with --username"
        ) from None
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def unit_name(instance: Instance) -> str:
    """tentacle@SLUG.service: the slug is a valid systemd instance name as it is
    (letters, digits, '.', '-', '_'), and ``--instance SLUG`` finds the instance."""
    return f"tentacle@{instance_slug(instance.name)}.service"


def unit_text(instance: Instance, user: ServiceUser, executable: str, config_home: Path) -> str:
    """The instance's unit: the template with this machine's values filled in."""
    home = instance.config.home
    writable = [str(home), str(instance.config_path.parent)]
    values = {
        # %i is a specifier (the instance's slug): it is the one word not escaped
        "ExecStart": command_line([executable, "agent", "--instance"]) + " %i",
        "User": user.name,
        "Environment": environment_assignment("TENTACLE_CONFIG_HOME", str(config_home)),
    }
    if not user.is_root:
        # such a user cannot write /usr or /etc anyway; see the template's comments
        values["ProtectSystem"] = "full"
        values["ProtectHome"] = "read-only"
        if user.home.is_relative_to("/home") or user.home.is_relative_to("/root"):
            writable.append(f"-{user.home}")  # deployments under its own home go on working
    for path in [*writable, executable, str(config_home)]:
        check_unit_value("the path " + repr(path), path)
    values["ReadWritePaths"] = path_list(list(dict.fromkeys(writable)))
    return render(read_template(AGENT_TEMPLATE), values)


def absolute_executable() -> str:
    """The installed `tentacle`'s absolute path. Raises ConfigError if there is none."""
    found = installed_executable("")
    if not found or not os.path.isabs(found):
        raise ConfigError(
            "cannot find the installed `tentacle` program (beside this Python or on PATH): "
            "the unit must name it by its absolute path"
        )
    return os.path.abspath(found)


def systemctl_program(environ: Mapping[str, str]) -> str:
    found = shutil.which("systemctl", path=environ.get("PATH", os.defpath))
    if found is None:
        raise ConfigError("systemctl is not on PATH: `tentacle service` needs systemd")
    return found


def systemctl(environ: Mapping[str, str], *args: str) -> int:
    """Run ``systemctl ARGS`` (its output is the user's); returns its exit code."""
    argv = [systemctl_program(environ), *args]
    return subprocess.run(argv, check=False, env=dict(environ)).returncode


def must(environ: Mapping[str, str], *args: str) -> None:
    """systemctl ARGS, which must succeed (else a failure with its exit code)."""
    code = systemctl(environ, *args)
    if code != 0:
        raise systemctl_failed(["systemctl", *args], code)


def hand_over(instance: Instance, user: ServiceUser) -> list[Path]:
    """Make ``user`` the owner of what the agent reads and writes: the instance's home
    (all of it), its config file and its index entry. Returns what changed hands."""
    changed = []
    home = instance.config.home
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in [home, *sorted(home.rglob("*")), instance.config_path]:
        info = path.lstat()
        if info.st_uid != user.uid:
            os.chown(path, user.uid, user.gid, follow_symlinks=False)
            if path in (home, instance.config_path):
                changed.append(path)
    return changed


def _install(instance: Instance, user: ServiceUser, folder: Path, environ: Mapping[str, str],
             config_home: Path, index_entry: Path) -> str:  # fmt: skip
    name = unit_name(instance)
    text = unit_text(instance, user, absolute_executable(), config_home)
    if not user.is_root:
        for path in hand_over(instance, user):
            click.echo(f"{path} now belongs to {user.name}")
        if index_entry.exists() and index_entry.stat().st_uid != user.uid:
            os.chown(index_entry, user.uid, user.gid)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / name, text.encode("utf-8"), UNIT_MODE)
    click.echo(f"Wrote {folder / name} (runs as {user.name})")
    must(environ, "daemon-reload")
    must(environ, "enable", name)
    return name


def _uninstall(name: str, folder: Path, environ: Mapping[str, str]) -> None:
    path = folder / name
    if not path.exists():
        raise TentacleError(f"{name} is not installed: there is no {path}")
    must(environ, "disable", "--now", name)  # stops the agent only (KillMode=process)
    path.unlink()
    click.echo(f"Removed {path}")
    must(environ, "daemon-reload")


@click.command("service")
@instance_option
@click.option("--install", is_flag=True, help="write the instance's unit, then enable it")
@click.option("--uninstall", is_flag=True, help="stop and disable the unit, then remove it")
@click.option("--start", is_flag=True, help="start the service")
@click.option("--stop", is_flag=True, help="stop the service (running scripts carry on)")
@click.option("--restart", is_flag=True, help="restart the service (running scripts carry on)")
@click.option("--status", is_flag=True, help="show systemctl's status of the service")
@click.option(
    "--username",
    metavar="USER",
    help="with --install: the account the agent (and its scripts) runs as (default root)",
)
def service_command(instance_name: str | None, username: str | None, **flags: bool) -> None:
    """Run the instance's agent as the systemd service tentacle@NAME.

    Actions given together run in this order: stop, uninstall, install, start,
    restart, status. The unit is written to /etc/systemd/system (or
    $TENTACLE_SYSTEMD_UNIT_DIR). systemctl's exit code is passed on."""
    chosen = [action for action in ACTIONS if flags[action]]
    if not chosen:
        raise click.UsageError(
            "give an action: --install, --uninstall, --start, --stop, --restart or --status"
        )
    for first, second in EXCLUSIVE:
        if first in chosen and second in chosen:
            raise click.UsageError(f"--{first} and --{second} cannot be given together")
    if username is not None and "install" not in chosen:
        raise click.UsageError("--username goes with --install (the unit says whom it runs as)")
    context = current()
    environ = context.environ
    instance = context.open(instance_name)
    name = unit_name(instance)
    folder = Path(environ.get(UNIT_FOLDER_VARIABLE) or UNIT_FOLDER)
    user = service_user(username or "root") if "install" in chosen else None
    entry = context.index.entry_path(instance.name)
    for action in chosen:
        if action == "install":
            assert user is not None
            _install(instance, user, folder, environ, context.config_home, entry)
        elif action == "uninstall":
            _uninstall(name, folder, environ)
        elif action == "status":
            code = systemctl(environ, "status", "--no-pager", name)
            if code != 0:
                raise click.exceptions.Exit(code)  # systemctl said why (3: not running)
        else:
            must(environ, action, name)
