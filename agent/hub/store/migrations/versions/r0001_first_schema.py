"""The first schema: spaces, worker pools, machine policies, workers, API keys,
events, server tasks with their activities and log, and the hub's own facts.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("permission", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=60), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("related_document_ids", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_table(
        "hub_facts",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_hub_facts")),
    )
    op.create_table(
        "spaces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spaces")),
        sa.UniqueConstraint("name", name=op.f("uq_spaces_name")),
    )
    op.create_table(
        "machine_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["space_id"], ["spaces.id"], name=op.f("fk_machine_policies_space_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_machine_policies")),
        sa.UniqueConstraint("space_id", "name", name="uq_machine_policies_space_name"),
    )
    op.create_table(
        "server_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("queue_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("has_warnings_or_errors", sa.Boolean(), nullable=False),
        sa.Column("server_node", sa.String(length=200), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], name=op.f("fk_server_tasks_space_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_tasks")),
    )
    op.create_index(op.f("ix_server_tasks_state"), "server_tasks", ["state"], unique=False)
    op.create_table(
        "worker_pools",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("pool_type", sa.String(length=40), nullable=False),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], name=op.f("fk_worker_pools_space_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_pools")),
        sa.UniqueConstraint("space_id", "name", name="uq_worker_pools_space_name"),
    )
    op.create_table(
        "task_activities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["server_tasks.id"],
            name=op.f("fk_task_activities_task_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_activities")),
    )
    op.create_index("ix_task_activities_task", "task_activities", ["task_id"], unique=False)
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=True),
        sa.Column("communication_style", sa.String(length=40), nullable=False),
        sa.Column("uri", sa.String(length=1000), nullable=False),
        sa.Column("is_disabled", sa.Boolean(), nullable=False),
        sa.Column("machine_policy_id", sa.Integer(), nullable=False),
        sa.Column("health_status", sa.String(length=40), nullable=False),
        sa.Column("status_summary", sa.Text(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("last_checked", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unavailable_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("connection_log", sa.JSON(), nullable=False),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["machine_policy_id"],
            ["machine_policies.id"],
            name=op.f("fk_workers_machine_policy_id"),
        ),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], name=op.f("fk_workers_space_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.UniqueConstraint("space_id", "name", name="uq_workers_space_name"),
        sa.UniqueConstraint("thumbprint", name="uq_workers_thumbprint"),
    )
    op.create_table(
        "task_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("occurred", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["task_activities.id"],
            name=op.f("fk_task_log_activity_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["server_tasks.id"], name=op.f("fk_task_log_task_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_log")),
    )
    op.create_index("ix_task_log_task", "task_log", ["task_id", "id"], unique=False)
    op.create_table(
        "worker_pool_members",
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["worker_pools.id"], name=op.f("fk_worker_pool_members_pool_id")
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
            name=op.f("fk_worker_pool_members_worker_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("worker_id", "pool_id", name=op.f("pk_worker_pool_members")),
    )


def downgrade() -> None:
    op.drop_table("worker_pool_members")
    op.drop_index("ix_task_log_task", table_name="task_log")
    op.drop_table("task_log")
    op.drop_table("workers")
    op.drop_index("ix_task_activities_task", table_name="task_activities")
    op.drop_table("task_activities")
    op.drop_table("worker_pools")
    op.drop_index(op.f("ix_server_tasks_state"), table_name="server_tasks")
    op.drop_table("server_tasks")
    op.drop_table("machine_policies")
    op.drop_table("spaces")
    op.drop_table("hub_facts")
    op.drop_table("events")
    op.drop_table("api_keys")
