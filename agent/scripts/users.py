"""Whom a script runs as: an unprivileged uid per isolation group, never the agent's user.

A script's *isolation group* (StartScript's ``IsolationGroup``; the hub sends a
task's project, else its space) picks its uid; a call without one runs in the
shared ``default`` group, which is still not the agent's user. Uids come from a
configured range (by default systemd's DynamicUser range, which no ordinary
account uses) and are recorded in the instance's ``script-users.json`` (replaced
atomically), so that a group keeps its uid across restarts. A uid, once given,
is never given to another group: files of the old group may remain anywhere a
script could write (its group folder, /tmp), and a new owner would read them.
Allocations are never dropped; a range used up is refused with a clear error.

Each group has a folder of its own, ``<home>/Groups/<uid>/`` (0700, the group's):
its HOME, its TMPDIR (the executor's private variables folders), its
deployments (TentacleApplications) and their journal, and its package cache.

Switching needs root or, for a service run as another user, the capabilities
that switching and looking after other users' files take (REQUIRED_CAPABILITIES).
Without them scripts run as the agent's user ("none"); a call that asks for a
group is then refused unless the operator said one user for all is accepted
(``configure --script-users off``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.atomicfile import write_atomic
from agent.errors import CallError, ConfigError
from agent.protocol.messages import BAD_PARAMS, REFUSED
from agent.scripts import reach

log = logging.getLogger(__name__)

DEFAULT_GROUP = "default"
DEFAULT_UID_RANGE = (61184, 65519)  # systemd's DynamicUser range: no account uses it
USERS_FILE = "script-users.json"
GROUPS_FOLDER = "Groups"
GROUP_MODE = 0o700
SEARCHABLE_MODE = 0o711  # the home and Work/: scripts pass through, never list
MAX_GROUP_LENGTH = 200
# What the agent does besides setuid/setgid: hand workspaces over (chown), write and
# remove files in folders its scripts own, and signal their processes on a cancel
REQUIRED_CAPABILITIES = {
    0: "CAP_CHOWN",
    1: "CAP_DAC_OVERRIDE",
    3: "CAP_FOWNER",
    5: "CAP_KILL",
    6: "CAP_SETGID",
    7: "CAP_SETUID",
}
USERS, NONE = "users", "none"  # capabilities' ScriptIsolation


def missing_capabilities(status: Path = Path("/proc/self/status")) -> list[str]:
    """The capabilities this process lacks to run scripts as other users ([] if none)."""
    try:
        lines = status.read_text().splitlines()
        effective = next(int(line.split()[1], 16) for line in lines if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return [] if os.geteuid() == 0 else list(REQUIRED_CAPABILITIES.values())
    return [name for bit, name in REQUIRED_CAPABILITIES.items() if not effective >> bit & 1]


def check_group(group: str) -> str:
    """``group`` as given, or CallError(bad_params) saying what a group name may be."""
    if not group.strip() or len(group) > MAX_GROUP_LENGTH or not group.isprintable():
        raise CallError(
            BAD_PARAMS,
            f"IsolationGroup {group[:60]!r}: expected 1 to {MAX_GROUP_LENGTH} printable "
            "characters (a project or space id), or no IsolationGroup for the default group",
        )
    return group


@dataclass(frozen=True)
class GroupAccount:
    """A group's uid (its gid is the same number, no supplementary groups) and folder."""

    group: str
    uid: int
    folder: Path

    @property
    def gid(self) -> int:
        return self.uid

    @property
    def applications(self) -> Path:
        return self.folder / "Applications"

    @property
    def temp(self) -> Path:
        return self.folder / "Temp"

    @property
    def journal(self) -> Path:
        return self.folder / "DeploymentJournal.json"


