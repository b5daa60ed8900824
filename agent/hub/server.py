"""A running hub: the database migrated and initialised, the REST API on HTTPS.

HTTPS uses the hub's own certificate (clients pin its thumbprint) unless the
operator configured a certificate and key of their own (CA-signed setups).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from agent.certs import Identity
from agent.client import ChannelSettings, PollingListener
from agent.errors import ConfigError
from agent.hub import observed
from agent.hub.adhoc import AdHocScripts
from agent.hub.api.app import build_app
from agent.hub.api.context import HubContext, utc_now
from agent.hub.api.limits import PARSER_LIMIT
from agent.hub.api.redact import loggable_target
from agent.hub.api.stopping import Serving
from agent.hub.builtin import BuiltinWorker, check_user
from agent.hub.changes import TaskChanges
from agent.hub.deploy import Deployments, sweep_scratch
from agent.hub.health import HealthChecks
from agent.hub.home import HomeLock, HubHome, shared_port
from agent.hub.lease import LeaseLost, NodeLease
from agent.hub.packages import ArtifactFiles, Repository
from agent.hub.reach import WorkerReach
from agent.hub.runner import TaskRunner
from agent.hub.scheduler import Scheduler
from agent.hub.secrets import HubKey
from agent.hub.store import Store, open_store
from agent.hub.store import tasks as store_tasks
from agent.hub.store.records import default_space_id, fact, initialise
from agent.hub.trust import PollingTrust
from agent.observability.endpoint import Endpoint, Probes
from agent.observability.heartbeat import Heartbeat, beat_in_background
from agent.observability.metrics import HubMetrics

log = logging.getLogger("agent.hub")


class AccessLog(AbstractAccessLogger):
    """One line a request: method, path and query, status, duration.

    Every API key is masked first (a client may put one in the query string,
    which the API refuses, or in the path): no key ever lands in a log.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.1f ms",
            request.remote,
            request.method,
            loggable_target(request.path, request.query.items()),
            response.status,
            time * 1000,
        )


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8065`` for IPv6) -> (host, port); ConfigError otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen address {text!r} is not HOST:PORT (e.g. 127.0.0.1:8065)")
    # ":8065" asks for every interface, as a listen address does elsewhere
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104


def https_context(home: HubHome) -> ssl.SSLContext:
    """TLS 1.2+ on the operator's certificate when configured, else the hub's own."""
    path = Path(home.settings.https_certificate or home.identity_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(path)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"cannot use {path} as the hub's HTTPS certificate: {error}") from None
    return context


