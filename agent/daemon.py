"""The agent daemon: wires an instance's config, identity, services and listener.

It owns no process-wide state: the CLI hands it the effective config, a stop
event (set on the first SIGTERM) and a hurry event (set on the second), and is
told the URLs once the agent is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent import __version__, drain
from agent.certs import Identity
from agent.config.instances import HOME_MODE
from agent.config.model import InstanceConfig
from agent.errors import ConfigError, InstanceError
from agent.observability.heartbeat import HEARTBEAT_FILE, Heartbeat, beat_in_background
from agent.observability.metrics import AgentMetrics
from agent.protocol.services import SCRIPTS_VERSION, ScriptIsolation
from agent.scripts import cgroups, users
from agent.scripts.cgroups import ProcessTrees
from agent.scripts.manager import ScriptManager, ScriptSettings
from agent.services.capabilities import capabilities_methods
from agent.services.files import FileService
from agent.services.router import Router
from agent.services.scripts import ScriptService
from agent.transport.dialer import Dialer, Proxy
from agent.transport.listener import Listener
from agent.transport.poller import poll, proxy_from_environment
from agent.transport.settings import ChannelSettings

log = logging.getLogger(__name__)


LOCK_FILE_NAME = "tentacle.lock"

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


def script_environment(
    run: AgentRun, isolated: bool = False, executable: str | None = None
) -> dict[str, str]:
    """The environment scripts get: the agent's, less SSH's (``isolated``, scripts run as
    their groups' uids: only agent.scripts.users.PASSED_VARIABLES of it), plus the
    Tentacle variables (the manager adds each group's own); ``executable`` is the
    `tentacle` they call when not the agent's own (agent.scripts.users.policy)."""
    environment = {k: v for k, v in run.environment.items() if k not in HIDDEN_VARIABLES}
    if isolated:
        environment = users.passed_environment(environment)
    environment.update(
        TentacleHome=str(run.config.home),
        TentacleApplications=str(run.config.applications),
        TentacleInstanceName=run.name,
        TentacleVersion=__version__,
        TentacleExecutablePath=executable or run.executable,
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


def script_manager(run: AgentRun, metrics: AgentMetrics | None = None) -> ScriptManager:
    """The script service's manager, scripts run as the instance's policy says (ConfigError
    when it cannot be followed: see agent.scripts.users.policy)."""
    config = run.config
    policy = users.policy(config.home, config.script_users, config.script_uid_range, run.name,
                          executable=run.executable)  # fmt: skip
    if policy.refuse_groups is not None:
        log.warning("scripts run as the agent's own user, and calls that name an isolation "
                    "group are refused: %s", policy.refuse_groups)  # fmt: skip
    elif policy.users is None:
        log.info("scripts run as the agent's own user for every isolation group "
                 "(ScriptUsers is off)")  # fmt: skip
    work = config.home / "Work"
    return ScriptManager(
        ScriptSettings(
            work=work,
            environment=script_environment(run, policy.users is not None, policy.executable),
            max_running=config.max_running_scripts or None,
            retention=config.workspace_retention,
            sweep_interval=config.workspace_sweep_interval,
            users=policy.users,
            refuse_groups=policy.refuse_groups,
            trees=process_trees(config.script_cgroups, work),
            limits=configured_limits(config),
        ),
        metrics,
    )


def process_trees(enabled: bool, work: Path) -> ProcessTrees | None:
    """A cgroup per script where this agent may have them (said in the log either way)."""
    if not enabled:
        log.info("scripts run without cgroups (configure --script-cgroups false): a cancel "
                 "signals each script's session only")  # fmt: skip
        return None
    try:
        layout = cgroups.detect(cgroups.instance_id(work))
    except cgroups.Unavailable as why:
        log.warning("scripts run without cgroups (%s): a cancel signals each script's session "
                    "only, and script limits are not enforced", why)  # fmt: skip
        return None
    log.info("process trees: %s", layout.describe())
    return ProcessTrees(layout)


def configured_limits(config: InstanceConfig) -> cgroups.Limits:
    return cgroups.Limits(config.script_memory_max or None, config.script_pids_max or None,
                          config.script_cpu_weight or None)  # fmt: skip


def build_router(
    config: InstanceConfig,
    scripts: ScriptManager,
    config_path: Path | None = None,
    metrics: AgentMetrics | None = None,
) -> Router:
    """Every service this agent serves, by name and version."""
    router = Router(metrics)
    isolation = ScriptIsolation.USERS if scripts.settings.users else ScriptIsolation.NONE
    advertised, since = (lambda: router.advertised), (lambda: scripts.draining_since)
    router.add(
        "capabilities", 1, capabilities_methods(config.home, advertised, __version__, since,
                                                scripts.process_tree, isolation),
    )  # fmt: skip
    router.add("files", 1, file_service(config, config_path, scripts.settings, metrics).methods())
    router.add("scripts", SCRIPTS_VERSION, ScriptService(scripts).methods())
    return router


def file_service(
    config: InstanceConfig,
    config_path: Path | None,
    scripts: ScriptSettings | None = None,
    metrics: AgentMetrics | None = None,
) -> FileService:
    """The file service, kept from the instance's own files and the scripts' Work folder;
    uploads for an isolation group follow the scripts' policy (``scripts``)."""
    private = {config.identity_path: "identity (private key and certificate)"}
    if config_path is not None:
        private[config_path] = "configuration"
    private[config.home / LOCK_FILE_NAME] = "lock (the running agent's pid)"
    private[config.home / HEARTBEAT_FILE] = "heartbeat (what `tentacle livez` reads)"
    private[config.home / drain.REQUEST_FILE] = "drain request (`tentacle drain`)"
    private[config.home / drain.ACK_FILE] = "drain acknowledgement"
    users = None if scripts is None else scripts.users
    refuse = None if scripts is None else scripts.refuse_groups
    return FileService(config.home, config.file_roots, private, (config.home / "Work",),
                       users, refuse, metrics)  # fmt: skip


def listen_urls(addresses: list[tuple[str, int]]) -> list[str]:
    return [f"wss://{f'[{host}]' if ':' in host else host}:{port}/" for host, port in addresses]


@contextlib.contextmanager
def instance_lock(home: Path) -> Iterator[None]:
    """Hold the instance's lock (an flock on HOME/tentacle.lock) for the block.

    Only one agent may serve an instance: two would share its subscription,
    its ``Work/`` folder and its state. The lock file holds the holder's pid;
    the kernel releases the lock when the holder exits, however it exits, so a
    stale file never blocks a start. Raises InstanceError naming the pid of
    the agent that holds it.
    """
    home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    path = home / LOCK_FILE_NAME
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(descriptor)
        raise InstanceError(
            f"another agent (pid {holder}) is already running for this instance "
            f"(it holds {path}); stop it first, or run this one for another instance"
        ) from None
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock; the file stays, harmless


def running_agent(home: Path) -> str | None:
    """The pid (as the lock file says it) of the agent serving the instance at ``home``,
    or None if none runs: whether its lock (see instance_lock) is held."""
    try:
        descriptor = os.open(home / LOCK_FILE_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # no agent ever ran here
    try:
        # a shared lock, held only for this test: it never takes the file from an agent
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
    finally:
        os.close(descriptor)
    return None


def check_runnable(config: InstanceConfig) -> None:
    """Raise ConfigError if the agent would do nothing: neither listen nor poll."""
    if config.no_listen and not config.polling_servers:
        raise ConfigError(
            "this instance neither listens (NoListen is true) nor polls (no polling "
            "servers): set one up with `tentacle server-comms --host H --thumbprint T`, "
            "or listen again with `tentacle configure --noListen false`"
        )


def _warn_about_trust(config: InstanceConfig, trusted: list[str]) -> None:
    for peer in config.trusted:
        if peer.is_pending:
            log.warning(
                "trust for %s is pending: its certificate is not known yet", peer.thumbprint
            )
    if trusted or config.no_listen:
        return  # a polling-only agent accepts no connections: its servers are pinned instead
    if config.polling_servers:
        log.warning(
            "no trusted certificates: every incoming connection will be refused "
            "(polling is not affected: polling servers are pinned by their thumbprints)"
        )
    else:
        log.warning("no trusted certificates: every caller will be refused")


async def run_agent(
    run: AgentRun,
    stop: asyncio.Event,
    on_ready: Callable[[list[str]], None],
    hurry: asyncio.Event | None = None,
    metrics: AgentMetrics | None = None,
    on_stopping: Callable[[], None] | None = None,
    drain_wakeup: asyncio.Event | None = None,
) -> bool:
    """Serve until ``stop`` is set, then drain calls in flight for ``run.grace`` seconds,
    or less if ``hurry`` is set (then calls still in flight are cut off).
    ``on_stopping`` is called once, when the stop begins (systemd's STOPPING=1).

    New scripts are refused from ``stop`` on, and while the instance's drain request
    (agent.drain) says so: read at the start and each time ``drain_wakeup`` is set.
    Returns whether every call in flight finished. Raises ConfigError if the
    instance would neither listen nor poll, or its drain request is malformed.
    ``metrics`` counts what the agent does (None: nothing is counted); the heartbeat
    file in the home is touched either way."""
    config = run.config
    check_runnable(config)
    hurry = hurry or asyncio.Event()
    scripts = script_manager(run, metrics)
    drain.apply_at_start(config.home, scripts)
    await scripts.open()
    router = build_router(config, scripts, run.config_path, metrics)
    settings = ChannelSettings(
        run.identity, run.name, __version__, router.advertised, config.heartbeat_interval
    )
    trusted = [peer.certificate_pem for peer in config.trusted_certificates if peer.certificate_pem]
    _warn_about_trust(config, trusted)
    dialer = Dialer(run.identity)  # one TLS context for every polling connection
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
                grace=run.grace,
                hurry=hurry,
                dialer=dialer,
                metrics=metrics,
            )
        )
        for server in config.polling_servers
        for _ in range(config.polling_connection_count)
    ]
    wakeup = drain_wakeup or asyncio.Event()
    follower = asyncio.create_task(drain.follow(config.home, scripts, wakeup), name="drain")
    listener: Listener | None = None
    drained = True
    heartbeat = metrics.heartbeat if metrics else Heartbeat(config.home / HEARTBEAT_FILE)
    beating = beat_in_background(heartbeat)  # stopped with the agent (finally, below)
    try:
        if metrics is not None:
            metrics.polls = bool(pollers)
        if config.no_listen:
            on_ready([])
        else:
            listener = Listener(settings, trusted, router, metrics=metrics)
            addresses = await listener.start(config.listen_ip, config.port)
            if metrics is not None:
                metrics.listening = True
            on_ready(listen_urls(addresses))
        await stop.wait()
        scripts.set_draining(True)  # calls in flight finish; no new script starts
        if metrics is not None:
            metrics.stopping = True
        if on_stopping is not None:
            on_stopping()
        log.info("stopping: no new connections; up to %.0f s for calls in flight", run.grace)
        if listener is not None:
            drained = await listener.stop(run.grace, hurry)
    finally:
        follower.cancel()
        polled = await asyncio.gather(*pollers, return_exceptions=True)
        await dialer.close()
        await scripts.close()  # running scripts carry on; the next start re-attaches
        beating.cancel()
    return drained and all(result is True for result in polled)
