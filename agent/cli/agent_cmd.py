"""agent (alias run): the daemon in the foreground.

Exit codes: 0 after a graceful stop (the first SIGTERM or SIGINT: calls in
flight get ``--grace`` seconds); 3 when a second signal cut calls in flight off;
2 when the agent cannot start for this instance (another agent holds it, or
it would neither listen nor poll); 1 any other controlled failure.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent.certs import (
    Identity,
    exposed_identity_warning,
    generate_identity,
    load_identity,
    save_identity,
)
from agent.cli.context import current
from agent.cli.logs import configure_logging
from agent.cli.loop import run as run_on_loop
from agent.cli.options import instance_option
from agent.config.instances import HOME_MODE

DEFAULT_GRACE = 30.0  # agent.daemon is imported only when the agent runs: it is heavy
EXIT_REFUSED = 2  # the CLI's usage/configuration code
EXIT_STOPPED_AT_ONCE = 3

if TYPE_CHECKING:
    from agent.daemon import AgentRun

log = logging.getLogger("agent")


@click.command("agent")
@instance_option
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="console log lines for people or machines",
)
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=DEFAULT_GRACE,
    show_default=True,
    help="seconds calls in flight may take to finish after SIGTERM",
)
def agent_command(instance_name: str | None, log_format: str, grace: float) -> None:
    """Run the agent in the foreground until SIGTERM or Ctrl-C.

    The first signal stops it gracefully (exit 0), a second one at once (exit 3)."""
    signals = _Signals()  # before anything else: no signal may meet the default handler
    configure_logging(log_format)
    context = current()
    instance = context.open(instance_name)
    config = instance.effective(context.environ)
    from agent.daemon import AgentRun, check_runnable, instance_lock
    from agent.errors import ConfigError, InstanceError

    try:
        check_runnable(config)
        with instance_lock(config.home):
            identity = _identity(instance.name, config.identity_path, config.home)
            executable = shutil.which("tentacle") or sys.argv[0]
            run = AgentRun(instance.name, config, identity, grace, context.environ, executable,
                           config_path=instance.config_path)  # fmt: skip
            run_on_loop(_serve(run, signals), context.environ, announce=True)
    except (ConfigError, InstanceError) as error:
        raise _Refused(str(error)) from None
    if signals.stopped_at_once:
        raise click.exceptions.Exit(EXIT_STOPPED_AT_ONCE)


class _Refused(click.ClickException):
    """The agent cannot start for this instance: one line, the usage/configuration code."""

    exit_code = EXIT_REFUSED


def _identity(name: str, path: Path, home: Path) -> Identity:
    if not path.exists():
        home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
        save_identity(path, generate_identity())
        log.info("generated a certificate for %s", name)
    warning = exposed_identity_warning(path)
    if warning is not None:
        log.warning("%s", warning)
    identity = load_identity(path)
    log.info("instance %s, thumbprint %s", name, identity.thumbprint)
    return identity


class _Signals:
    """SIGTERM and SIGINT for the agent's whole life: the first asks for a graceful
    stop, any later one for a stop at once.

    Installed with ``signal.signal`` before the event loop exists, and replaced
    by "ignore" once the agent has stopped, never by the default (which kills
    the process): asyncio removes its handlers when the loop closes, and Python
    restores the default for its own handlers when the interpreter finalizes,
    so a second signal during the last steps of a stop killed the agent (exit
    -15 to its parent, 143 to a shell) before it could exit with its code.
    """

    def __init__(self) -> None:
        self.received = 0
        self.stopped_at_once = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def attach(self) -> tuple[asyncio.Event, asyncio.Event]:
        """The (stop, hurry) events of the running loop; signals so far count."""
        self._loop = asyncio.get_running_loop()
        self._deliver()
        return self._stop, self._hurry

    def detach(self, drained: bool) -> None:
        """The agent has stopped: later signals change nothing (but still do not kill).
        It stopped at once if a second signal cut calls in flight off."""
        self._loop = None
        self.stopped_at_once = self._hurry.is_set() and not drained
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)  # finalization leaves "ignore" alone

    def _handle(self, signum: int, frame: object) -> None:
        self.received += 1
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        if self.received >= 1:
            self._stop.set()
        if self.received >= 2 and not self._hurry.is_set():
            log.warning("a second signal: stopping at once; calls in flight are cut off")
            self._hurry.set()


async def _serve(run: AgentRun, signals: _Signals) -> None:
    from agent.daemon import run_agent

    stop, hurry = signals.attach()

    def ready(urls: list[str]) -> None:
        if not urls:
            click.echo("Agent will not listen", color=False)
        for url in urls:
            click.echo(f"Agent listening on: {url}")

    drained = False
    try:
        drained = await run_agent(run, stop, ready, hurry)
    finally:
        signals.detach(drained)
    log.info("agent stopped at once" if signals.stopped_at_once else "agent stopped")
