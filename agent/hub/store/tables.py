"""The schema, as SQLAlchemy Core tables: the single source the migrations follow.

Every id is an integer key that the API shows as Octopus does (``Workers-7``).
Nothing here is SQLite-only: types, defaults and constraints work the same on
PostgreSQL. Documents whose shape is Octopus's and that no query looks inside
(a policy's health-check settings, a worker's facts) are JSON columns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

# Ids are document ids (Workers-3) and are never given again once used, as
# PostgreSQL's sequences and Octopus never do: SQLite's AUTOINCREMENT (else it
# hands a deleted row's id to the next row).
DOCUMENT: dict[str, Any] = {"sqlite_autoincrement": True}

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A moment, stored in UTC and read back time-zone aware on every database
    (SQLite keeps no zone and would hand back naive values)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"a naive datetime reached the store: {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = UtcDateTime()

spaces = sa.Table(
    "spaces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("is_default", sa.Boolean, nullable=False, default=False),
    sa.Column("modified_on", Timestamp, nullable=False),
    sa.Column("modified_by", sa.String(200), nullable=False),
    **DOCUMENT,
)

worker_pools = sa.Table(
    "worker_pools",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("space_id", sa.ForeignKey("spaces.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("is_default", sa.Boolean, nullable=False, default=False),
    sa.Column("sort_order", sa.Integer, nullable=False, default=0),
    sa.Column("pool_type", sa.String(40), nullable=False, default="StaticWorkerPool"),
    sa.Column("modified_on", Timestamp, nullable=False),
    sa.Column("modified_by", sa.String(200), nullable=False),
    **DOCUMENT,
)

machine_policies = sa.Table(
    "machine_policies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("space_id", sa.ForeignKey("spaces.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("is_default", sa.Boolean, nullable=False, default=False),
    # MachineHealthCheckPolicy, MachineConnectivityPolicy, MachineCleanupPolicy...: Octopus's shapes
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("modified_on", Timestamp, nullable=False),
    sa.Column("modified_by", sa.String(200), nullable=False),
    **DOCUMENT,
)

# Credentials the hub logs in to SSH workers with (Octopus's accounts): the secret
# (private key, passphrase, password) is one JSON document sealed with the hub's key
# (agent.hub.secrets.HubKey, AES-256-GCM, the account's id as associated data).
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("space_id", sa.ForeignKey("spaces.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("account_type", sa.String(40), nullable=False),  # SshKeyPair | UsernamePassword
    sa.Column("username", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("sealed_secret", sa.Text, nullable=False),
    sa.Column("modified_on", Timestamp, nullable=False),
    sa.Column("modified_by", sa.String(200), nullable=False),
    **DOCUMENT,
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("space_id", sa.ForeignKey("spaces.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    # SHA-1, upper-case hex, of an agent's certificate; NULL for an SSH worker (r0005)
    sa.Column("thumbprint", sa.String(64), nullable=True),
    sa.Column("certificate", sa.Text, nullable=True),  # PEM, once known (registration)
    sa.Column("communication_style", sa.String(40), nullable=False),
    sa.Column("uri", sa.String(1000), nullable=False),  # https://host:port/ or poll://id/
    sa.Column("is_disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("machine_policy_id", sa.ForeignKey("machine_policies.id"), nullable=False),
    sa.Column("health_status", sa.String(40), nullable=False, default="Unknown"),
    sa.Column("status_summary", sa.Text, nullable=False, default=""),
    sa.Column("facts", sa.JSON, nullable=False),  # OS, architecture, shells, version, disk
    sa.Column("last_checked", Timestamp, nullable=True),
    sa.Column("unavailable_since", Timestamp, nullable=True),
    sa.Column("connection_log", sa.JSON, nullable=False),  # the last check's log elements
    sa.Column("modified_on", Timestamp, nullable=False),
    sa.Column("modified_by", sa.String(200), nullable=False),
    # an SSH worker's endpoint (r0005; NULL for agents): where, the pinned host key's
    # SHA256 fingerprint, and the account it logs in with
    sa.Column("ssh_host", sa.String(255), nullable=True),
    sa.Column("ssh_port", sa.Integer, nullable=True),
    sa.Column("ssh_fingerprint", sa.String(100), nullable=True),
    sa.Column("account_id", sa.ForeignKey("accounts.id"), nullable=True),
    sa.UniqueConstraint("thumbprint", name="uq_workers_thumbprint"),
    **DOCUMENT,
)


def unique_name(table: sa.Table, *scope: str) -> sa.Index:
    """Names unique whatever their case, as Octopus's are ("Pool A" and "pool a" are one
    name), within ``scope`` (the space): an index on lower(name), so that two requests
    at once cannot both take a name."""
    columns = [table.c[column] for column in scope]
    return sa.Index(
        f"ix_{table.name}_lower_name", *columns, sa.func.lower(table.c.name), unique=True
    )


unique_name(worker_pools, "space_id")
unique_name(machine_policies, "space_id")
unique_name(workers, "space_id")
unique_name(accounts, "space_id")

worker_pool_members = sa.Table(
    "worker_pool_members",
    metadata,
    sa.Column("worker_id", sa.ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("pool_id", sa.ForeignKey("worker_pools.id"), primary_key=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("permission", sa.String(40), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # SHA-256 hex
    sa.Column("created", Timestamp, nullable=False),
    **DOCUMENT,
)

unique_name(api_keys)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("occurred", Timestamp, nullable=False),
    sa.Column("username", sa.String(200), nullable=False),
    sa.Column("category", sa.String(60), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("related_document_ids", sa.JSON, nullable=False),
    **DOCUMENT,
)

server_tasks = sa.Table(
    "server_tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("space_id", sa.ForeignKey("spaces.id"), nullable=False),
    sa.Column("name", sa.String(60), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("arguments", sa.JSON, nullable=False),
    sa.Column("state", sa.String(20), nullable=False, index=True),
    sa.Column("queue_time", Timestamp, nullable=False),
    sa.Column("start_time", Timestamp, nullable=True),
    sa.Column("completed_time", Timestamp, nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("has_warnings_or_errors", sa.Boolean, nullable=False, default=False),
    sa.Column("server_node", sa.String(200), nullable=True),  # the node executing it
    # the lease token of the process executing it (agent.hub.lease): its end is written
    # only by that process, never by one that lost the node's lease meanwhile
    sa.Column("server_token", sa.String(64), nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("queued_by", sa.String(200), nullable=True),  # the key's name; "hub": scheduled
    **DOCUMENT,
)

task_activities = sa.Table(
    "task_activities",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.ForeignKey("server_tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(400), nullable=False),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("started", Timestamp, nullable=True),
    sa.Column("ended", Timestamp, nullable=True),
    sa.Index("ix_task_activities_task", "task_id"),
    **DOCUMENT,
)

task_log = sa.Table(
    "task_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.ForeignKey("server_tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "activity_id", sa.ForeignKey("task_activities.id", ondelete="CASCADE"), nullable=True
    ),
    sa.Column("category", sa.String(20), nullable=False),
    sa.Column("occurred", Timestamp, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_task_log_task", "task_id", "id"),
    **DOCUMENT,
)

# Facts about this hub installation that every node shares (its InstallationId, say).
hub_facts = sa.Table(
    "hub_facts",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# The hub nodes serving this database, each holding a lease on its name: a node
# renews ``last_seen`` while it runs, so another process given the same name
# sees it alive and refuses to start (it would fail the tasks the first one is
# running), and a node that died (kill -9) is taken over once its lease expired.
# A clean stop deletes the row. agent.hub.rules.lease judges a row.
hub_nodes = sa.Table(
    "hub_nodes",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("token", sa.String(64), nullable=False),  # random, one per process
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    # the process's own start time (psutil): a pid alive again is another process
    sa.Column("process_started", sa.Float, nullable=True),
    sa.Column("lease_seconds", sa.Float, nullable=False),  # the holder's, not the reader's
    sa.Column("started", Timestamp, nullable=False),
    sa.Column("last_seen", Timestamp, nullable=False),
    sa.Column("task_cap", sa.Integer, nullable=True),  # its TaskCap (NULL: an older node)
)
# "HUB" and "hub" are one node: two processes starting as both at once, one wins
sa.Index("ix_hub_nodes_lower_name", sa.func.lower(hub_nodes.c.name), unique=True)

# One row per invocation of a task's work on one worker (a "step"): which worker
# runs it, with which script ticket, how far its log has been stored. Written
# before the script starts, so that a restarted node (or another node) re-attaches
# by ticket and sequence instead of starting it again (DESIGN.md §5).
task_steps = sa.Table(
    "task_steps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.ForeignKey("server_tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "activity_id", sa.ForeignKey("task_activities.id", ondelete="SET NULL"), nullable=True
    ),
    # null for the hub's built-in worker, or once the worker was deleted
    sa.Column("worker_id", sa.ForeignKey("workers.id", ondelete="SET NULL"), nullable=True),
    sa.Column("worker_name", sa.String(200), nullable=False),  # as shown, kept after a delete
    sa.Column("builtin", sa.Boolean, nullable=False, default=False),
    sa.Column("ticket", sa.String(100), nullable=False, unique=True),
    # Pending (leased, not started) -> Running -> Success | Failed | Canceled | TimedOut
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("next_log_sequence", sa.Integer, nullable=False, default=0),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("server_node", sa.String(200), nullable=True),  # the node that leased it
    # the step's output variables: [{"Name", "Value", "IsSensitive"}]; sensitive ones
    # arrive masked from the worker and are kept masked
    sa.Column("output_variables", sa.JSON, nullable=False),
    sa.Column("started", Timestamp, nullable=True),
    sa.Column("ended", Timestamp, nullable=True),
    sa.Index("ix_task_steps_task", "task_id"),
    sa.Index("ix_task_steps_worker_state", "worker_id", "state"),
    **DOCUMENT,
)

# The hub's built-in package repository: content-addressed files in the hub's home
# (Packages/<sha256>), one row per package id and version.
packages = sa.Table(
    "packages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("space_id", sa.ForeignKey("spaces.id"), nullable=False),
    sa.Column("package_id", sa.String(200), nullable=False),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("file_extension", sa.String(20), nullable=False),  # ".zip", ".tar.gz"...
    sa.Column("sha256", sa.String(64), nullable=False, index=True),  # lower-case hex
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("published", Timestamp, nullable=False),
    **DOCUMENT,
)
# "Acme.Web" 1.0.0 and "acme.web" 1.0.0 are one package, as in Octopus's repository
sa.Index(
    "ix_packages_lower_id_version",
    packages.c.space_id,
    sa.func.lower(packages.c.package_id),
    sa.func.lower(packages.c.version),
    unique=True,
)

# Files a task's steps reported (new_octopusartifact), fetched from the worker into
# the hub's home (Artifacts/<id>).
artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("space_id", sa.ForeignKey("spaces.id"), nullable=False),
    sa.Column("task_id", sa.ForeignKey("server_tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("step_id", sa.ForeignKey("task_steps.id", ondelete="SET NULL"), nullable=True),
    sa.Column("filename", sa.String(400), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created", Timestamp, nullable=False),
    sa.Index("ix_artifacts_task", "task_id"),
    **DOCUMENT,
)
