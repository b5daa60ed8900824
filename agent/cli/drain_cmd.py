"""drain: ask the running agent of an instance to start no new scripts (or, with
``--resume``, to start them again), without stopping it.

The request goes through the instance's home (agent.drain): the command writes
``drain.json``, sends SIGUSR1 to the agent holding the instance's lock and waits,
up to ``--timeout``, for the agent's acknowledgement. The same works for an
agent started by hand, by systemd or in a container (run the command where the
agent runs: ``docker exec``), as the one user who may signal it (its own, or
root). Exit codes: 0 done (also when already so), 1 no agent runs (for a drain),
it cannot be signalled, or it did not answer in time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import click

from agent import drain
from agent.cli.context import current
from agent.cli.options import instance_option
from agent.errors import TentacleError

DRAIN_SIGNAL = signal.SIGUSR1
DEFAULT_TIMEOUT = 10.0
LOOK_INTERVAL = 0.05  # seconds between looks for the agent's answer (a CLI's bounded wait)


class DrainError(TentacleError):
    """The drain (or resume) could not be brought to the running agent."""


@click.command("drain")
@instance_option
@click.option("--resume", is_flag=True, help="accept new scripts again (undo a drain)")
@click.option(
    "--timeout",
    type=click.FloatRange(0),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="seconds to wait for the agent to acknowledge",
)
def drain_command(instance_name: str | None, resume: bool, timeout: float) -> None:
    """Make the running agent refuse new scripts, without stopping it (--resume: undo).

    Running scripts run to their end, their status, cancel and complete keep working,
    and uploads too; a hub sends the worker's next steps elsewhere. The drain lasts
    across restarts of the agent until --resume."""
    context = current()
    instance = context.open(instance_name)
    home = instance.effective(context.environ).home
    from agent.scripts.state import now

    pid = agent_pid(home)
    if pid is None:
        if not resume:
            raise DrainError(
                f"no agent is running for the instance {instance.name} (nothing holds "
                f"{home / 'tentacle.lock'}): there is nothing to drain; start it first "
                "(`tentacle agent`), or stop it if it should run nothing at all"
            )
        drain.write_request(home, False, now)
        click.echo(f"No agent is running for {instance.name}; it will accept new scripts "
                   "when it starts")  # fmt: skip
        return
    state = drain.write_request(home, not resume, now)
    _signal(pid, instance.name)
    ack = _wait_for_ack(home, state.request, timeout)
    if ack is None:
        raise DrainError(
            f"the agent of {instance.name} (pid {pid}) did not acknowledge within "
            f"{timeout:g} s; the request is kept in {home / drain.REQUEST_FILE} and takes "
            "effect when the agent reads it (at the latest when it next starts)"
        )
    if ack.draining:
        click.echo(f"{instance.name} is draining since {ack.since}: it starts no new scripts; "
                   f"{ack.running} script(s) still running")  # fmt: skip
    else:
        click.echo(f"{instance.name} accepts new scripts")


def agent_pid(home: Path) -> int | None:
    """The pid, as this process sees it, of the agent holding the instance's lock; None
    if none runs. Raises DrainError if one runs but cannot be seen from here."""
    from agent.daemon import LOCK_FILE_NAME, running_agent

    recorded = running_agent(home)
    if recorded is None:
        return None
    holders = lock_holders(home / LOCK_FILE_NAME)
    if holders is None:  # no /proc/locks: trust the file
        return _number(recorded)
    if _number(recorded) in holders:
        return _number(recorded)
    if len(holders) == 1:  # the agent's pid in this pid namespace (it sees another)
        return holders.pop()
    raise DrainError(
        f"the agent holding {home / LOCK_FILE_NAME} (pid {recorded} in its own view) is not "
        "visible from here (another pid namespace, such as a container's): run "
        "`tentacle drain` where the agent runs (`docker exec ... tentacle drain`)"
    )


def lock_holders(path: Path) -> set[int] | None:
    """The pids (in this process's pid namespace) holding an flock on ``path``, from
    /proc/locks; None where there is no /proc/locks."""
    try:
        info = path.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except FileNotFoundError:
        return None
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    holders = set()
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 27459 fe:00:2146749 0 EOF" (a blocked waiter has "->")
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:  # noqa: SIM102
            if fields[4].isdigit() and int(fields[4]) > 0:  # 0: a holder not visible here
                holders.add(int(fields[4]))
    return holders


def _number(pid: str) -> int:
    if not pid.isdigit():
        raise DrainError(f"the instance's lock file names no pid ({pid!r}): cannot signal it")
    return int(pid)


def _signal(pid: int, name: str) -> None:
    try:
        os.kill(pid, DRAIN_SIGNAL)
    except ProcessLookupError:
        raise DrainError(f"the agent of {name} (pid {pid}) has just stopped") from None
    except PermissionError:
        raise DrainError(
            f"not allowed to signal the agent of {name} (pid {pid}): run `tentacle drain` "
            "as the agent's user or as root"
        ) from None


def _wait_for_ack(home: Path, request: str, timeout: float) -> drain.Acknowledgement | None:
    deadline = time.monotonic() + timeout
    while True:
        ack = drain.read_ack(home)
        if ack is not None and ack.request == request:
            return ack
        if time.monotonic() >= deadline:
            return None
        time.sleep(LOOK_INTERVAL)  # a bounded wait for another process's file


class DrainSignal:
    """SIGUSR1 for the agent's whole life: each one asks it to read its drain request.

    Installed with ``signal.signal`` before the event loop exists, as the stop
    signals are (agent_cmd): SIGUSR1's default action kills, and a drain sent while
    the agent starts must not. Signals before ``attach`` are kept for it."""

    def __init__(self) -> None:
        self._pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        signal.signal(DRAIN_SIGNAL, self._handle)

    def attach(self) -> asyncio.Event:
        """The event the running loop's agent waits on (agent.daemon's ``drain_wakeup``)."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        if self._pending:
            self._wakeup.set()
        return self._wakeup

    def detach(self) -> None:
        self._loop = None
        signal.signal(DRAIN_SIGNAL, signal.SIG_IGN)

    def _handle(self, signum: int, frame: object) -> None:
        self._pending = True
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wakeup.set)
