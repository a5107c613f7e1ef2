"""The metadata schema at the newest revision (migrations under ``migrations/`` build it).

Each resource is one row: a few indexed columns to filter, sort and page on, and ``doc``, the
resource's whole shape as JSON. New optional fields need no migration; new columns do.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["endpoint_configs", "endpoints", "instances", "metadata", "models"]

metadata = sa.MetaData()


def _resource_table(name: str, *extra: sa.Column[object]) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("name_key", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column("creation_time", sa.Float, nullable=False, index=True),
        sa.Column("doc", sa.Text, nullable=False),
        *extra,
    )


models = _resource_table("models")
endpoint_configs = _resource_table("endpoint_configs")
endpoints = _resource_table(
    "endpoints",
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("last_modified_time", sa.Float, nullable=False),
)
instances = sa.Table(
    "instances",
    metadata,
    sa.Column("instance_id", sa.String(64), primary_key=True),
    sa.Column("endpoint_key", sa.String(64), nullable=False, index=True),
    sa.Column("variant_name", sa.String(64), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("address", sa.String(512), nullable=False),
    sa.Column("doc", sa.Text, nullable=False),
)
