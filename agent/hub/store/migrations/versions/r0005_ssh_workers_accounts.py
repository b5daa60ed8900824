"""SSH workers and the accounts they log in with.

- ``accounts``: a space's credentials for SSH workers (Octopus's accounts), a
  name unique whatever its case (an index on lower(name)), the account type
  (``SshKeyPair`` or ``UsernamePassword``), the username, and the secret (the
  private key and its passphrase, or the password) as one JSON document sealed
  with the hub's key (AES-256-GCM, ``agent.hub.secrets.HubKey``): the database
  alone tells nothing of it.
- ``workers``: the SSH endpoint as columns (``ssh_host``, ``ssh_port``,
  ``ssh_fingerprint``: the pinned host key's ``SHA256:...``, ``account_id``: a
  foreign key to ``accounts``), NULL for agents; columns, not a JSON endpoint,
  so that "which workers use this account" is a query and the foreign key
  keeps an account in use from being deleted. ``thumbprint`` becomes nullable:
  an SSH worker has no certificate (its unique constraint stays, NULLs are
  distinct on both databases). ``uri`` holds ``ssh://host:port/``.

SQLite cannot alter a column's nullability: the workers table is rebuilt
(Alembic's batch mode, AUTOINCREMENT kept, every row and id copied), its index
on lower(name) made again after (reflection does not carry expression indexes),
and its sequence kept where it was (a deleted worker's id is never given again).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


@contextlib.contextmanager
def _quiet_reflection() -> Iterator[None]:
    """SQLAlchemy warns that it skips the lower(name) indexes when it reflects the
    tables the rebuild refers to; they are made again here, so `hub create` need
    not print that to a person."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "Skipped unsupported reflection of expression-based index", sa.exc.SAWarning
        )
        yield


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("account_type", sa.String(length=40), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=False),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], name=op.f("fk_accounts_space_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_accounts_lower_name", "accounts", ["space_id", sa.text("lower(name)")], unique=True
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    sequence = _workers_sequence() if sqlite else None
    if sqlite:
        op.drop_index("ix_workers_lower_name", table_name="workers")
    with (
        _quiet_reflection(),
        op.batch_alter_table("workers", table_kwargs={"sqlite_autoincrement": True}) as batch,
    ):
        batch.alter_column("thumbprint", existing_type=sa.String(length=64), nullable=True)
        batch.add_column(sa.Column("ssh_host", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("ssh_port", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("ssh_fingerprint", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_workers_account_id", "accounts", ["account_id"], ["id"])
    if sqlite:
        op.create_index(
            "ix_workers_lower_name", "workers", ["space_id", sa.text("lower(name)")], unique=True
        )
        _keep_workers_sequence(sequence)
        broken = op.get_bind().execute(sa.text("PRAGMA foreign_key_check")).fetchall()
        if broken:
            raise RuntimeError(f"the upgrade broke foreign keys: {broken[:5]}")


def _workers_sequence() -> int:
    row = (
        op.get_bind()
        .execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'workers'"))
        .fetchone()
    )
    return int(row[0]) if row else 0


def _keep_workers_sequence(before: int | None) -> None:
    """The rebuilt table's sequence goes on from where the old one was (its highest
    id may have been deleted: that id is not given again)."""
    start = max(before or 0, _workers_sequence())
    connection = op.get_bind()
    connection.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'workers'"))
    connection.execute(
        sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('workers', :s)"), {"s": start}
    )


def downgrade() -> None:
    """Back to r0004: SSH workers are deleted first (r0004 cannot hold them)."""
    connection = op.get_bind()
    ssh = sa.text("SELECT id FROM workers WHERE thumbprint IS NULL")
    gone = [row[0] for row in connection.execute(ssh)]
    if gone:
        connection.execute(
            sa.text("DELETE FROM worker_pool_members WHERE worker_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": gone},
        )
        connection.execute(
            sa.text("UPDATE task_steps SET worker_id = NULL WHERE worker_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": gone},
        )
        connection.execute(
            sa.text("DELETE FROM workers WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": gone},
        )
    sqlite = connection.dialect.name == "sqlite"
    sequence = _workers_sequence() if sqlite else None
    if sqlite:
        op.drop_index("ix_workers_lower_name", table_name="workers")
    with op.batch_alter_table("workers", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_constraint("fk_workers_account_id", type_="foreignkey")
        batch.drop_column("account_id")
        batch.drop_column("ssh_fingerprint")
        batch.drop_column("ssh_port")
        batch.drop_column("ssh_host")
        batch.alter_column("thumbprint", existing_type=sa.String(length=64), nullable=False)
    if sqlite:
        op.create_index(
            "ix_workers_lower_name", "workers", ["space_id", sa.text("lower(name)")], unique=True
        )
        _keep_workers_sequence(sequence)
    op.drop_index("ix_accounts_lower_name", table_name="accounts")
    op.drop_table("accounts")