class GroupUsers:
    """The groups' uids of one instance, as recorded in ``<home>/script-users.json``.

    Not safe for concurrent use; one agent serves an instance (its lock)."""

    def __init__(self, home: Path, uid_range: tuple[int, int] = DEFAULT_UID_RANGE) -> None:
        self.home = home
        self.first, self.last = uid_range
        self.path = home / USERS_FILE
        self._uids = self._load()

    @property
    def uids(self) -> dict[str, int]:
        """Group -> uid, every allocation ever made here."""
        return dict(self._uids)

    def uid(self, group: str) -> int:
        """The group's uid, allocated (and recorded) on first use; its folder is not
        looked at (``account`` lays it out). CallError(refused) when the range has no
        uid left."""
        uid = self._uids.get(group)
        return self._allocate(group) if uid is None else uid

    def account(self, group: str) -> GroupAccount:
        """The group's account, its uid allocated (and recorded) on first use and its
        folder laid out. CallError(refused) when the range has no uid left."""
        uid = self.uid(group)
        account = GroupAccount(group, uid, self.home / GROUPS_FOLDER / str(uid))
        _lay_out(account)
        return account

    def _allocate(self, group: str) -> int:
        taken = set(self._uids.values())
        for uid in range(self.first, self.last + 1):
            if uid not in taken and not _has_account(uid):
                self._uids[group] = uid
                self._save()  # before any file is made for it: a crash loses no uid
                return uid
        raise CallError(
            REFUSED,
            f"no uid left for isolation group {group!r}: the {len(taken)} uid(s) of the range "
            f"{self.first}-{self.last} have all been given (uids are never given twice); widen "
            "it with `tentacle configure --instance INSTANCE --script-uid-range A-B`",
        )

    def _load(self) -> dict[str, int]:
        try:
            document = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"cannot read the script users' record {self.path}: {error}"
            ) from None
        groups = document.get("Groups") if isinstance(document, dict) else None
        if not isinstance(groups, dict) or not all(
            isinstance(uid, int) and not isinstance(uid, bool) and uid > 0
            for uid in groups.values()
        ):
            raise ConfigError(
                f"the script users' record {self.path} is damaged: expected "
                '{"Groups": {"group": uid, ...}}; restore it from a backup (removing it would '
                "give existing groups new uids, and their files would stay the old ones')"
            )
        return {str(group): int(uid) for group, uid in groups.items()}

    def _save(self) -> None:
        document = {"Version": 1, "Groups": self._uids}
        write_atomic(self.path, json.dumps(document, indent=1).encode())


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _lay_out(account: GroupAccount) -> None:
    """The group's folder and its parts, the group's own (0700): made once, repaired
    if an earlier run left them another owner's."""
    account.folder.parent.mkdir(mode=SEARCHABLE_MODE, exist_ok=True)
    for folder in (account.folder, account.applications, account.temp):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=GROUP_MODE)
        descriptor = _open_folder(folder)
        try:  # through the descriptor: a link swapped in meanwhile is never followed
            info = os.fstat(descriptor)
            if info.st_uid != account.uid or stat.S_IMODE(info.st_mode) != GROUP_MODE:
                os.fchown(descriptor, account.uid, account.gid)
                os.fchmod(descriptor, GROUP_MODE)
        finally:
            os.close(descriptor)


def _open_folder(folder: Path) -> int:
    """``folder`` opened without following a link: the group's scripts own the folder
    above, and a link (or file) they put there is removed and the folder made again,
    so this process never hands the link's target over to them."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(folder, flags)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    folder.unlink()
    folder.mkdir(mode=GROUP_MODE)
    return os.open(folder, flags)


# The only variables of the agent's environment a script run as its group's uid gets
# (the agent's may hold credentials of its own): the rest is the Tentacle variables
# and the group's HOME and TMPDIR (docs/architecture.md, "Who runs a script")
PASSED_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ")
PASSED_PREFIXES = ("LC_",)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def passed_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """Of ``environment``, what a script run as its group's uid gets (PASSED_VARIABLES)."""
    passed = {
        name: value
        for name, value in environment.items()
        if name in PASSED_VARIABLES or name.startswith(PASSED_PREFIXES)
    }
    passed.setdefault("PATH", DEFAULT_PATH)
    return passed


