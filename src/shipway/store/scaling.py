"""Scalable targets, scaling policies and scaling activities in the metadata store.

One row per target (keyed by its variant and scalable dimension), per policy (keyed by its
target and name) and per activity, each the domain shape as JSON with the columns the Describe
calls filter on. A target's ``resource_key`` is its ResourceId with the endpoint's name
lower-cased, as endpoint names are case-insensitive; the ResourceId in the document keeps the
endpoint's own spelling.

Rows have integer ids in insertion order: listings go by id (activities newest first), and a
NextToken is the id to continue after. Each target keeps its newest ``activity_limit``
activities.

Changes are read-change-write in one transaction (PostgreSQL locks the rows; SQLite takes its
write lock before the read), so concurrent RegisterScalableTarget, PutScalingPolicy and the
autoscaler's activities never lose one another's writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shipway.domain.scaling import (
    ConcurrentUpdate,
    ScalableDimension,
    ScalableTarget,
    ScalingActivity,
    ScalingPolicy,
    VariantId,
)
from shipway.store import schema
from shipway.store.transactions import retried

__all__ = ["Page", "ScalingStore", "TargetKey", "resource_key", "target_key"]

T = TypeVar("T")

ACTIVITY_LIMIT = 1000
"""Activities kept per target (AWS keeps six weeks of them)."""


@dataclass(frozen=True)
class TargetKey:
    """What identifies a scalable target in the store."""

    resource_key: str
    scalable_dimension: ScalableDimension

    @property
    def endpoint_key(self) -> str:
        return self.resource_key.split("/")[1]


def resource_key(variant: VariantId) -> str:
    """A variant's ResourceId with the endpoint's name lower-cased."""
    return f"endpoint/{variant.endpoint_name.lower()}/variant/{variant.variant_name}"


def target_key(variant: VariantId, dimension: ScalableDimension) -> TargetKey:
    """The key of the target on ``variant`` along ``dimension`` (the endpoint name in any case)."""
    return TargetKey(resource_key(variant), dimension)


def _key_of(item: ScalableTarget | ScalingPolicy | ScalingActivity) -> TargetKey:
    _, endpoint, _, variant = item.resource_id.split("/", 3)
    return TargetKey(f"endpoint/{endpoint.lower()}/variant/{variant}", item.scalable_dimension)


@dataclass(frozen=True)
class Page:
    """Which rows a Describe call wants: filters, and the keyset to continue after."""

    keys: Sequence[TargetKey] | None = None
    """Only these targets' rows (None: all)."""
    resource_keys: Sequence[str] | None = None
    """Only the rows of these variants, whatever the dimension (None: all)."""
    dimension: ScalableDimension | None = None
    endpoint_name: str | None = None
    """Only the rows of this endpoint's variants (None: all)."""
    after: int | None = None
    """The id of the last row of the previous page."""
    limit: int | None = None
    """At most this many rows (None: all)."""


