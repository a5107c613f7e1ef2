"""The metadata schema at the newest revision (migrations under ``migrations/`` build it).

Each resource is one row: a few indexed columns to filter, sort and page on, and ``doc``, the
resource's whole shape as JSON. New optional fields need no migration; new columns do.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "alarm_history",
    "alarms",
    "async_invocations",
    "endpoint_configs",
    "endpoints",
    "instances",
    "metadata",
    "models",
    "scalable_targets",
    "scaling_activities",
    "scaling_policies",
    "sns_deliveries",
    "sns_messages",
    "sns_subscriptions",
    "sns_topics",
    "transform_jobs",
    "transform_objects",
    "transform_shards",
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

# Application Auto Scaling. A target is keyed by its variant and dimension; ``resource_key`` is
# its ResourceId with the endpoint's name lower-cased (endpoint names are case-insensitive),
# ``endpoint_key`` that name alone, to forget an endpoint's targets with it. The integer ids
# order each listing and are the keyset its NextToken carries.
scalable_targets = sa.Table(
    "scalable_targets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("resource_key", sa.String(255), nullable=False),
    sa.Column("scalable_dimension", sa.String(64), nullable=False),
    sa.Column("endpoint_key", sa.String(64), nullable=False, index=True),
    sa.Column("tags", sa.Text, nullable=True),
    sa.Column("doc", sa.Text, nullable=False),
    sa.UniqueConstraint("resource_key", "scalable_dimension", name="uq_scalable_targets_target"),
)
scaling_policies = sa.Table(
    "scaling_policies",
    metadata,
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
scaling_activities = sa.Table(
    "scaling_activities",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("activity_id", sa.String(64), nullable=False, unique=True),
    sa.Column("resource_key", sa.String(255), nullable=False),
    sa.Column("scalable_dimension", sa.String(64), nullable=False),
    sa.Column("endpoint_key", sa.String(64), nullable=False, index=True),
    sa.Column("not_scaled", sa.Boolean, nullable=False),
    sa.Column("doc", sa.Text, nullable=False),
    sa.Index("ix_scaling_activities_target", "resource_key", "scalable_dimension", "id"),
)

# Asynchronous inference: the queue of InvokeEndpointAsync requests when it lives in the metadata
# store (SQLite, PostgreSQL). ``id`` orders the queue; a request is claimable while InQueue, or
# InProgress past ``lease_until`` (its dispatcher stopped renewing it). ``status``, ``attempts``
# and ``started`` override the document's, so a claim or a release rewrites no JSON.
async_invocations = sa.Table(
    "async_invocations",
    metadata,
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

# SNS: topics (names are case-sensitive, as SNS's are: the name itself is the key), their
# subscriptions, the ids of the messages published (unique per topic: a caller-given MessageId
# publishes once) and the outbox of deliveries, one row per message and subscription, written
# before Publish answers and sent by the delivery loop until delivered or given up.
sns_topics = sa.Table(
    "sns_topics",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("arn", sa.String(512), nullable=False, unique=True),
    sa.Column("creation_time", sa.Float, nullable=False),
    sa.Column("doc", sa.Text, nullable=False),
)
sns_subscriptions = sa.Table(
    "sns_subscriptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("arn", sa.String(1024), nullable=False, unique=True),
    sa.Column("topic_name", sa.String(256), nullable=False, index=True),
    sa.Column("protocol", sa.String(16), nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("confirmed", sa.Boolean, nullable=False),
    sa.Column("token", sa.String(256), nullable=True, index=True),
    sa.Column("doc", sa.Text, nullable=False),
)
sns_messages = sa.Table(
    "sns_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("topic_name", sa.String(256), nullable=False),
    sa.Column("message_id", sa.String(100), nullable=False),
    sa.Column("creation_time", sa.Float, nullable=False, index=True),
    sa.UniqueConstraint("topic_name", "message_id", name="uq_sns_messages_message_id"),
)
sns_deliveries = sa.Table(
    "sns_deliveries",
    metadata,
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

# Transform jobs, and each job's plan: its input objects and their shards, with their progress
transform_jobs = _resource_table(
    "transform_jobs",
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("last_modified_time", sa.Float, nullable=False),
)
transform_objects = sa.Table(
    "transform_objects",
    metadata,
    sa.Column("job_key", sa.String(64), primary_key=True),
    sa.Column("object_index", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("failure", sa.Text, nullable=True),
)
transform_shards = sa.Table(
    "transform_shards",
    metadata,
    sa.Column("job_key", sa.String(64), primary_key=True),
    sa.Column("shard_index", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("object_index", sa.Integer, nullable=False),
    sa.Column("start", sa.BigInteger, nullable=False),
    sa.Column("end", sa.BigInteger, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("records", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("part_size", sa.BigInteger, nullable=False, server_default="0"),
)
