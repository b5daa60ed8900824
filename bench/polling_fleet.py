"""P5's agents: many lightweight polling agents in one process, sharing a certificate.

Usage: polling_fleet.py WORK INDEX PORT AGENTS CONNECTIONS. Each agent has its
own subscription id (all listed in WORK/fleet-INDEX.subscriptions) and keeps
CONNECTIONS connections to the listener with the agent's own poll loop (backoff
and all), answering capabilities calls. Runs on the loop TENTACLE_EVENT_LOOP
asks for. Prints ``started`` as it launches them; stops when killed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from agent import __version__
from agent.certs import load_identity
from agent.cli.loop import run as run_on_loop
from agent.config.polling import new_subscription_id
from agent.services.capabilities import capabilities_methods
from agent.services.router import Router
from agent.transport.poller import poll
from agent.transport.settings import ChannelSettings


async def run(work: Path, index: int, port: int, agents: int, connections: int) -> None:
    identity = load_identity(work / f"fleet-{index}.pem")
    hub_thumbprint = (work / "hub.thumbprint").read_text()
    router = Router()
    capabilities = capabilities_methods(work, lambda: router.advertised, __version__)
    router.add("capabilities", 1, capabilities)
    settings = ChannelSettings(identity, f"fleet-{index}", __version__, router.advertised)
    stop = asyncio.Event()
    subscriptions = [new_subscription_id() for _ in range(agents)]
    (work / f"fleet-{index}.subscriptions").write_text("\n".join(subscriptions))
    loops = [
        poll(f"https://127.0.0.1:{port}/", hub_thumbprint, subscription, settings, router, stop)
        for subscription in subscriptions
        for _ in range(connections)
    ]
    print("started", flush=True)
    await asyncio.gather(*loops)


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)  # 2,000 reconnect warnings are not news here
    work, index, port, agents, connections = sys.argv[1:6]
    run_on_loop(run(Path(work), int(index), int(port), int(agents), int(connections)))