class ScalingStore:
    def __init__(self, engine: Engine, activity_limit: int = ACTIVITY_LIMIT) -> None:
        self._engine = engine
        self._targets = schema.scalable_targets
        self._policies = schema.scaling_policies
        self._activities = schema.scaling_activities
        self.activity_limit = activity_limit

    # --- targets -----------------------------------------------------------------------------

    def target(self, key: TargetKey) -> ScalableTarget | None:
        t = self._targets
        with self._engine.connect() as conn:
            doc = conn.execute(sa.select(t.c.doc).where(*_is(t, key))).scalar_one_or_none()
        return None if doc is None else ScalableTarget.model_validate_json(doc)

    def targets(self, page: Page | None = None) -> tuple[list[ScalableTarget], int | None]:
        """Targets in the order they were registered; the id to continue after when more
        follow (only with a ``page`` limit)."""
        rows = self._page(self._targets, page, descending=False)
        return _items(ScalableTarget, rows, page)

    def upsert_target(
        self,
        key: TargetKey,
        change: Callable[[ScalableTarget | None], ScalableTarget],
        tags: dict[str, str] | None = None,
    ) -> tuple[ScalableTarget, ScalableTarget | None]:
        """Register or update the target ``key``: ``change`` sees the stored one (or None) and
        returns the new one. Returns the new and the previous target. ``tags`` (on the first
        registration only, as AWS reads them) are kept beside it."""

        def run(conn: Connection) -> tuple[ScalableTarget, ScalableTarget | None]:
            t = self._targets
            doc = conn.execute(
                sa.select(t.c.doc).where(*_is(t, key)).with_for_update()
            ).scalar_one_or_none()
            current = None if doc is None else ScalableTarget.model_validate_json(doc)
            target = change(current)
            values = {"doc": _json(target)}
            if current is None:
                conn.execute(
                    t.insert().values(
                        resource_key=key.resource_key,
                        scalable_dimension=key.scalable_dimension.value,
                        endpoint_key=key.endpoint_key,
                        tags=json.dumps(tags) if tags else None,
                        **values,
                    )
                )
            else:
                conn.execute(t.update().where(*_is(t, key)).values(**values))
            return target, current

        return self._transaction(run)

    def tags(self, key: TargetKey) -> dict[str, str] | None:
        """The tags the target was registered with; None when there is no such target."""
        t = self._targets
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(t.c.tags).where(*_is(t, key))).one_or_none()
        if row is None:
            return None
        tags: dict[str, str] = json.loads(row.tags or "{}")
        return tags

    def remove_target(self, key: TargetKey) -> tuple[ScalableTarget, list[ScalingPolicy]] | None:
        """Delete the target and its policies (not its activities: they are its history);
        returns what was deleted, or None when there was no such target."""

        def run(conn: Connection) -> tuple[ScalableTarget, list[ScalingPolicy]] | None:
            t, p = self._targets, self._policies
            doc = conn.execute(
                sa.select(t.c.doc).where(*_is(t, key)).with_for_update()
            ).scalar_one_or_none()
            if doc is None:
                return None
            policies = [
                ScalingPolicy.model_validate_json(d)
                for d in conn.execute(sa.select(p.c.doc).where(*_is(p, key)).order_by(p.c.id))
                .scalars()
                .all()
            ]
            conn.execute(p.delete().where(*_is(p, key)))
            conn.execute(t.delete().where(*_is(t, key)))
            return ScalableTarget.model_validate_json(doc), policies

        return self._transaction(run)

    # --- policies ----------------------------------------------------------------------------

    def policy(self, key: TargetKey, name: str) -> ScalingPolicy | None:
        p = self._policies
        with self._engine.connect() as conn:
            doc = conn.execute(
                sa.select(p.c.doc).where(*_is(p, key), p.c.policy_name == name)
            ).scalar_one_or_none()
        return None if doc is None else ScalingPolicy.model_validate_json(doc)

    def policies(
        self, page: Page | None = None, names: Collection[str] | None = None
    ) -> tuple[list[ScalingPolicy], int | None]:
        """Policies in the order they were created (a replaced policy keeps its place)."""
        where = [] if names is None else [self._policies.c.policy_name.in_(list(names))]
        rows = self._page(self._policies, page, descending=False, where=where)
        return _items(ScalingPolicy, rows, page)

    def upsert_policy(
        self,
        key: TargetKey,
        name: str,
        change: Callable[[ScalableTarget, ScalingPolicy | None], ScalingPolicy],
    ) -> tuple[ScalingPolicy, ScalingPolicy | None] | None:
        """Create or replace the policy ``name`` of the target ``key``, while the target is
        registered (its row is locked meanwhile): ``change`` sees the target and the stored
        policy (or None). Returns the new and the previous policy; None when there is no such
        target."""

        def run(conn: Connection) -> tuple[ScalingPolicy, ScalingPolicy | None] | None:
            t, p = self._targets, self._policies
            target_doc = conn.execute(
                sa.select(t.c.doc).where(*_is(t, key)).with_for_update()
            ).scalar_one_or_none()
            if target_doc is None:
                return None
            target = ScalableTarget.model_validate_json(target_doc)
            where = (*_is(p, key), p.c.policy_name == name)
            doc = conn.execute(
                sa.select(p.c.doc).where(*where).with_for_update()
            ).scalar_one_or_none()
            current = None if doc is None else ScalingPolicy.model_validate_json(doc)
            policy = change(target, current)
            if current is None:
                conn.execute(
                    p.insert().values(
                        resource_key=key.resource_key,
                        scalable_dimension=key.scalable_dimension.value,
                        policy_name=name,
                        endpoint_key=key.endpoint_key,
                        doc=_json(policy),
                    )
                )
            else:
                conn.execute(p.update().where(*where).values(doc=_json(policy)))
            return policy, current

        return self._transaction(run)

    def count_policies(self, key: TargetKey) -> int:
        p = self._policies
        with self._engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(p).where(*_is(p, key))
            ).scalar_one()
        return int(count)

    def remove_policy(self, key: TargetKey, name: str) -> ScalingPolicy | None:
        """Delete one policy; returns it, or None when there was no such policy."""

        def run(conn: Connection) -> ScalingPolicy | None:
            p = self._policies
            where = (*_is(p, key), p.c.policy_name == name)
            doc = conn.execute(
                sa.select(p.c.doc).where(*where).with_for_update()
            ).scalar_one_or_none()
            if doc is None:
                return None
            conn.execute(p.delete().where(*where))
            return ScalingPolicy.model_validate_json(doc)

        return self._transaction(run)

    # --- activities --------------------------------------------------------------------------

    def add_activity(
        self, activity: ScalingActivity, *, same: Callable[[ScalingActivity], bool] | None = None
    ) -> ScalingActivity:
        """Record an activity, keeping the target's newest ``activity_limit``.

        With ``same``: when the target's newest activity is ``same`` as this one (the same
        decision again), that one is replaced by this one, keeping its ActivityId and
        StartTime, rather than a row added per evaluation. Returns what was stored."""
        key = _key_of(activity)

        def run(conn: Connection) -> ScalingActivity:
            a = self._activities
            stored = activity
            if same is not None:
                newest = conn.execute(
                    sa.select(a.c.id, a.c.doc)
                    .where(*_is(a, key))
                    .order_by(sa.desc(a.c.id))
                    .limit(1)
                    .with_for_update()
                ).one_or_none()
                if newest is not None:
                    previous = ScalingActivity.model_validate_json(newest.doc)
                    if same(previous):
                        stored = activity.model_copy(
                            update={
                                "activity_id": previous.activity_id,
                                "start_time": previous.start_time,
                            }
                        )
                        conn.execute(
                            a.update().where(a.c.id == newest.id).values(doc=_json(stored))
                        )
                        return stored
            conn.execute(
                a.insert().values(
                    activity_id=activity.activity_id,
                    resource_key=key.resource_key,
                    scalable_dimension=key.scalable_dimension.value,
                    endpoint_key=key.endpoint_key,
                    not_scaled=activity.not_scaled,
                    doc=_json(activity),
                )
            )
            oldest_kept = conn.execute(
                sa.select(a.c.id)
                .where(*_is(a, key))
                .order_by(sa.desc(a.c.id))
                .limit(1)
                .offset(self.activity_limit - 1)
            ).scalar_one_or_none()
            if oldest_kept is not None:
                conn.execute(a.delete().where(*_is(a, key), a.c.id < oldest_kept))
            return stored

        return self._transaction(run)

    def activities(
        self, page: Page | None = None, *, include_not_scaled: bool = True
    ) -> tuple[list[ScalingActivity], int | None]:
        """Activities, newest first."""
        where = [] if include_not_scaled else [self._activities.c.not_scaled.is_(False)]
        rows = self._page(self._activities, page, descending=True, where=where)
        return _items(ScalingActivity, rows, page)

    # --- endpoints ---------------------------------------------------------------------------

    def remove_endpoint(
        self, endpoint_name: str, variant_names: Collection[str] | None = None
    ) -> list[ScalingPolicy]:
        """Delete an endpoint's (or these variants of it) targets, policies and activities;
        returns the policies deleted (their alarms are the caller's to delete)."""
        endpoint_key = endpoint_name.lower()

        def run(conn: Connection) -> list[ScalingPolicy]:
            policies: list[ScalingPolicy] = []
            for table in (self._policies, self._targets, self._activities):
                where = [table.c.endpoint_key == endpoint_key]
                if variant_names is not None:
                    where.append(
                        table.c.resource_key.in_(
                            [f"endpoint/{endpoint_key}/variant/{v}" for v in variant_names]
                        )
                    )
                if table is self._policies:
                    docs = conn.execute(sa.select(table.c.doc).where(*where)).scalars().all()
                    policies = [ScalingPolicy.model_validate_json(d) for d in docs]
                conn.execute(table.delete().where(*where))
            return policies

        return self._transaction(run)

    # --- plumbing ----------------------------------------------------------------------------

    def _page(
        self,
        table: sa.Table,
        page: Page | None,
        *,
        descending: bool,
        where: Sequence[sa.ColumnElement[bool]] = (),
    ) -> list[Any]:
        stmt = sa.select(table.c.id, table.c.doc).where(*where)
        if page is not None:
            if page.keys is not None:
                stmt = stmt.where(
                    sa.or_(
                        sa.false(),
                        *(sa.and_(*_is(table, k)) for k in page.keys),
                    )
                )
            if page.resource_keys is not None:
                stmt = stmt.where(table.c.resource_key.in_(list(page.resource_keys)))
            if page.dimension is not None:
                stmt = stmt.where(table.c.scalable_dimension == page.dimension.value)
            if page.endpoint_name is not None:
                stmt = stmt.where(table.c.endpoint_key == page.endpoint_name.lower())
            if page.after is not None:
                stmt = stmt.where(
                    table.c.id < page.after if descending else table.c.id > page.after
                )
            if page.limit is not None:
                stmt = stmt.limit(page.limit + 1)
        order = sa.desc(table.c.id) if descending else sa.asc(table.c.id)
        with self._engine.connect() as conn:
            return list(conn.execute(stmt.order_by(order)).all())

    def _transaction(self, run: Callable[[Connection], T]) -> T:
        try:
            return retried(self._engine, run)
        except sa.exc.IntegrityError as exc:  # a concurrent insert of the key, every attempt
            raise ConcurrentUpdate(
                "Another request changed the same scalable target or scaling policy "
                "at the same moment; try again."
            ) from exc


def _is(table: sa.Table, key: TargetKey) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        table.c.resource_key == key.resource_key,
        table.c.scalable_dimension == key.scalable_dimension.value,
    )


def _json(item: ScalableTarget | ScalingPolicy | ScalingActivity) -> str:
    return item.model_dump_json(by_alias=True, exclude_none=True)


S = TypeVar("S", ScalableTarget, ScalingPolicy, ScalingActivity)


def _items(shape: type[S], rows: list[Any], page: Page | None) -> tuple[list[S], int | None]:
    if page is None or page.limit is None or len(rows) <= page.limit:
        return [shape.model_validate_json(row.doc) for row in rows], None
    kept = rows[: page.limit]
    return [shape.model_validate_json(row.doc) for row in kept], int(kept[-1].id)
