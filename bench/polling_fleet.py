"""P5's agents: many lightweight polling agents in one process, sharing a certificate.

Usage: polling_fleet.py WORK INDEX PORT AGENTS CONNECTIONS. Each agent has its
own subscription id and keeps CONNECTIONS connections to the listener with the
agent's own poll loop (backoff and all), answering capabilities calls (all
listed in WORK/fleet-INDEX.subscriptions). Runs on the loop TENTACLE_EVENT_LOOP
asks for. Prints ``started`` as it launches them; stops when killed.

When WORK/fleet-INDEX.agents exists (P8: workers registered with a hub, each
with a certificate of its own), it says who the agents are instead, one a
line: ``SUBSCRIPTION PEMFILE``; AGENTS is then how many of them to run.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from agent import __version__
from agent.certs import Identity, load_identity
from agent.cli.loop import run as run_on_loop
from agent.config.polling import new_subscription_id
from agent.services.capabilities import capabilities_methods
from agent.services.router import Router
from agent.transport.poller import poll
from agent.transport.settings import ChannelSettings


def fleet(work: Path, index: int, agents: int) -> list[tuple[str, Identity]]:
    """(subscription, identity) of each agent: from WORK/fleet-INDEX.agents when it
    exists, else new subscriptions sharing the fleet's certificate."""
    listed = work / f"fleet-{index}.agents"
    if listed.exists():
        lines = listed.read_text().split("\n")
        pairs = [line.split(" ", 1) for line in lines if line.strip()][:agents]
        return [(subscription, load_identity(Path(pem))) for subscription, pem in pairs]
    shared = load_identity(work / f"fleet-{index}.pem")
    return [(new_subscription_id(), shared) for _ in range(agents)]


async def run(work: Path, index: int, port: int, agents: int, connections: int) -> None:
    hub_thumbprint = (work / "hub.thumbprint").read_text()
    router = Router()
    capabilities = capabilities_methods(work, lambda: router.advertised, __version__)
    router.add("capabilities", 1, capabilities)
    stop = asyncio.Event()
    members = fleet(work, index, agents)
    subscriptions = [subscription for subscription, _ in members]
    (work / f"fleet-{index}.subscriptions").write_text("\n".join(subscriptions))
    loops = [
        poll(
            f"https://127.0.0.1:{port}/",
            hub_thumbprint,
            subscription,
            ChannelSettings(identity, f"fleet-{index}", __version__, router.advertised),
            router,
            stop,
        )
        for subscription, identity in members
        for _ in range(connections)
    ]
    print("started", flush=True)
    await asyncio.gather(*loops)


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)  # 2,000 reconnect warnings are not news here
    work, index, port, agents, connections = sys.argv[1:6]
    run_on_loop(run(Path(work), int(index), int(port), int(agents), int(connections)))
