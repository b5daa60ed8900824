"""agent (alias run): the daemon in the foreground."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
from typing import TYPE_CHECKING

import click

from agent.certs import exposed_identity_warning, generate_identity, load_identity, save_identity
from agent.cli.context import current
from agent.cli.logs import configure_logging
from agent.cli.options import instance_option
from agent.config.instances import HOME_MODE

DEFAULT_GRACE = 30.0  # agent.daemon is imported only when the agent runs: it is heavy

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
    """Run the agent in the foreground until SIGTERM or Ctrl-C."""
    configure_logging(log_format)
    context = current()
    instance = context.open(instance_name)
    config = instance.effective(context.environ)
    if not config.identity_path.exists():
        config.home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
        save_identity(config.identity_path, generate_identity())
        log.info("generated a certificate for %s", instance.name)
    warning = exposed_identity_warning(config.identity_path)
    if warning is not None:
        log.warning("%s", warning)
    identity = load_identity(config.identity_path)
    log.info("instance %s, thumbprint %s", instance.name, identity.thumbprint)
    from agent.daemon import AgentRun

    executable = shutil.which("tentacle") or sys.argv[0]
    run = AgentRun(instance.name, config, identity, grace, context.environ, executable,
                   config_path=instance.config_path)  # fmt: skip
    asyncio.run(_serve(run))


async def _serve(run: AgentRun) -> None:
    from agent.daemon import run_agent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def ready(urls: list[str]) -> None:
        if not urls:
            click.echo("Agent will not listen", color=False)
        for url in urls:
            click.echo(f"Agent listening on: {url}")

    await run_agent(run, stop, ready)
    log.info("agent stopped")
