"""``--metrics HOST:PORT`` for `tentacle agent` and `tentacle hub serve`, and
`tentacle livez` (exit 0/1, for a container's health check).

The endpoint (agent.observability.endpoint) serves /metrics, /livez and /readyz
on that port only; without ``--metrics`` nothing listens for them. `tentacle livez`
needs no port: the agent touches ``HOME/tentacle.heartbeat`` every few seconds
while its event loop turns (agent.observability.heartbeat), and holds its
instance's lock while it runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from agent.cli.context import current
from agent.cli.options import instance_option

if TYPE_CHECKING:
    from agent.observability.metrics import AgentMetrics

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_MAX_AGE = 30.0  # seconds: six missed beats (one every 5 s)


def _parse_metrics(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from agent.observability.endpoint import parse_address

    try:
        return parse_address(value)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx, param) from None


def metrics_option(function: F) -> F:
    """``--metrics HOST:PORT``: serve /metrics, /livez and /readyz there."""
    option = click.option(
        "--metrics",
        metavar="HOST:PORT",
        callback=_parse_metrics,
        help="serve Prometheus metrics (/metrics) and health (/livez, /readyz) over plain "
        "HTTP on this address only, e.g. 127.0.0.1:9100 (port 0 picks a free one)",
    )
    return option(function)


@contextlib.asynccontextmanager
async def serving_metrics(
    home: Path, address: tuple[str, int] | None
) -> AsyncIterator[AgentMetrics | None]:
    """An agent's metrics served at ``address`` for the block (None, and nothing served,
    without one). Raises EndpointError when the address cannot be listened on."""
    if address is None:
        yield None
        return
    from agent.observability.endpoint import Endpoint, Probes
    from agent.observability.metrics import AgentMetrics

    metrics = AgentMetrics(home, home / "Work")
    endpoint = Endpoint(metrics.registry, Probes(metrics.heartbeat, metrics.readiness))
    url = await endpoint.start(*address)
    click.echo(f"Metrics on: {url}metrics")
    try:
        yield metrics
    finally:
        await endpoint.stop()


@click.command("livez")
@instance_option
@click.option(
    "--max-age",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_MAX_AGE,
    show_default=True,
    help="seconds since the agent's last heartbeat beyond which it counts as hung",
)
def livez_command(instance_name: str | None, max_age: float) -> None:
    """Exit 0 if the instance's agent runs and its event loop turns, else 1; one line
    says why. For container health checks: needs no --metrics port."""
    from agent.daemon import running_agent
    from agent.observability.heartbeat import HEARTBEAT_FILE, file_age

    context = current()
    home = context.open(instance_name).effective(context.environ).home
    pid = running_agent(home)
    if pid is None:
        _not_live(f"no agent is running for this instance (none holds {home / 'tentacle.lock'})")
    age = file_age(home / HEARTBEAT_FILE)
    if age is None:
        _not_live(f"the agent (pid {pid}) has not written its heartbeat {home / HEARTBEAT_FILE}")
    assert age is not None
    if age > max_age:
        _not_live(f"the agent (pid {pid}) is hung: its last heartbeat was {age:.1f} s ago "
                  f"(more than --max-age {max_age:g} s)")  # fmt: skip
    click.echo(f"live: the agent (pid {pid}) beat {max(age, 0.0):.1f} s ago")


def _not_live(reason: str) -> None:
    click.echo(f"not live: {reason}")
    raise click.exceptions.Exit(1)
