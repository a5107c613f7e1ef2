"""The metadata schema at the newest revision (migrations under ``migrations/`` build it).

Each resource is one row: a few indexed columns to filter, sort and page on, and ``doc``, the
resource's whole shape as JSON. New optional fields need no migration; new columns do.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "alarm_history",
    "alarms",
    "endpoint_configs",
    "endpoints",
    "instances",
    "metadata",
    "models",
]

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
# CloudWatch alarm names are case-sensitive (unlike SageMaker's): the name itself is the key.
alarms = sa.Table(
    "alarms",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("arn", sa.String(1600), nullable=False),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("metric_name", sa.String(255), nullable=False),
    sa.Column("configuration_updated", sa.Float, nullable=False),
    sa.Column("tags", sa.Text, nullable=True),
    sa.Column("doc", sa.Text, nullable=False),
)
alarm_history = sa.Table(
    "alarm_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alarm_name", sa.String(255), nullable=False, index=True),
    sa.Column("timestamp", sa.Float, nullable=False, index=True),
    sa.Column("item_type", sa.String(32), nullable=False),
    sa.Column("doc", sa.Text, nullable=False),
)
