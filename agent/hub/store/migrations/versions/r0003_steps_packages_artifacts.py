"""Tasks on workers: each step's worker, ticket and log cursor; the built-in package
repository; artifacts collected from steps.

- ``task_steps``: one row per invocation of a task's work on one worker,
  written before its script starts (worker, ticket, the node that leased it),
  then its log cursor (``next_log_sequence``), exit code and output variables as
  they arrive: a restarted node re-attaches by ticket and sequence.
- ``packages``: the hub's repository (files content-addressed in its home),
  one row per package id and version, unique whatever their case.
- ``artifacts``: files steps reported, fetched into the hub's home.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    op.create_table(
        "task_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=True),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("worker_name", sa.String(length=200), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("ticket", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("next_log_sequence", sa.Integer(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("server_node", sa.String(length=200), nullable=True),
        sa.Column("output_variables", sa.JSON(), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"], ["server_tasks.id"], name=op.f("fk_task_steps_task_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["activity_id"], ["task_activities.id"], name=op.f("fk_task_steps_activity_id"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["workers.id"], name=op.f("fk_task_steps_worker_id"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_steps")),
        sa.UniqueConstraint("ticket", name=op.f("uq_task_steps_ticket")),
        **AUTOINCREMENT,
    )  # fmt: skip
    op.create_index("ix_task_steps_task", "task_steps", ["task_id"])
    op.create_index("ix_task_steps_worker_state", "task_steps", ["worker_id", "state"])
    op.create_table(
        "packages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("file_extension", sa.String(length=20), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("published", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["space_id"], ["spaces.id"], name=op.f("fk_packages_space_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_packages")),
        **AUTOINCREMENT,
    )  # fmt: skip
    op.create_index(op.f("ix_packages_sha256"), "packages", ["sha256"])
    op.create_index(
        "ix_packages_lower_id_version",
        "packages",
        ["space_id", sa.text("lower(package_id)"), sa.text("lower(version)")],
        unique=True,
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=True),
        sa.Column("filename", sa.String(length=400), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["space_id"], ["spaces.id"], name=op.f("fk_artifacts_space_id")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["server_tasks.id"], name=op.f("fk_artifacts_task_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"], ["task_steps.id"], name=op.f("fk_artifacts_step_id"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        **AUTOINCREMENT,
    )  # fmt: skip
    op.create_index("ix_artifacts_task", "artifacts", ["task_id"])


def downgrade() -> None:
    op.drop_table("artifacts")
    op.drop_table("packages")
    op.drop_table("task_steps")
