"""Transform jobs, their input objects and their shards.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transform_jobs",
        sa.Column("name_key", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column("creation_time", sa.Float, nullable=False, index=True),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("last_modified_time", sa.Float, nullable=False),
    )
    op.create_table(
        "transform_objects",
        sa.Column("job_key", sa.String(64), primary_key=True),
        sa.Column("object_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure", sa.Text, nullable=True),
    )
    op.create_table(
        "transform_shards",
        sa.Column("job_key", sa.String(64), primary_key=True),
        sa.Column("shard_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("object_index", sa.Integer, nullable=False),
        sa.Column("start", sa.BigInteger, nullable=False),
        sa.Column("end", sa.BigInteger, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("part_size", sa.BigInteger, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("transform_shards")
    op.drop_table("transform_objects")
    op.drop_table("transform_jobs")
