"""agent (alias run): the daemon in the foreground.

Exit codes, for a supervisor (README "Exit codes"): 0 stopped (the first
SIGTERM or SIGINT: calls in flight get ``--grace`` seconds); 1 an unexpected
failure (another agent holds the instance, the port is taken, a bug); 2 a
usage error (a mistyped option); 3 a configuration error (an unknown instance,
an invalid file or environment variable, an unreadable identity, an instance
that would neither listen nor poll), which restarting will not mend, so a
systemd unit can say ``RestartPreventExitStatus=3``; 128 + N when a second
signal N cut calls in flight off (143 for SIGTERM, 130 for SIGINT), as a shell
reports a process killed by N.
"""

from __future__ import annotations

import asyncio
import logging
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
from agent.cli.drain_cmd import DrainSignal
from agent.cli.logs import configure_logging
from agent.cli.loop import run as run_on_loop
from agent.cli.metrics_cmd import metrics_option, serving_metrics
from agent.cli.notify import Notifier, on_journal, without_service_variables
from agent.cli.options import instance_option
from agent.config.instances import HOME_MODE
from agent.errors import CertificateError, ConfigError
from agent.scripts.runner import installed_executable

DEFAULT_GRACE = 30.0  # agent.daemon is imported only when the agent runs: it is heavy
EXIT_FAILURE = 1
EXIT_CONFIGURATION = 3

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
@metrics_option
def agent_command(
    instance_name: str | None, log_format: str, grace: float, metrics: tuple[str, int] | None
) -> None:
    """Run the agent in the foreground until SIGTERM or Ctrl-C.

    The first signal stops it gracefully (exit 0), a second one at once (exit 128 + its
    number: 143 for SIGTERM, 130 for Ctrl-C). A configuration that cannot run exits 3."""
    signals = _Signals()  # before anything else: no signal may meet the default handler
    drain_signal = DrainSignal()
    context = current()
    configure_logging(log_format, journal=on_journal(context.environ, sys.stderr.fileno()))
    from agent.daemon import AgentRun, check_runnable, instance_lock
    from agent.errors import InstanceError
    from agent.observability.endpoint import EndpointError

    try:
        notifier = Notifier.from_environment(context.environ)
        instance = context.open(instance_name)
        config = instance.effective(context.environ)
        check_runnable(config)
    except (ConfigError, InstanceError) as error:
        raise _ConfigurationError(str(error)) from None
    try:
        with instance_lock(config.home):
            identity = _identity(instance.name, config.identity_path, config.home)
            executable = own_executable()
            environment = without_service_variables(context.environ)
            run = AgentRun(instance.name, config, identity, grace, environment, executable,
                           config_path=instance.config_path)  # fmt: skip
            serving = _serve(run, signals, metrics, notifier, drain_signal)
            run_on_loop(serving, context.environ, announce=True)
    except ConfigError as error:
        raise _ConfigurationError(str(error)) from None
    except (InstanceError, EndpointError) as error:  # held by another, port taken: may pass
        raise _CannotStart(str(error)) from None
    if signals.cut_off_by is not None:
        raise click.exceptions.Exit(128 + signals.cut_off_by)


class _ConfigurationError(click.ClickException):
    """The configuration cannot run: restarting will not help until a person fixes it."""

    exit_code = EXIT_CONFIGURATION


class _CannotStart(click.ClickException):
    """The agent cannot start now, for a reason that may pass (unlike a configuration)."""

    exit_code = EXIT_FAILURE


def own_executable() -> str:
    """The `tentacle` the agent's scripts call: this installation's, else how this was
    started."""
    return installed_executable(sys.argv[0])


def _identity(name: str, path: Path, home: Path) -> Identity:
    if not path.exists():
        home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
        save_identity(path, generate_identity())
        log.info("generated a certificate for %s", name)
    warning = exposed_identity_warning(path)
    if warning is not None:
        log.warning("%s", warning)
    try:
        identity = load_identity(path)
    except CertificateError as error:  # the instance's own identity: part of its configuration
        raise ConfigError(str(error)) from None
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
        self.second: int | None = None  # the number of the second signal, if one came
        self.cut_off_by: int | None = None  # that number, if it cut calls in flight off
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
        self.cut_off_by = self.second if self._hurry.is_set() and not drained else None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)  # finalization leaves "ignore" alone

    def _handle(self, signum: int, frame: object) -> None:
        self.received += 1
        if self.received == 2:  # the second signal is the one that hurries
            self.second = signum
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        if self.received >= 1:
            self._stop.set()
        if self.received >= 2 and not self._hurry.is_set():
            log.warning("a second signal: stopping at once; calls in flight are cut off")
            self._hurry.set()


async def _serve(
    run: AgentRun,
    signals: _Signals,
    metrics_at: tuple[str, int] | None,
    notifier: Notifier,
    drain_signal: DrainSignal,
) -> None:
    from agent.daemon import run_agent

    stop, hurry = signals.attach()
    drain_wakeup = drain_signal.attach()

    def ready(urls: list[str]) -> None:
        if not urls:
            click.echo("Agent will not listen", color=False)
        for url in urls:
            click.echo(f"Agent listening on: {url}")
        notifier.ready(serving_status(urls, len(run.config.polling_servers)))

    def stopping() -> None:
        notifier.stopping(f"stopping: up to {run.grace:.0f} s for calls in flight")

    drained = False
    watchdog = asyncio.create_task(notifier.keep_alive())
    try:
        async with serving_metrics(run.config.home, metrics_at) as metrics:
            drained = await run_agent(
                run,
                stop,
                ready,
                hurry,
                metrics=metrics,
                on_stopping=stopping,
                drain_wakeup=drain_wakeup,
            )
    finally:
        watchdog.cancel()
        signals.detach(drained)
        notifier.close()
        drain_signal.detach()
    log.info("agent stopped at once" if signals.cut_off_by else "agent stopped")


def serving_status(urls: list[str], polled: int) -> str:
    """systemd's STATUS= line once the agent serves: where it listens, whom it polls."""
    parts = [f"listening on {', '.join(urls)}"] if urls else []
    if polled:
        parts.append(f"polling {polled} server{'' if polled == 1 else 's'}")
    return "; ".join(parts) or "serving"
