"""hub: create, serve and look after a hub (what workers register with)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from agent import __version__
from agent.certs import load_identity
from agent.cli.context import current
from agent.cli.hub_ssh_cmd import COMMANDS as SSH_COMMANDS
from agent.cli.hub_tasks_cmd import COMMANDS as TASK_COMMANDS
from agent.cli.hub_views import COMMANDS as VIEW_COMMANDS
from agent.cli.logs import configure_logging
from agent.cli.metrics_cmd import metrics_option
from agent.cli.notify import Notifier, on_journal, without_service_variables
from agent.cli.options import VerbGroup
from agent.cli.output import emit_fields, emit_json, format_option
from agent.cli.signals import Interrupted, until_signalled
from agent.errors import ConfigError
from agent.hub.home import create_home, discard_new_home, load_home
from agent.hub.keys import Permission
from agent.hub.rules.names import control_character_problem

if TYPE_CHECKING:  # the store and the server load SQLAlchemy: only when a command needs them
    from agent.hub.server import HubServer

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("agent.hub")
MAX_KEY_NAME = 200  # what the api_keys.name column holds


def home_option(function: F) -> F:
    option = click.option(
        "--home",
        "home",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        metavar="DIR",
        help="the hub's folder: settings, certificate and (by default) its database",
    )
    return option(function)


@click.group("hub", cls=VerbGroup)
def hub_group() -> None:
    """Create and run a hub, the server that workers register with."""


@hub_group.command("create")
@home_option
@click.option(
    "--database",
    metavar="URL",
    help="postgresql://USER@HOST/DB, or sqlite:///PATH (default: hub.db in the home)",
)
@click.option(
    "--join",
    is_flag=True,
    help="the database holds a hub already: make this home another node of it",
)
def create_command(home: Path, database: str | None, join: bool) -> None:
    """Make a new hub: its certificate, its database and the defaults (a space, the
    Default Worker Pool and the Default Machine Policy).

    With --join, a home for another node of the hub whose database --database names
    (its workers, keys and tasks are that hub's); without it, a database that holds
    a hub already is refused, so that a mistyped URL never joins another hub."""
    hub = create_home(home, database)
    try:
        existing = asyncio.run(_prepare_database(hub.settings.database, join))
    except BaseException:
        discard_new_home(hub)  # nothing half-made is left to refuse the next attempt
        raise
    if existing is None:
        click.echo(f"Created a hub in {hub.path}")
    else:
        click.echo(f"Created a home in {hub.path} for another node of {existing}")
        click.echo(
            "Each node serving this database needs its own NodeName:"
            f" tentacle hub configure --home {hub.path} --node-name NAME"
        )
    click.echo(f"Thumbprint: {hub.identity().thumbprint}")


async def _prepare_database(url: str, join: bool) -> str | None:
    """Migrate and initialise; returns the hub the database held already (for
    --join), None if it was new. ConfigError if that is not what --join said."""
    from agent.hub.store import open_store
    from agent.hub.store.records import initialise

    store = await open_store(url)
    try:
        existing = await _hub_in(store)
        if existing is not None and not join:
            raise ConfigError(
                f"the database already holds a hub ({existing}): add --join to make this"
                " home another node of that hub, or give --database a new database"
            )
        if existing is None and join:
            raise ConfigError("the database holds no hub to join: leave out --join to create one")
        await store.migrate()
        async with store.transaction() as conn:
            await initialise(conn, datetime.now(UTC))
        return existing
    finally:
        await store.close()


async def _hub_in(store: Any) -> str | None:
    """ "InstallationId X, N workers" if the database holds a hub, else None. Read
    before migrating: the tables are those of any schema revision."""
    import sqlalchemy as sa

    from agent.hub.store import tables as t
    from agent.hub.store.records import fact

    if await store.revision() is None:
        return None
    async with store.connect() as conn:
        installation = await fact(conn, "InstallationId")
        if installation is None:
            return None
        workers = (await conn.execute(sa.select(sa.func.count(t.workers.c.id)))).scalar_one()
    return f"InstallationId {installation}, {workers} worker{'' if workers == 1 else 's'}"


@hub_group.command("serve")
@home_option
@click.option(
    "--listen", metavar="HOST:PORT", help="where the API listens (default 127.0.0.1:8065)"
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="console log lines for people or machines",
)  # fmt: skip
@click.option(
    "--polling-port",
    type=click.IntRange(0, 65535),
    help="the port polling workers dial (default 10943; 0 picks a free one)",
)
@click.option(
    "--node-name",
    metavar="NAME",
    help="this node's name, over the home's NodeName (each process serving one database"
    " needs its own)",
)
@click.option(
    "--no-builtin-worker",
    is_flag=True,
    help="no built-in worker for this run (a pool without workers then fails its tasks);"
    " `hub configure --builtin-worker false` turns it off for good",
)
@click.option(
    "--builtin-worker-user",
    metavar="USER",
    help="run the built-in worker's steps as this unprivileged user (over the home's"
    " BuiltinWorkerUser; the hub must run as root)",
)
@metrics_option
def serve_command(
    home: Path,
    listen: str | None,
    log_format: str,
    polling_port: int | None,
    node_name: str | None,
    no_builtin_worker: bool,
    builtin_worker_user: str | None,
    metrics: tuple[str, int] | None,
) -> None:
    """Run the hub in the foreground until SIGTERM or Ctrl-C (exit 0 after a clean stop).

    Refused while another process serves from the same home, or holds the same
    NodeName on the same database (its lease, renewed while it runs)."""
    from agent.hub.server import HubServer

    environ = current().environ
    configure_logging(log_format, journal=on_journal(environ, sys.stderr.fileno()))
    notifier = Notifier.from_environment(environ)
    hub = load_home(home, environ)
    for name, value, hint in (
        ("node_name", node_name, "--node-name"),
        ("builtin_worker_user", builtin_worker_user, "--builtin-worker-user"),
        ("builtin_worker", False if no_builtin_worker else None, "--no-builtin-worker"),
    ):
        if value is not None:
            try:
                hub = hub.with_settings(**{name: value})
            except ValueError as error:
                raise click.BadParameter(str(error), param_hint=hint) from None
    environment = without_service_variables(environ)
    server = HubServer(hub, __version__, environment=environment, metrics_at=metrics)
    try:
        asyncio.run(until_signalled(_serve(server, listen, polling_port, notifier)))
    except Interrupted:
        log.info("hub stopped")
    finally:
        notifier.close()


async def _serve(
    server: HubServer, listen: str | None, polling_port: int | None, notifier: Notifier
) -> None:
    watchdog = asyncio.create_task(notifier.keep_alive())
    try:
        url = await server.start(listen, polling_port)
        click.echo(f"Hub listening on: {url}")
        click.echo(f"Hub polling port: {server.polling_port}")
        if server.endpoint is not None:
            click.echo(f"Metrics on: {server.endpoint.url}metrics")
        log.info("hub listening on %s", url)
        notifier.ready(f"listening on {url}; polling port {server.polling_port}")
        await server.until_lease_lost()  # or until a signal cancels it
    finally:
        notifier.stopping("stopping")
        watchdog.cancel()
        await server.stop()


@hub_group.command("create-api-key")
@home_option
@click.option("--name", required=True, help="who or what will use the key (shown in events)")
@click.option(
    "--permission",
    type=click.Choice([p.value for p in Permission]),
    default=Permission.CONFIGURE_SERVER.value,
    show_default=True,
    help="ConfigureServer may change anything; ReadOnly may only read",
)
def create_api_key_command(home: Path, name: str, permission: str) -> None:
    """Make an API key and print it once: only its hash is kept."""
    name = key_name(name)
    hub = load_home(home, current().environ)
    click.echo(asyncio.run(_new_key(hub.settings.database, name, Permission(permission))))


def key_name(text: str) -> str:
    """The key's name without surrounding blanks: the events show it as who changed
    what, so it must say something, fit its column and hold no control character."""
    name = text.strip()
    if not 1 <= len(name) <= MAX_KEY_NAME:
        shown = "empty" if not name else f"{len(name)} characters"
        raise ConfigError(f"--name is required: 1 to {MAX_KEY_NAME} characters, not {shown}")
    if problem := control_character_problem(name):
        raise ConfigError(f"--name must not contain {problem}")
    return name


async def _new_key(url: str, name: str, permission: Permission) -> str:
    from agent.hub.store import open_store
    from agent.hub.store.apikeys import create_api_key
    from agent.hub.store.records import initialise

    store = await open_store(url)
    try:
        await store.migrate()
        async with store.transaction() as conn:
            now = datetime.now(UTC)
            await initialise(conn, now)
            return await create_api_key(conn, name, permission, now)
    finally:
        await store.close()


@hub_group.command("show-thumbprint")
@home_option
@format_option
def show_thumbprint_command(home: Path, output_format: str) -> None:
    """Show the hub's certificate thumbprint, which workers trust, and, when HTTPS uses
    a certificate of the operator's, that one's (what --server-thumbprint pins)."""
    hub = load_home(home)
    identity = hub.identity()
    https = hub.settings.https_certificate
    https_thumbprint = load_identity(https).thumbprint if https else None
    if output_format == "json":
        emit_json(
            {
                "Thumbprint": identity.thumbprint,
                "Sha256": identity.sha256,
                "HttpsThumbprint": https_thumbprint,
            }
        )
    else:
        fields = [("Thumbprint", identity.thumbprint), ("SHA-256", identity.sha256)]
        if https_thumbprint:
            fields.append(
                (
                    "HTTPS thumbprint",
                    f"{https_thumbprint} (pin this one with --server-thumbprint, or trust its CA)",
                )
            )
        emit_fields(fields)


for view in VIEW_COMMANDS:  # workers, pools, policies, health-check: the hub seen over its API
    hub_group.add_command(view)
for verb in TASK_COMMANDS:  # run, deploy, tasks, task, cancel: tasks on workers, for people
    hub_group.add_command(verb)
for verb in SSH_COMMANDS:  # add-ssh-worker, ssh-fingerprint: workers reached over SSH
    hub_group.add_command(verb)
