"""Models, endpoint configurations and endpoints.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _resource_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("name_key", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column("creation_time", sa.Float, nullable=False, index=True),
        sa.Column("doc", sa.Text, nullable=False),
    )


def upgrade() -> None:
    _resource_table("models")
    _resource_table("endpoint_configs")
    _resource_table("endpoints")
    op.add_column("endpoints", sa.Column("status", sa.String(32), nullable=False))
    op.add_column("endpoints", sa.Column("last_modified_time", sa.Float, nullable=False))


def downgrade() -> None:
    op.drop_table("endpoints")
    op.drop_table("endpoint_configs")
    op.drop_table("models")
