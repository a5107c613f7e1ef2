"""Asynchronous inference: the queue of InvokeEndpointAsync requests.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "async_invocations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("inference_id", sa.String(64), nullable=False, index=True),
        sa.Column("endpoint_key", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("enqueued", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started", sa.Float, nullable=True),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Index("ix_async_invocations_queue", "endpoint_key", "status", "id"),
        sa.Index("ix_async_invocations_backlog", "status", "endpoint_key", "enqueued"),
    )


def downgrade() -> None:
    op.drop_table("async_invocations")
