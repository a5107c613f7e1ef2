"""Alarms and their history in the metadata store.

One row per alarm (its :class:`~shipway.domain.alarm.MetricAlarm` as JSON, with the columns
DescribeAlarms filters and pages on) and one row per history item, of which each alarm keeps
the newest ``history_limit``. Alarm names are case-sensitive, as CloudWatch's are.

Every change is a read-change-write in one transaction (PostgreSQL locks the row; SQLite takes
its write lock before the read), so the evaluator, PutMetricAlarm and SetAlarmState never lose
each other's writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shipway.domain.alarm import AlarmHistoryItem, AlarmState, HistoryItemType, MetricAlarm
from shipway.domain.model import Tag
from shipway.store import schema
from shipway.store.transactions import retried

__all__ = ["AlarmChange", "AlarmStore", "HistoryQuery"]

T = TypeVar("T")


@dataclass(frozen=True)
class AlarmChange:
    """What a change function decided: the alarm to write and the history it adds."""

    alarm: MetricAlarm
    history: Sequence[AlarmHistoryItem] = ()
    tags: list[Tag] | None = None
    """New tags, or None to keep the stored ones."""


@dataclass(frozen=True)
class HistoryQuery:
    alarm_name: str | None = None
    item_type: HistoryItemType | None = None
    start: datetime | None = None
    end: datetime | None = None
    ascending: bool = False
    after_id: int | None = None
    """Keyset: items after this id in the scan order."""
    limit: int = 100


class AlarmStore:
    def __init__(self, engine: Engine, history_limit: int = 100) -> None:
        self._engine = engine
        self._table = schema.alarms
        self._history = schema.alarm_history
        self.history_limit = history_limit

    # --- reading -------------------------------------------------------------------------

    def get(self, name: str) -> MetricAlarm | None:
        with self._engine.connect() as conn:
            doc = conn.execute(
                sa.select(self._table.c.doc).where(self._table.c.name == name)
            ).scalar_one_or_none()
        return None if doc is None else MetricAlarm.model_validate_json(doc)

    def get_many(self, names: Iterable[str]) -> dict[str, MetricAlarm]:
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        with self._engine.connect() as conn:
            docs = conn.execute(
                sa.select(self._table.c.doc).where(self._table.c.name.in_(wanted))
            ).scalars()
            found = [MetricAlarm.model_validate_json(doc) for doc in docs]
        return {a.alarm_name: a for a in found}

    def states(self, names: Iterable[str]) -> dict[str, AlarmState]:
        """The state of each named alarm that exists (one small query, no documents)."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        t = self._table
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.name, t.c.state).where(t.c.name.in_(wanted))).all()
        return {row.name: AlarmState(row.state) for row in rows}

    def all(self) -> list[MetricAlarm]:
        with self._engine.connect() as conn:
            docs = conn.execute(sa.select(self._table.c.doc).order_by(self._table.c.name))
            return [MetricAlarm.model_validate_json(doc) for doc in docs.scalars()]

    def page(
        self,
        *,
        names: Sequence[str] | None = None,
        prefix: str | None = None,
        state: AlarmState | None = None,
        namespace: str | None = None,
        metric_name: str | None = None,
        keep: Callable[[MetricAlarm], bool] | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> tuple[list[MetricAlarm], bool]:
        """Alarms by name, after ``after``: at most ``limit`` of them, and whether more follow.

        ``keep`` filters on what the columns cannot (actions, dimensions...).
        """
        t = self._table
        stmt = sa.select(t.c.doc)
        if names is not None:
            stmt = stmt.where(t.c.name.in_(list(names)))
        if prefix is not None:
            stmt = stmt.where(t.c.name.startswith(prefix, autoescape=True))
        if state is not None:
            stmt = stmt.where(t.c.state == state.value)
        if namespace is not None:
            stmt = stmt.where(t.c.namespace == namespace)
        if metric_name is not None:
            stmt = stmt.where(t.c.metric_name == metric_name)
        if after is not None:
            stmt = stmt.where(t.c.name > after)
        items: list[MetricAlarm] = []
        with self._engine.connect() as conn:
            for doc in conn.execute(stmt.order_by(t.c.name)).scalars():
                alarm = MetricAlarm.model_validate_json(doc)
                if keep is not None and not keep(alarm):
                    continue
                if limit is not None and len(items) == limit:
                    return items, True
                items.append(alarm)
        return items, False

    def tags(self, name: str) -> list[Tag] | None:
        """The alarm's tags; None when there is no such alarm."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(self._table.c.tags).where(self._table.c.name == name)
            ).one_or_none()
        if row is None:
            return None
        return [Tag.model_validate(t) for t in json.loads(row.tags or "[]")]

    def history(self, query: HistoryQuery) -> tuple[list[AlarmHistoryItem], int | None]:
        """History items in the scan order, and the id to continue after when more follow."""
        h = self._history
        stmt = sa.select(h.c.id, h.c.doc)
        if query.alarm_name is not None:
            stmt = stmt.where(h.c.alarm_name == query.alarm_name)
        if query.item_type is not None:
            stmt = stmt.where(h.c.item_type == query.item_type.value)
        if query.start is not None:
            stmt = stmt.where(h.c.timestamp >= query.start.timestamp())
        if query.end is not None:
            stmt = stmt.where(h.c.timestamp <= query.end.timestamp())
        if query.after_id is not None:
            stmt = stmt.where(
                h.c.id > query.after_id if query.ascending else h.c.id < query.after_id
            )
        order = sa.asc(h.c.id) if query.ascending else sa.desc(h.c.id)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt.order_by(order).limit(query.limit + 1)).all()
        items = [AlarmHistoryItem.model_validate_json(row.doc) for row in rows[: query.limit]]
        more = rows[query.limit - 1].id if len(rows) > query.limit else None
        return items, more

    # --- writing -------------------------------------------------------------------------

    def upsert(self, name: str, change: Callable[[MetricAlarm | None], AlarmChange]) -> MetricAlarm:
        """Create or replace the alarm ``name``: ``change`` sees the stored one (or None)."""

        def run(conn: Connection) -> MetricAlarm:
            current = self._locked(conn, name)
            decided = change(current)
            row = _row(decided.alarm)
            if decided.tags is not None:
                row["tags"] = json.dumps([t.model_dump(by_alias=True) for t in decided.tags])
            t = self._table
            if current is None:
                conn.execute(t.insert().values(**row))
            else:
                conn.execute(t.update().where(t.c.name == name).values(**row))
            self._append(conn, decided.history)
            return decided.alarm

        return retried(self._engine, run)

    def update(
        self, name: str, change: Callable[[MetricAlarm], AlarmChange | None]
    ) -> MetricAlarm | None:
        """Read, change and write one alarm; None when it is gone or ``change`` returns None
        (nothing to write)."""

        def run(conn: Connection) -> MetricAlarm | None:
            current = self._locked(conn, name)
            if current is None:
                return None
            decided = change(current)
            if decided is None:
                return None
            t = self._table
            conn.execute(t.update().where(t.c.name == name).values(**_row(decided.alarm)))
            self._append(conn, decided.history)
            return decided.alarm

        return retried(self._engine, run)

    def remove(self, names: Sequence[str]) -> list[str]:
        """Delete every named alarm and its history, or, when some do not exist, nothing:
        returns the names that do not exist."""
        wanted = list(dict.fromkeys(names))

        def run(conn: Connection) -> list[str]:
            t = self._table
            found = set(conn.execute(sa.select(t.c.name).where(t.c.name.in_(wanted))).scalars())
            missing = [n for n in wanted if n not in found]
            if missing:
                return missing
            conn.execute(t.delete().where(t.c.name.in_(wanted)))
            h = self._history
            conn.execute(h.delete().where(h.c.alarm_name.in_(wanted)))
            return []

        return retried(self._engine, run)

    def _locked(self, conn: Connection, name: str) -> MetricAlarm | None:
        t = self._table
        doc = conn.execute(
            sa.select(t.c.doc).where(t.c.name == name).with_for_update()
        ).scalar_one_or_none()
        return None if doc is None else MetricAlarm.model_validate_json(doc)

    def _append(self, conn: Connection, items: Sequence[AlarmHistoryItem]) -> None:
        h = self._history
        for item in items:
            conn.execute(
                h.insert().values(
                    alarm_name=item.alarm_name,
                    timestamp=item.timestamp.timestamp(),
                    item_type=item.history_item_type.value,
                    doc=item.model_dump_json(by_alias=True, exclude_none=True),
                )
            )
        for name in {item.alarm_name for item in items}:
            oldest_kept = conn.execute(
                sa.select(h.c.id)
                .where(h.c.alarm_name == name)
                .order_by(sa.desc(h.c.id))
                .limit(1)
                .offset(self.history_limit - 1)
            ).scalar_one_or_none()
            if oldest_kept is not None:
                conn.execute(h.delete().where(h.c.alarm_name == name, h.c.id < oldest_kept))


def _row(alarm: MetricAlarm) -> dict[str, Any]:
    return {
        "name": alarm.alarm_name,
        "arn": alarm.alarm_arn,
        "state": alarm.state_value.value,
        "namespace": alarm.namespace,
        "metric_name": alarm.metric_name,
        "configuration_updated": alarm.alarm_configuration_updated_timestamp.timestamp(),
        "doc": alarm.model_dump_json(by_alias=True, exclude_none=True),
    }