@dataclass(frozen=True)
class Policy:
    """How an instance's scripts run: as their groups' uids (``users``), or all as the
    agent's user, groups then accepted (``refuse_groups`` None: the operator said so)
    or refused with ``refuse_groups`` as the reason."""

    users: GroupUsers | None = None
    refuse_groups: str | None = None
    executable: str | None = None  # the `tentacle` scripts call, when not the agent's own

    @property
    def isolation(self) -> str:
        return USERS if self.users is not None else NONE


def policy(
    home: Path,
    enabled: bool,
    uid_range: tuple[int, int],
    instance: str,
    off: str = "",
    executable: str | None = None,
) -> Policy:
    """The policy for the instance at ``home`` (see Policy). With ``enabled`` and the
    privileges, the home is laid out for it (see ``open_home``); ConfigError when a
    folder above the home would keep every script out of its workspace, when the
    scripts' uids could not run ``executable`` (the `tentacle` they call) nor the
    system's Python of this version (see ``scripts_executable``), or the record of
    uids is damaged."""
    off = off or f"`tentacle configure --instance {instance} --script-users off`"
    if not enabled:
        return Policy()
    missing = missing_capabilities()
    if missing:
        return Policy(
            refuse_groups=(
                f"this agent cannot run scripts as other users (it runs as uid {os.geteuid()} "
                f"without {', '.join(missing)}), so every script runs as its own user; run it "
                f"as root to isolate projects, or accept one user for all scripts with {off}"
            )
        )
    check_reachable(home, off)
    users = GroupUsers(home, uid_range)
    open_home(home)
    launcher = None if executable is None else scripts_executable(home, executable, off)
    return Policy(users=users, executable=launcher)


def scripts_executable(home: Path, executable: str, off: str) -> str | None:
    """None when the scripts' uids can run ``executable`` themselves; else the path of a
    launcher through the system's Python (reach.system_launcher: this installation, or
    the executor alone); else ConfigError naming what is closed and the fixes."""
    why = reach.unreachable(executable)
    if why is None:
        return None
    launcher = reach.system_launcher(home)
    if isinstance(launcher, reach.Launcher):
        log.warning("scripts' uids cannot run %s (%s): they call %s through the system's "
                    "Python instead (%s)", executable, why, launcher.kind,
                    launcher.path)  # fmt: skip
        return str(launcher.path)
    raise ConfigError(
        f"scripts run as their isolation groups' users could not run {executable} (the "
        f"`tentacle` of every deployment step): {why}, and {launcher}; install tentacle "
        "where other users can run it (the Debian package, or a "
        "venv of /usr/bin/python3 outside a private home), open the folder (chmod o+x), or "
        f"accept one user for all scripts ({off})"
    )


def check_reachable(home: Path, off: str) -> None:
    """ConfigError unless every folder above ``home`` may be searched by any user: the
    scripts' uids have no groups, so they need the others' x bit to reach their own."""
    for folder in reversed(home.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise ConfigError(
                f"scripts cannot run as their isolation groups' users: {folder} (above the "
                f"instance home {home}, mode {stat.S_IMODE(mode):04o}) is not searchable by "
                f"other users; allow it (chmod o+x {folder}), move the home, or accept one user "
                f"for all scripts ({off})"
            )


def open_home(home: Path) -> None:
    """Make the home searchable (0711: scripts pass through it to their workspaces and
    group folders, never list it) and everything else in it private to the agent:
    the identity, the state and anything an older version made readable."""
    home.chmod(SEARCHABLE_MODE)
    for entry in os.scandir(home):
        if entry.name in ("Work", GROUPS_FOLDER, reach.LAUNCHER_NAME) or entry.is_symlink():
            continue
        info = entry.stat(follow_symlinks=False)
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(entry.path, stat.S_IMODE(info.st_mode) & 0o700)
