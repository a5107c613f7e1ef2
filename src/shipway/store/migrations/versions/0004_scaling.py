"""Application Auto Scaling: scalable targets, scaling policies and scaling activities.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scalable_targets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("resource_key", sa.String(255), nullable=False),
        sa.Column("scalable_dimension", sa.String(64), nullable=False),
        sa.Column("endpoint_key", sa.String(64), nullable=False, index=True),
        sa.Column("tags", sa.Text, nullable=True),
        sa.Column("doc", sa.Text, nullable=False),
        sa.UniqueConstraint(
            "resource_key", "scalable_dimension", name="uq_scalable_targets_target"
        ),
    )
    op.create_table(
        "scaling_policies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("resource_key", sa.String(255), nullable=False),
        sa.Column("scalable_dimension", sa.String(64), nullable=False),
        sa.Column("policy_name", sa.String(256), nullable=False),
        sa.Column("endpoint_key", sa.String(64), nullable=False, index=True),
        sa.Column("doc", sa.Text, nullable=False),
        sa.UniqueConstraint(
            "resource_key", "scalable_dimension", "policy_name", name="uq_scaling_policies_name"
        ),
    )
    op.create_table(
        "scaling_activities",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("activity_id", sa.String(64), nullable=False, unique=True),
        sa.Column("resource_key", sa.String(255), nullable=False),
        sa.Column("scalable_dimension", sa.String(64), nullable=False),
        sa.Column("endpoint_key", sa.String(64), nullable=False, index=True),
        sa.Column("not_scaled", sa.Boolean, nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Index("ix_scaling_activities_target", "resource_key", "scalable_dimension", "id"),
    )


def downgrade() -> None:
    op.drop_table("scaling_activities")
    op.drop_table("scaling_policies")
    op.drop_table("scalable_targets")
