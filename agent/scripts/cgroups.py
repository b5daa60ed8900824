"""A cgroup per script: its whole process tree kept together, killed together, limited.

Where the agent may manage cgroups (cgroup v2 mounted, and either root or a
subtree delegated to it, as systemd's ``Delegate=yes`` gives), each script runs
in a cgroup of its own, ``<base>/script-<ticket key>``, under a base named for
the agent's instance (``tentacle/<id>`` below the agent's own cgroup). A
process cannot leave its cgroup on its own (``setsid`` or a double fork do not
help), so a cancel reaches every descendant and a restarted agent finds what
belongs to a script by its cgroup's name.

Membership and killing use the v2 hierarchy (``cgroup.procs``, ``cgroup.kill``,
or freezing and killing each member where ``cgroup.kill`` is missing). Limits
(``memory.max``, ``pids.max``, ``cpu.weight``) use the v2 controllers the
agent's cgroup offers; on a hybrid host whose v2 hierarchy has no such
controller (the v1 controllers are mounted apart), the v1 hierarchy of that
controller gets a cgroup of the same name for the limit alone
(``memory.limit_in_bytes``, ``pids.max``, ``cpu.shares``).

Nothing here is asynchronous: each operation is a few writes to cgroupfs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROC_SELF = Path("/proc/self")
PREFIX = "script-"  # a script's cgroup is PREFIX + its ticket key
AGENT_LEAF = "tentacle-agent"  # where the agent moves itself to enable controllers below it
CONTROLLERS = ("memory", "pids", "cpu")  # those the limits need
KILL_ROUNDS = 100  # freeze-and-kill rounds before giving up on a cgroup that keeps filling


@dataclass(frozen=True)
class Limits:
    """What a script may use; None: no limit of that kind."""

    memory_bytes: int | None = None
    pids: int | None = None
    cpu_weight: int | None = None  # 1..10000, cgroup v2's scale (100 is the default)

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.memory_bytes, self.pids, self.cpu_weight))

    def within(self, ceiling: Limits) -> Limits:
        """These limits, but never above ``ceiling`` (the operator's configured ones):
        a call may ask for less memory or fewer processes, never for more. The CPU
        weight is a share, not a ceiling: the call's wins."""
        return Limits(
            _smaller(self.memory_bytes, ceiling.memory_bytes),
            _smaller(self.pids, ceiling.pids),
            self.cpu_weight if self.cpu_weight is not None else ceiling.cpu_weight,
        )

    def describe(self) -> str:
        parts = []
        if self.memory_bytes is not None:
            parts.append(f"memory {self.memory_bytes} bytes")
        if self.pids is not None:
            parts.append(f"{self.pids} processes")
        if self.cpu_weight is not None:
            parts.append(f"CPU weight {self.cpu_weight}")
        return ", ".join(parts) or "none"


def _smaller(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass(frozen=True)
class Hits:
    """How often a script's limits were hit (from its cgroup's event counters)."""

    oom_kills: int = 0  # processes the kernel killed at the memory limit
    pids_refused: int = 0  # forks refused at pids.max


@dataclass(frozen=True)
class Layout:
    """Where this agent's script cgroups go: ``base`` in the v2 hierarchy, and for
    each limit's controller the v2 hierarchy itself (it offers it) or a v1 folder."""

    base: Path
    v2_controllers: frozenset[str] = frozenset()
    v1_bases: Mapping[str, Path] = field(default_factory=dict)

    def describe(self) -> str:
        """For the start-up log: where scripts go, which limits work and how."""
        how = [f"{c} (v2)" for c in CONTROLLERS if c in self.v2_controllers]
        how += [f"{c} (v1)" for c in CONTROLLERS if c in self.v1_bases]
        return f"a cgroup per script under {self.base}; limits: {', '.join(how) or 'none'}"


class Unavailable(Exception):
    """Why scripts cannot have cgroups here (the message is for the operator)."""


def instance_id(work: Path) -> str:
    """A short, stable name for an instance's script cgroups: from its work folder,
    so that a restarted agent finds the cgroups of the one before it."""
    return hashlib.sha256(str(work.resolve()).encode()).hexdigest()[:12]


def detect(instance: str, proc_self: Path = PROC_SELF) -> Layout:
    """The layout for ``instance``'s scripts, the folders made and the controllers
    enabled; raises Unavailable saying why not (no cgroup v2, no write access)."""
    mounts = _mounts(proc_self / "mountinfo")
    v2_mount = mounts.get("cgroup2")
    if v2_mount is None:
        raise Unavailable("no cgroup v2 hierarchy is mounted")
    paths = _own_cgroups(proc_self / "cgroup")
    own = v2_mount / paths.get("", "/").lstrip("/")
    if own.name == AGENT_LEAF:  # moved there by an agent before this one (a restart)
        own = own.parent
    if not (os.access(own, os.W_OK) and os.access(own / "cgroup.procs", os.W_OK)):
        raise Unavailable(
            f"no write access to the agent's cgroup {own} (uid {os.geteuid()}): cgroups need "
            "root or a delegated subtree (systemd Delegate=yes)"
        )
    base = own / "tentacle" / instance
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Unavailable(f"cannot create {base}: {error.strerror}") from None
    if not (base / "cgroup.procs").exists():
        raise Unavailable(f"{base} is not a cgroup v2 folder")
    v2 = _enable_controllers(own, base)
    v1 = {c: mounts[c] / paths.get(c, "/").lstrip("/") / "tentacle" / instance
          for c in CONTROLLERS if c not in v2 and c in mounts}  # fmt: skip
    usable = {}
    for controller, folder in v1.items():
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            usable[controller] = folder
    return Layout(base, frozenset(v2), usable)


def _mounts(mountinfo: Path) -> dict[str, Path]:
    """The cgroup mount points: "cgroup2" for the v2 hierarchy, each v1 controller's name."""
    found: dict[str, Path] = {}
    try:
        text = mountinfo.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        fields = line.split(" - ", 1)
        if len(fields) != 2:
            continue
        before, after = fields[0].split(), fields[1].split()
        if len(before) < 5 or len(after) < 3:
            continue
        point = Path(before[4])
        if after[0] == "cgroup2":
            found.setdefault("cgroup2", point)
        elif after[0] == "cgroup":
            for option in after[2].split(","):
                if option in CONTROLLERS:
                    found.setdefault(option, point)
    return found


def _own_cgroups(cgroup_file: Path) -> dict[str, str]:
    """This process's cgroup path in each hierarchy: "" for v2, each v1 controller's name."""
    found: dict[str, str] = {}
    try:
        text = cgroup_file.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for name in parts[1].split(",") if parts[1] else [""]:
                found[name] = parts[2]
    return found


def _enable_controllers(own: Path, base: Path) -> set[str]:
    """Enable the wanted controllers from ``own`` down to ``base``; the ones that are.

    A cgroup with processes of its own cannot pass controllers down (the root
    excepted): the agent, alone in a delegated cgroup, moves itself into a leaf
    of it first. Controllers the hierarchy does not offer are left to v1."""
    try:
        offered = set((own / "cgroup.controllers").read_text().split())
    except OSError:
        return set()
    wanted = [c for c in CONTROLLERS if c in offered]
    if not wanted:
        return set()
    parts = base.relative_to(own).parts
    # own and each folder down to base itself: base's children, the scripts, get them
    chain = [own] + [own.joinpath(*parts[: i + 1]) for i in range(len(parts))]
    request = " ".join(f"+{c}" for c in wanted)
    for folder in chain:
        try:
            _write(folder / "cgroup.subtree_control", request)
        except OSError as error:
            if error.errno != errno.EBUSY or folder != own or not _leave_for_leaf(own):
                return set()
            try:
                _write(folder / "cgroup.subtree_control", request)
            except OSError:
                return set()
    try:
        return set((base / "cgroup.subtree_control").read_text().split()) & set(wanted)
    except OSError:
        return set()


def _leave_for_leaf(own: Path) -> bool:
    """Move this process into ``own/AGENT_LEAF``, so that ``own`` holds no process."""
    leaf = own / AGENT_LEAF
    try:
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        return False
    return True


class ProcessTrees:
    """The script cgroups of one agent instance."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def create(self, key: str, limits: Limits) -> ScriptGroup:
        """A fresh cgroup for the script ``key``, with ``limits`` written. Raises OSError.

        Limits the agent has no controller for are left out: ``missing`` names them."""
        group = self.group(key)
        try:
            group.path.mkdir()
        except FileExistsError:
            group.remove()  # debris of a launch that never finished
            group.path.mkdir()
        try:
            used = group.apply(limits, self.layout.v2_controllers)
        except OSError:
            group.remove()
            raise
        # only the v1 cgroups made for a limit: a join, a look at the limits' counters
        # and the removal then touch no other (a few syscalls fewer per script)
        return ScriptGroup(group.path, {c: group.v1[c] for c in used})

    def group(self, key: str) -> ScriptGroup:
        """The script ``key``'s cgroup, whether it exists or not."""
        name = PREFIX + key
        return ScriptGroup(
            self.layout.base / name, {c: b / name for c, b in self.layout.v1_bases.items()}
        )

    def find(self, key: str) -> ScriptGroup | None:
        """The script ``key``'s cgroup if it exists (after a restart, say)."""
        group = self.group(key)
        return group if group.exists() else None

    def missing(self, limits: Limits) -> list[str]:
        """The kinds of ``limits`` this layout cannot enforce."""
        have = set(self.layout.v2_controllers) | set(self.layout.v1_bases)
        needs = {"memory": limits.memory_bytes, "pids": limits.pids, "cpu": limits.cpu_weight}
        return [kind for kind, value in needs.items() if value is not None and kind not in have]

    def sweep(self) -> list[str]:
        """Remove every empty script cgroup (those of scripts that ended while the
        agent was down, or whose removal failed); the keys removed."""
        removed = []
        for folder in _children(self.layout.base):
            key = folder.name[len(PREFIX) :]
            if self.group(key).remove():
                removed.append(key)
        for base in self.layout.v1_bases.values():  # v1 ones without a v2 one
            for folder in _children(base):
                with contextlib.suppress(OSError):
                    folder.rmdir()
        return removed

    def close(self) -> None:
        """Remove the empty script cgroups, and the instance's base if none is left
        (scripts left running keep theirs, and the base, for the next start)."""
        self.sweep()
        for base in (self.layout.base, *self.layout.v1_bases.values()):
            with contextlib.suppress(OSError):
                base.rmdir()


def _children(base: Path) -> Iterator[Path]:
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            if entry.is_dir(follow_symlinks=False) and entry.name.startswith(PREFIX):
                yield Path(entry.path)


@dataclass(frozen=True)
class ScriptGroup:
    """One script's cgroup: ``path`` in the v2 hierarchy, ``v1`` the limit-only ones."""

    path: Path
    v1: Mapping[str, Path] = field(default_factory=dict)

    def exists(self) -> bool:
        return (self.path / "cgroup.procs").exists()

    def apply(self, limits: Limits, v2_controllers: Iterable[str]) -> list[str]:
        """Write ``limits`` where each has its controller; v1 cgroups are made as needed.
        Returns the controllers whose v1 cgroup holds a limit."""
        v2, used = set(v2_controllers), []
        for controller, v2_file, v1_file, value in (
            ("memory", "memory.max", "memory.limit_in_bytes", limits.memory_bytes),
            ("pids", "pids.max", "pids.max", limits.pids),
            ("cpu", "cpu.weight", "cpu.shares", limits.cpu_weight),
        ):
            if value is None:
                continue
            if controller in v2:
                _write(self.path / v2_file, str(value))
                if controller == "memory":  # over the limit is killed, not swapped out
                    with contextlib.suppress(OSError):
                        _write(self.path / "memory.swap.max", "0")
            elif (folder := self.v1.get(controller)) is not None:
                folder.mkdir(exist_ok=True)
                used.append(controller)
                # cpu.shares: 1024 is v1's default as 100 is v2's
                _write(folder / v1_file, str(value * 1024 // 100 if controller == "cpu" else value))
                if controller == "memory":
                    with contextlib.suppress(OSError):
                        _write(folder / "memory.memsw.limit_in_bytes", str(value))
        return used

    def join(self, pid: int) -> None:
        """Move ``pid`` (a wrapper that has not started its script yet) into this cgroup,
        and into its v1 ones. Raises OSError."""
        for folder in (self.path, *(f for f in self.v1.values() if f.exists())):
            _write(folder / "cgroup.procs", str(pid))

    def members(self) -> list[int]:
        """The pids in this cgroup now (empty if it does not exist)."""
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(line) for line in text.split()]

    def populated(self) -> bool:
        try:
            events = _keyed((self.path / "cgroup.events").read_text())
        except OSError:
            return False
        return events.get("populated", 0) != 0

    def signal(self, signum: int, but: int | None = None) -> int:
        """Send ``signum`` to every member but ``but``; how many were signalled."""
        count = 0
        for pid in self.members():
            if pid != but:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signum)
                    count += 1
        return count

    def kill_all_but(self, spared: int) -> None:
        """SIGKILL every member but ``spared``, frozen meanwhile so that none forks
        past the kill (then thawed: the spared one records the outcome)."""
        with self._frozen():
            self.signal(signal.SIGKILL, but=spared)

    def kill(self) -> None:
        """SIGKILL every process in the cgroup: ``cgroup.kill`` (Linux 5.14), else
        frozen, each member killed, thawed, until none is left (bounded)."""
        try:
            _write(self.path / "cgroup.kill", "1")
            return
        except FileNotFoundError:
            if not self.exists():
                return  # the cgroup itself is gone (and with it every process)
        self.kill_each()

    def kill_each(self) -> None:
        """The kill without ``cgroup.kill``: frozen, each member killed, thawed, until
        none is left (bounded: a cgroup refilling forever is given up on)."""
        for _ in range(KILL_ROUNDS):
            if not self.members():
                return
            self.kill_all_but(-1)

    @contextlib.contextmanager
    def _frozen(self) -> Iterator[None]:
        freeze = self.path / "cgroup.freeze"
        try:
            _write(freeze, "1")
            frozen = True
        except OSError:
            frozen = False  # no freezer: the kill may miss a fork in flight
        try:
            yield
        finally:
            if frozen:
                with contextlib.suppress(OSError):
                    _write(freeze, "0")

    def hits(self) -> Hits:
        """The limits' event counters (0 where there are none)."""
        oom = _counter(self.path / "memory.events", "oom_kill")
        if (memory := self.v1.get("memory")) is not None:
            oom = max(oom, _counter(memory / "memory.oom_control", "oom_kill"))
        pids = _counter(self.path / "pids.events", "max")
        if (v1_pids := self.v1.get("pids")) is not None:
            pids = max(pids, _counter(v1_pids / "pids.events", "max"))
        return Hits(oom, pids)

    def remove(self) -> bool:
        """Remove the cgroup (and its v1 ones) if no process is left in it; whether it
        is gone. A cgroup still holding processes (a daemon the script left) stays."""
        gone = True
        for folder in (self.path, *self.v1.values()):
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                gone = False
        return gone


def _write(path: Path, text: str) -> None:
    """One write(2) of ``text`` (cgroupfs takes each write as one command)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _keyed(text: str) -> dict[str, int]:
    """A flat-keyed cgroup file ("name value" per line) as a dict."""
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            found[parts[0]] = int(parts[1])
    return found


def _counter(path: Path, name: str) -> int:
    try:
        return _keyed(path.read_text()).get(name, 0)
    except OSError:
        return 0
