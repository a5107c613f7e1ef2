"""Alarms and their history (CloudWatch's PutMetricAlarm, DescribeAlarmHistory).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alarms",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("arn", sa.String(1600), nullable=False),
        sa.Column("state", sa.String(32), nullable=False, index=True),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("metric_name", sa.String(255), nullable=False),
        sa.Column("configuration_updated", sa.Float, nullable=False),
        sa.Column("tags", sa.Text, nullable=True),
        sa.Column("doc", sa.Text, nullable=False),
    )
    op.create_table(
        "alarm_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alarm_name", sa.String(255), nullable=False, index=True),
        sa.Column("timestamp", sa.Float, nullable=False, index=True),
        sa.Column("item_type", sa.String(32), nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alarm_history")
    op.drop_table("alarms")