def check_can_listen(host: str, port: int, what: str) -> None:
    """ConfigError naming ``what`` if ``host:port`` cannot be bound now (in use, say):
    checked before the database is touched, so a start that cannot serve changes
    nothing (it does not upgrade a schema an older hub still serves). Port 0 is any
    free port: nothing to check. Binds as asyncio's servers do (SO_REUSEADDR), then
    lets go; a port taken between this and the real bind still fails there."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in addresses:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"cannot listen {what} on {host}:{port}: {reason}") from None


@dataclass
class HubServer:
    """The hub's parts, started and stopped together: store, polling port, task
    runner, the policies' scheduler and the HTTPS API."""

    home: HubHome
    version: str
    store: Store | None = None
    runner: web.AppRunner | None = None
    url: str = ""
    polling_port: int = 0
    listener: PollingListener | None = None
    tasks: TaskRunner | None = None
    scheduler: Scheduler | None = None
    reach: WorkerReach | None = None
    trust: PollingTrust | None = None
    home_lock: HomeLock | None = None
    lease: NodeLease | None = None
    repository: Repository | None = None
    # what the built-in worker's steps get (the CLI hands the process's environment in)
    environment: Mapping[str, str] = field(default_factory=dict)
    # the `tentacle` its steps run; default: the one beside this interpreter (a test's)
    executable: str = ""  # the built-in worker finds this installation's tentacle
    builtin: BuiltinWorker | None = None  # None when BuiltinWorker is off
    # news of the tasks' changes, from the runner to the API's long polls (?wait=)
    task_changes: TaskChanges = field(default_factory=TaskChanges)
    # whether the API takes new requests (closed first as the node stops)
    serving: Serving = field(default_factory=Serving)
    # --metrics HOST:PORT: /metrics, /livez and /readyz served there (None: not served)
    metrics_at: tuple[str, int] | None = None
    metrics: HubMetrics | None = None
    endpoint: Endpoint | None = None
    heartbeat: asyncio.Task[None] | None = None

    async def start(self, listen: str | None = None, polling_port: int | None = None) -> str:
        """Lock the home, check its ports are free, migrate, take the node's lease (before
        anything else writes), initialise and listen; returns
        the URL the API answers on. HomeInUse or NodeNameTaken (ConfigErrors) when
        another live process serves from this home or with this node's name.

        ``polling_port`` 0 picks a free port (``self.polling_port`` tells which)."""
        host, port = parse_listen(listen or self.home.settings.listen)
        ssl_context = https_context(self.home)
        identity = self.home.identity()
        self.home_lock = HomeLock(self.home.path)
        self.home_lock.acquire()  # a second serve on this home is refused at once
        try:
            wanted = self.home.settings.polling_port if polling_port is None else polling_port
            problem = shared_port(port, wanted)  # before the database is touched
            if problem is not None:
                raise ConfigError(problem)
            check_can_listen(host, port, "for the API")
            check_can_listen(host, wanted, "for polling agents")
            self._check_builtin()  # a user that cannot be is refused before the database
            return await self._start_locked(host, port, polling_port, ssl_context, identity)
        except BaseException:
            await self.stop()  # the lease and the home's lock are let go: the next start runs
            raise

    async def _start_locked(
        self,
        host: str,
        port: int,
        polling_port: int | None,
        ssl_context: ssl.SSLContext,
        identity: Identity,
    ) -> str:
        self.task_changes = TaskChanges()  # a new one per start: stop closes it
        self.serving = Serving()  # likewise
        if self.metrics_at is not None:
            self.metrics = observed.hub_metrics(self.home.settings.task_cap)
        self.store = store = await open_store(self.home.settings.database)
        await store.migrate()
        self.lease = NodeLease(
            store,
            self.home.settings.node_name,
            self.home.settings.node_lease_seconds,
            utc_now,
            self.home.settings.task_cap,
        )
        died = await self.lease.take()  # before any task is touched: they may be another's
        await self._start_builtin()  # re-attaches its scripts: once the node is this one's
        async with store.transaction() as conn:
            await initialise(conn, utc_now())
            installation = await fact(conn, "InstallationId")
            default_space = await default_space_id(conn)
        settings = ChannelSettings(identity, self.home.settings.node_name, self.version)
        listener = await self._listen_for_polling(store, settings, host, polling_port)
        key = HubKey.of_home(self.home.path)
        self.reach = reach = WorkerReach(
            settings, listener, store, key, self.home.settings.ssh_worker_root
        )
        self.repository = Repository(self.home.path, self.home.settings.max_package_bytes)
        self.repository.sweep_incoming()  # what a killed upload left
        artifact_files = ArtifactFiles(self.home.path)
        artifact_files.sweep_incoming()
        sweep_scratch(self.home.path)  # a killed hub's step files (before tasks re-attach)
        self.tasks = TaskRunner(
            store,
            store_tasks.Owner(self.home.settings.node_name, self.lease.token),
            self.home.settings.task_cap,
            {
                "Health": HealthChecks(store, reach, utc_now, self.metrics),
                # the built-in worker (None when off) runs the steps of pools without workers
                "AdHocScript": AdHocScripts(store, reach, self.builtin, utc_now),
                "Deploy": Deployments(
                    store, reach, self.builtin, utc_now, self.repository, key, artifact_files
                ),
            },
            utc_now,
            changes=self.task_changes,
        )
        # a dead node's resumable tasks are taken over here, not failed
        self.lease.adopts = self.tasks.resumable
        self.lease.on_adopted = self.tasks.adopted
        await self.tasks.start(died or store_tasks.STOPPED)
        self.scheduler = Scheduler(store, utc_now, self.tasks.wake)
        self.scheduler.start()
        context = HubContext(
            store=store,
            version=self.version,
            installation_id=installation or "",
            thumbprint=identity.thumbprint,
            certificate_pem=identity.certificate_pem.decode("ascii"),
            node_name=self.home.settings.node_name,
            polling_port=self.polling_port,
            on_change=self._changed,
            channel=settings,
            extras={"packages": self.repository, "secrets": key, "artifacts": artifact_files},
            builtin_worker=self.builtin is not None,
            task_changes=self.task_changes,
            serving=self.serving,
            default_space=default_space,
        )
        self.url = await self._serve_api(context, host, port, ssl_context)
        await self._serve_metrics()
        return self.url

    async def _listen_for_polling(
        self, store: Store, settings: ChannelSettings, host: str, polling_port: int | None
    ) -> PollingListener:
        """``self.listener``, the polling port, listening on ``polling_port`` (None: the
        home's setting), trusting the store's workers (kept in step by ``self.trust``).
        Kept on self before it starts, so that a failed start is stopped with the rest."""
        self.listener = listener = PollingListener(settings, [])
        self.trust = PollingTrust(store, listener)
        await self.trust.resync()  # before the listener builds its TLS context, once
        wanted = self.home.settings.polling_port if polling_port is None else polling_port
        try:
            [(_, self.polling_port), *_] = await listener.start(host, wanted)
        except OSError as error:
            raise ConfigError(
                f"cannot listen for polling agents on {host}:{wanted}: {error.strerror}"
            ) from None
        self.trust.start()
        return listener

    async def _serve_api(
        self, context: HubContext, host: str, port: int, ssl_context: ssl.SSLContext
    ) -> str:
        """The HTTPS API serving ``context`` on ``host:port``; its URL as bound."""
        self.runner = web.AppRunner(
            build_app(context),
            access_log_class=AccessLog,
            max_line_size=PARSER_LIMIT,
            max_field_size=PARSER_LIMIT,
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as error:
            raise ConfigError(
                f"cannot listen for the API on {host}:{port}: {error.strerror}"
            ) from None
        bound_host, bound_port = self.runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        return f"https://{shown}:{bound_port}/"

    async def _serve_metrics(self) -> None:
        """The metrics endpoint at ``metrics_at`` (EndpointError when it cannot listen)."""
        if self.metrics is None or self.metrics_at is None:
            return
        beat = Heartbeat(gauge=self.metrics.heartbeat_seconds)
        self.heartbeat = beat_in_background(beat)
        ready = observed.readiness(lambda: self.runner is not None, lambda: self.store)
        refresh = observed.refresher(self.metrics, lambda: self.store, ready)
        probes = Probes(beat, ready, before_scrape=refresh)
        self.endpoint = Endpoint(self.metrics.registry, probes)
        await self.endpoint.start(*self.metrics_at)

    def _check_builtin(self) -> None:
        """ConfigError when the built-in worker is on with a user it cannot run steps as."""
        settings = self.home.settings
        if settings.builtin_worker and settings.builtin_worker_user is not None:
            check_user(self.home.path, settings.builtin_worker_user)

    async def _start_builtin(self) -> None:
        """The built-in worker, when the home's BuiltinWorker setting has it on."""
        settings = self.home.settings
        if not settings.builtin_worker:
            log.info("the built-in worker is off (BuiltinWorker false)")
            return
        builtin = BuiltinWorker(
            self.home.path,
            settings.builtin_worker_user,
            version=self.version,
            environment=self.environment,
            executable=self.executable,
            script_users=settings.builtin_worker_script_users,
            uid_range=settings.builtin_worker_uid_range,
        )
        await builtin.start()
        self.builtin = builtin

    async def _changed(self, what: str, worker_ids: Sequence[int] = ()) -> None:
        """The API changed something the live parts act on (``HubContext.changed``)."""
        if what == "tasks" and self.tasks is not None:
            self.tasks.wake()
        if what == "capped-task-queued" and self.tasks is not None:
            self.tasks.queued(capped=True)
        if what in ("workers", "workers-added") and self.trust is not None:
            await self.trust.follow(worker_ids)
        if what == "workers" and self.scheduler is not None:
            self.scheduler.wake(worker_ids)
        if what == "policies" and self.scheduler is not None:
            self.scheduler.wake()

    async def stop(self) -> None:
        self.serving.stop()  # no new request, not even on a connection aiohttp missed
        self.task_changes.close()  # the API's long polls answer now, not at their end
        if self.endpoint is not None:
            await self.endpoint.stop()
            self.endpoint = None
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            self.heartbeat = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        for part in (self.scheduler, self.tasks, self.trust, self.listener):
            if part is not None:
                await part.stop()
        if self.reach is not None:
            await self.reach.close()
        if self.builtin is not None:  # after the tasks: they may be following its scripts
            await self.builtin.stop()
            self.builtin = None
        self.scheduler = self.tasks = self.trust = self.listener = self.reach = None
        if self.lease is not None:  # after the tasks: their ends are written first
            await self.lease.give_back()
            self.lease = None
        if self.store is not None:
            await self.store.close()
            self.store = None
        if self.home_lock is not None:
            self.home_lock.release()
            self.home_lock = None

    async def until_lease_lost(self) -> None:
        """Return if another process takes this node's lease over (then stop: two
        processes would be running this node's tasks)."""
        assert self.lease is not None, "the hub is not started"
        await self.lease.lost.wait()
        raise LeaseLost(
            f"another process took over the hub node {self.lease.name!r}: this one stopped"
        )
