"""The agent daemon: wires an instance's config, identity, services and listener.

It owns no process-wide state: the CLI hands it the effective config and a
stop event (set on SIGTERM), and is told the URLs once the agent is ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent import __version__
from agent.certs import Identity
from agent.config.model import InstanceConfig
from agent.scripts.manager import ScriptManager, ScriptSettings
from agent.services.capabilities import capabilities_methods
from agent.services.files import FileService
from agent.services.router import Router
from agent.services.scripts import ScriptService
from agent.transport.dialer import Proxy
from agent.transport.listener import Listener
from agent.transport.polling import poll, proxy_from_environment
from agent.transport.settings import ChannelSettings

log = logging.getLogger(__name__)


# Never passed to scripts: Debian's bash reads ~/.bashrc when it sees them.
HIDDEN_VARIABLES = ("SSH_CLIENT", "SSH2_CLIENT", "SSH_CONNECTION", "SSH_TTY")


@dataclass(frozen=True)
class AgentRun:
    name: str
    config: InstanceConfig
    identity: Identity
    grace: float = 30.0
    environment: Mapping[str, str] = field(default_factory=dict)
    executable: str = "tentacle"
    config_path: Path | None = None  # the instance's config file, kept from the file service


def script_environment(run: AgentRun) -> dict[str, str]:
    """The environment scripts get: the agent's, less SSH's, plus the Tentacle variables."""
    environment = {k: v for k, v in run.environment.items() if k not in HIDDEN_VARIABLES}
    environment.update(
        TentacleHome=str(run.config.home),
        TentacleApplications=str(run.config.applications),
        TentacleInstanceName=run.name,
        TentacleVersion=__version__,
        TentacleExecutablePath=run.executable,
        TentacleJournal=str(run.config.home / "DeploymentJournal.json"),
    )
    return environment


def polling_proxy(run: AgentRun, address: str) -> Proxy | None:
    """The configured polling proxy; else HTTPS_PROXY unless NO_PROXY exempts ``address``."""
    config = run.config
    if config.polling_proxy_host:
        return Proxy(config.polling_proxy_host, config.polling_proxy_port or 80,
                     config.polling_proxy_username, config.polling_proxy_password)  # fmt: skip
    return proxy_from_environment(address, run.environment)


def script_manager(run: AgentRun) -> ScriptManager:
    config = run.config
    return ScriptManager(
        ScriptSettings(
            work=config.home / "Work",
            environment=script_environment(run),
            max_running=config.max_running_scripts or None,
            retention=config.workspace_retention,
            sweep_interval=config.workspace_sweep_interval,
        )
    )


def build_router(
    config: InstanceConfig, scripts: ScriptManager, config_path: Path | None = None
) -> Router:
    """Every service this agent serves, by name and version."""
    router = Router()
    router.add(
        "capabilities", 1, capabilities_methods(config.home, lambda: router.advertised, __version__)
    )
    router.add("files", 1, file_service(config, config_path).methods())
    router.add("scripts", 1, ScriptService(scripts).methods())
    return router


def file_service(config: InstanceConfig, config_path: Path | None) -> FileService:
    """The file service, kept from the instance's own files and the scripts' Work folder."""
    private = {config.identity_path: "identity (private key and certificate)"}
    if config_path is not None:
        private[config_path] = "configuration"
    return FileService(config.home, config.file_roots, private, (config.home / "Work",))


def listen_urls(addresses: list[tuple[str, int]]) -> list[str]:
    return [f"wss://{f'[{host}]' if ':' in host else host}:{port}/" for host, port in addresses]


async def run_agent(
    run: AgentRun, stop: asyncio.Event, on_ready: Callable[[list[str]], None]
) -> None:
    """Serve until ``stop`` is set, then drain calls in flight for ``run.grace`` seconds."""
    config = run.config
    scripts = script_manager(run)
    await scripts.open()
    router = build_router(config, scripts, run.config_path)
    settings = ChannelSettings(
        run.identity, run.name, __version__, router.advertised, config.heartbeat_interval
    )
    for peer in config.trusted:
        if peer.is_pending:
            log.warning(
                "trust for %s is pending: its certificate is not known yet", peer.thumbprint
            )
    trusted = [peer.certificate_pem for peer in config.trusted_certificates if peer.certificate_pem]
    if not trusted:
        log.warning("no trusted certificates: every caller will be refused")
    pollers = [
        asyncio.create_task(
            poll(
                server.address,
                server.thumbprint,
                config.subscription_id or "",
                settings,
                router,
                stop,
                polling_proxy(run, server.address),
            )
        )
        for server in config.polling_servers
        for _ in range(config.polling_connection_count)
    ]
    try:
        if config.no_listen:
            on_ready([])
            await stop.wait()
            return
        listener = Listener(settings, trusted, router)
        addresses = await listener.start(config.listen_ip, config.port)
        on_ready(listen_urls(addresses))
        await stop.wait()
        log.info("stopping: no new connections; up to %.0f s for calls in flight", run.grace)
        await listener.stop(run.grace)
    finally:
        await asyncio.gather(*pollers, return_exceptions=True)
        await scripts.close()  # running scripts carry on; the next start re-attaches
