"""SNS: topics, subscriptions, published message ids and the outbox of deliveries.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sns_topics",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("arn", sa.String(512), nullable=False, unique=True),
        sa.Column("creation_time", sa.Float, nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
    )
    op.create_table(
        "sns_subscriptions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("arn", sa.String(1024), nullable=False, unique=True),
        sa.Column("topic_name", sa.String(256), nullable=False, index=True),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("confirmed", sa.Boolean, nullable=False),
        sa.Column("token", sa.String(256), nullable=True, index=True),
        sa.Column("doc", sa.Text, nullable=False),
    )
    op.create_table(
        "sns_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("topic_name", sa.String(256), nullable=False),
        sa.Column("message_id", sa.String(100), nullable=False),
        sa.Column("creation_time", sa.Float, nullable=False, index=True),
        sa.UniqueConstraint("topic_name", "message_id", name="uq_sns_messages_message_id"),
    )
    op.create_table(
        "sns_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscription_arn", sa.String(1024), nullable=False, index=True),
        sa.Column("message_id", sa.String(100), nullable=False),
        sa.Column("message_type", sa.String(32), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt", sa.Float, nullable=False),
        sa.Column("creation_time", sa.Float, nullable=False),
        sa.Column("finished", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Index("ix_sns_deliveries_due", "status", "next_attempt"),
    )


def downgrade() -> None:
    op.drop_table("sns_deliveries")
    op.drop_table("sns_messages")
    op.drop_table("sns_subscriptions")
    op.drop_table("sns_topics")
