"""What the web page shows of tasks and nodes: who queued a task, each node's cap.

- ``server_tasks.queued_by``: the API key's name that queued the task ("hub" for
  the scheduler's health checks); NULL for tasks queued before this revision.
- ``hub_nodes.task_cap``: the node's TaskCap, so that any node can say how many
  tasks the hub as a whole runs at once; NULL for a node of an older version.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("server_tasks", sa.Column("queued_by", sa.String(length=200), nullable=True))
    op.add_column("hub_nodes", sa.Column("task_cap", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hub_nodes") as batch:
        batch.drop_column("task_cap")
    with op.batch_alter_table("server_tasks") as batch:
        batch.drop_column("queued_by")
