"""P1's floor: what one `echo hi` script costs in system calls alone, made as the agent
makes them, without the agent (no protocol, no event loop, no Python between steps).

Per script, as the agent's design has it (agent/scripts/runner.py, docs/architecture.md):
a workspace folder on the disk with the script, a state file renamed into place and
the raw output files; the wrapper (bash: it reads the gate, records its pid, runs the
script in a subshell and writes its exit code, so that a script outlives a killed
agent) started as an unprivileged uid through nsenter; moved into a cgroup of its own
before the word to go; waited for; the cgroup and the workspace removed.

Compared, p50 against p50, with P1's own baseline: a bare ``bash -c 'echo hi'``
spawn, plus one raw mTLS request on both sides (P1_REQUEST_MS: an estimate of
P1's raw request on this kind of machine, not measured in this run). Measured
with and without the uid and the cgroup, to show each one's share. No agent can
do less than this floor and keep what the floor keeps; P1's target (<= 1.5) is
for the agent's whole round trip.

P2's floor: the fullest of those variants, 32 at a time (threads: each waits in
the kernel), in scripts a second, against raw ``bash -c`` spawns made the same way
(P2's target, >= 0.7 of raw, is for the agent's).
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness import disk_folder

from agent.scripts import cgroups

ROUNDS = 300
CONCURRENCY, BATCH = 32, 640  # P2's
# P1's raw mTLS request, p50, as bench_scripts.py measured it on these machines (0.27-0.49
# ms): an estimate, not measured here; a larger one would only bring the ratios nearer 1
P1_REQUEST_MS = 0.3
NOBODY = 65534
WRAPPER = "read -r go || exit 125\necho $$ > wrapper.pid\n(. ./script.sh) >&3 2>&4\necho $? > rc\n"


@dataclass(frozen=True)
class Floor:
    """What one variant makes: a uid switch, a cgroup (under ``base``), or neither."""

    name: str
    as_nobody: bool
    base: Path | None

    def script(self, workspace: Path, number: int) -> None:
        workspace.mkdir(0o700)
        (workspace / "script.sh").write_text("echo hi\n")
        staged = workspace / "state.tmp"
        staged.write_text('{"State":"Running"}')
        staged.rename(workspace / "state.json")
        if self.as_nobody:
            os.chown(workspace, NOBODY, NOBODY)
        out, err = (os.open(workspace / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                    for name in ("stdout.raw", "stderr.raw"))  # fmt: skip
        gate, go = os.pipe()
        actions = [(os.POSIX_SPAWN_DUP2, gate, 0), (os.POSIX_SPAWN_DUP2, out, 3),
                   (os.POSIX_SPAWN_DUP2, err, 4)]  # fmt: skip
        wrapper = ["bash", "-c", f"cd {workspace}\n{WRAPPER}"]
        if self.as_nobody:
            switch = ["nsenter", f"--setuid={NOBODY}", f"--setgid={NOBODY}", "--"]
            argv, program = [*switch, shutil.which("bash") or "/bin/bash", *wrapper[1:]], "nsenter"
        else:
            argv, program = wrapper, "bash"
        pid = os.posix_spawn(shutil.which(program) or program, argv, dict(os.environ),
                             file_actions=actions, setsid=True)  # fmt: skip
        for fd in (gate, out, err):
            os.close(fd)
        group = None
        if self.base is not None:
            group = self.base / f"script-{number}"
            group.mkdir()
            (group / "cgroup.procs").write_text(str(pid))
        os.write(go, b"go\n")
        os.close(go)
        _, status = os.waitpid(pid, 0)
        if group is not None:
            group.rmdir()
        if (
            os.waitstatus_to_exitcode(status) != 0
            or (workspace / "stdout.raw").read_bytes() != b"hi\n"
        ):
            raise SystemExit(f"{self.name}: the script did not print hi (status {status})")
        shutil.rmtree(workspace)


def _numbered(floor: Floor, work: Path, number: int) -> None:
    floor.script(work / f"w{number}", number)


def spawn_echo() -> None:
    subprocess.run(["bash", "-c", "echo hi"], stdout=subprocess.PIPE, check=True)


def p50_ms(operation: Callable[[int], None]) -> float:
    times = []
    for number in range(ROUNDS):
        started = time.perf_counter()
        operation(number)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def rate(operation: Callable[[int], None]) -> float:
    """Operations a second, CONCURRENCY at a time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(operation, range(BATCH)))
    return BATCH / (time.perf_counter() - started)


def variants(base: Path | None) -> list[Floor]:
    root = os.geteuid() == 0 and shutil.which("nsenter") is not None
    found = [Floor("neither", False, None)]
    if base is not None:
        found.append(Floor("a cgroup", False, base))
    if root:
        found.append(Floor("a uid", True, None))
    if root and base is not None:
        found.append(Floor("a uid and a cgroup (as the bench's agent runs)", True, base))
    return found


def main() -> None:
    try:
        layout = cgroups.detect(f"floor-{os.getpid()}")
        base: Path | None = layout.base
    except cgroups.Unavailable as why:
        print(f"no cgroups here ({why}): measured without them")
        base = None
    with tempfile.TemporaryDirectory(prefix="tentacle-floor-", dir=disk_folder()) as folder:
        work = Path(folder)
        work.chmod(0o711)  # searchable by the scripts' uid, as an agent's home is
        ratios: list[str] = []
        try:
            for floor in variants(base):
                floor.script(work / "warm-up", -1)
                raw = p50_ms(lambda _: spawn_echo())
                made = p50_ms(functools.partial(_numbered, floor, work))
                ratio = (made + P1_REQUEST_MS) / (raw + P1_REQUEST_MS)
                print(f"P1 floor with {floor.name}: {made:.2f} ms a script in system calls "
                      f"alone; raw spawn {raw:.2f} ms", flush=True)  # fmt: skip
                ratios.append(f"RATIO P1 floor with {floor.name} (+{P1_REQUEST_MS} ms request "
                              f"each): {ratio:.2f} (P1's target <= 1.5)")  # fmt: skip
            fullest = variants(base)[-1]
            raw_rate = rate(lambda _: spawn_echo())
            floor_rate = rate(functools.partial(_numbered, fullest, work))
            print(f"P2 floor with {fullest.name}, {CONCURRENCY} at a time: {floor_rate:.0f} "
                  f"scripts/s in system calls alone; raw {raw_rate:.0f} spawns/s")  # fmt: skip
            ratios.append(f"RATIO P2 floor with {fullest.name}: {floor_rate / raw_rate:.2f} "
                          "(P2's target >= 0.7)")  # fmt: skip
        finally:
            if base is not None:
                base.rmdir()
    print("\n".join(ratios))


if __name__ == "__main__":
    main()
