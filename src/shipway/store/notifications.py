"""SNS in the metadata store: topics, subscriptions, published message ids and the outbox.

Publish writes, in one transaction, the message's id (unique per topic, so a caller that
publishes the same ``MessageId`` again after a crash publishes nothing new) and one
:class:`Delivery` row per confirmed subscription, before it answers: a message the caller was
told is published survives a kill -9. The delivery loop
(:mod:`shipway.service.notification_delivery`) reads the due rows, POSTs them, and records each
attempt here: delivered, to retry at a time, or given up. A ``SubscriptionConfirmation`` is a
delivery like any other.

Writers that read before they write take the topic's row lock first (PostgreSQL ``FOR UPDATE``
or ``FOR SHARE``; SQLite's write lock with ``BEGIN IMMEDIATE``), so Subscribe never doubles a
subscription and Publish never writes to a topic being deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shipway.domain.notification import MessageType, Subscription, Topic, TopicNotFound
from shipway.store import schema
from shipway.store.transactions import retried

__all__ = ["Delivery", "DeliveryStatus", "NotificationStore", "Outgoing"]

T = TypeVar("T")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """Given up after the retry policy's last attempt."""


@dataclass(frozen=True)
class Outgoing:
    """A message to POST to one subscription's endpoint."""

    subscription_arn: str
    message_id: str
    message_type: MessageType
    url: str
    body: str


@dataclass(frozen=True)
class Delivery(Outgoing):
    """An outbox row: the message and how its delivery is going."""

    id: int
    status: DeliveryStatus
    attempts: int
    next_attempt: float
    creation_time: float
    finished: float | None = None
    last_error: str | None = None

    @property
    def topic_arn(self) -> str:
        return self.subscription_arn.rpartition(":")[0]


class NotificationStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._topics = schema.sns_topics
        self._subscriptions = schema.sns_subscriptions
        self._messages = schema.sns_messages
        self._deliveries = schema.sns_deliveries

    # --- topics ----------------------------------------------------------------------------

    def add_topic(self, topic: Topic) -> Topic:
        """Create ``topic``, or return the stored topic of that name (CreateTopic is
        idempotent; the caller compares)."""

        def run(conn: Connection) -> Topic:
            existing = self._topic(conn, topic.name, lock=True)
            if existing is not None:
                return existing
            conn.execute(
                self._topics.insert().values(
                    name=topic.name,
                    arn=topic.topic_arn,
                    creation_time=topic.creation_time.timestamp(),
                    doc=_doc(topic),
                )
            )
            return topic

        return retried(self._engine, run)

    def get_topic(self, name: str) -> Topic | None:
        with self._engine.connect() as conn:
            return self._topic(conn, name)

    def update_topic(self, name: str, change: Callable[[Topic], Topic]) -> Topic | None:
        def run(conn: Connection) -> Topic | None:
            current = self._topic(conn, name, lock=True)
            if current is None:
                return None
            changed = change(current)
            t = self._topics
            conn.execute(t.update().where(t.c.name == name).values(doc=_doc(changed)))
            return changed

        return retried(self._engine, run)

    def remove_topic(self, name: str) -> bool:
        """Delete the topic, its subscriptions and what is still to be sent to them."""

        def run(conn: Connection) -> bool:
            s = self._subscriptions
            arns = list(conn.execute(sa.select(s.c.arn).where(s.c.topic_name == name)).scalars())
            self._drop_pending(conn, arns)
            conn.execute(s.delete().where(s.c.topic_name == name))
            t = self._topics
            return bool(conn.execute(t.delete().where(t.c.name == name)).rowcount)

        return retried(self._engine, run)

    def page_topics(self, after: str | None, limit: int) -> tuple[list[Topic], bool]:
        """Topics by name after ``after``: at most ``limit``, and whether more follow."""
        t = self._topics
        stmt = sa.select(t.c.doc).order_by(t.c.name).limit(limit + 1)
        if after is not None:
            stmt = stmt.where(t.c.name > after)
        with self._engine.connect() as conn:
            docs = list(conn.execute(stmt).scalars())
        return [Topic.model_validate_json(d) for d in docs[:limit]], len(docs) > limit

    def _topic(self, conn: Connection, name: str, *, lock: bool = False) -> Topic | None:
        t = self._topics
        stmt = sa.select(t.c.doc).where(t.c.name == name)
        if lock:
            stmt = stmt.with_for_update()
        doc = conn.execute(stmt).scalar_one_or_none()
        return None if doc is None else Topic.model_validate_json(doc)

    # --- subscriptions -----------------------------------------------------------------------

    def subscribe(
        self,
        topic: Topic,
        protocol: str,
        endpoint: str,
        decide: Callable[[Subscription | None], tuple[Subscription, Outgoing | None]],
        now: float,
    ) -> Subscription:
        """Add or renew the topic's subscription of ``endpoint``: ``decide`` sees the stored one
        (or None) and returns the subscription to store and the confirmation to send, if any.
        :class:`TopicNotFound` when the topic is gone."""

        def run(conn: Connection) -> Subscription:
            if self._topic(conn, topic.name, lock=True) is None:
                raise TopicNotFound(topic.topic_arn)
            s = self._subscriptions
            doc = conn.execute(
                sa.select(s.c.doc).where(
                    s.c.topic_name == topic.name,
                    s.c.protocol == protocol,
                    s.c.endpoint == endpoint,
                )
            ).scalar_one_or_none()
            current = None if doc is None else Subscription.model_validate_json(doc)
            subscription, confirmation = decide(current)
            row = {
                "arn": subscription.subscription_arn,
                "topic_name": topic.name,
                "protocol": subscription.protocol,
                "endpoint": subscription.endpoint,
                "confirmed": not subscription.pending_confirmation,
                "token": subscription.confirmation_token,
                "doc": _doc(subscription),
            }
            if current is None:
                conn.execute(s.insert().values(**row))
            else:
                conn.execute(s.update().where(s.c.arn == current.subscription_arn).values(**row))
            if confirmation is not None:
                self._enqueue(conn, [confirmation], now)
            return subscription

        return retried(self._engine, run)

    def get_subscription(self, arn: str) -> Subscription | None:
        s = self._subscriptions
        with self._engine.connect() as conn:
            doc = conn.execute(sa.select(s.c.doc).where(s.c.arn == arn)).scalar_one_or_none()
        return None if doc is None else Subscription.model_validate_json(doc)

    def by_token(self, topic_name: str, token: str) -> Subscription | None:
        s = self._subscriptions
        with self._engine.connect() as conn:
            docs = conn.execute(
                sa.select(s.c.doc).where(s.c.topic_name == topic_name, s.c.token == token)
            ).scalars()
            found = [Subscription.model_validate_json(d) for d in docs]
        return found[0] if found else None

    def confirm(self, arn: str) -> Subscription | None:
        """Mark the subscription confirmed; None when it is gone."""

        def run(conn: Connection) -> Subscription | None:
            s = self._subscriptions
            doc = conn.execute(
                sa.select(s.c.doc).where(s.c.arn == arn).with_for_update()
            ).scalar_one_or_none()
            if doc is None:
                return None
            current = Subscription.model_validate_json(doc)
            if not current.pending_confirmation:
                return current
            confirmed = current.model_copy(update={"pending_confirmation": False})
            conn.execute(
                s.update().where(s.c.arn == arn).values(confirmed=True, doc=_doc(confirmed))
            )
            return confirmed

        return retried(self._engine, run)

    def remove_subscription(self, arn: str) -> bool:
        """Delete the subscription and what is still to be sent to it."""

        def run(conn: Connection) -> bool:
            self._drop_pending(conn, [arn])
            s = self._subscriptions
            return bool(conn.execute(s.delete().where(s.c.arn == arn)).rowcount)

        return retried(self._engine, run)

    def page_subscriptions(
        self, topic_name: str | None, after: int | None, limit: int
    ) -> tuple[list[Subscription], int | None]:
        """Subscriptions in the order they were made (of one topic, or all): at most ``limit``
        after the keyset ``after``, and the keyset to continue from when more follow."""
        s = self._subscriptions
        stmt = sa.select(s.c.id, s.c.doc).order_by(s.c.id).limit(limit + 1)
        if topic_name is not None:
            stmt = stmt.where(s.c.topic_name == topic_name)
        if after is not None:
            stmt = stmt.where(s.c.id > after)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        items = [Subscription.model_validate_json(row.doc) for row in rows[:limit]]
        return items, rows[limit - 1].id if len(rows) > limit else None

    def subscription_counts(self, topic_name: str) -> tuple[int, int]:
        """(confirmed, pending) subscriptions of a topic."""
        s = self._subscriptions
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(s.c.confirmed, sa.func.count())
                .where(s.c.topic_name == topic_name)
                .group_by(s.c.confirmed)
            ).all()
        counts = {bool(row[0]): int(row[1]) for row in rows}
        return counts.get(True, 0), counts.get(False, 0)

    # --- publishing --------------------------------------------------------------------------

    def publish(
        self,
        topic: Topic,
        message_id: str,
        now: float,
        render: Callable[[Subscription], Outgoing],
    ) -> int | None:
        """Record the message and one delivery per confirmed subscription (``render`` makes
        each); the number of deliveries, or None when this topic already had a message of this
        id (nothing is written). :class:`TopicNotFound` when the topic is gone."""

        def run(conn: Connection) -> int | None:
            if self._topic(conn, topic.name, lock=True) is None:
                raise TopicNotFound(topic.topic_arn)
            m = self._messages
            seen = conn.execute(
                sa.select(m.c.id).where(m.c.topic_name == topic.name, m.c.message_id == message_id)
            ).first()
            if seen is not None:
                return None
            conn.execute(
                m.insert().values(topic_name=topic.name, message_id=message_id, creation_time=now)
            )
            s = self._subscriptions
            docs = conn.execute(
                sa.select(s.c.doc)
                .where(s.c.topic_name == topic.name, s.c.confirmed.is_(True))
                .order_by(s.c.id)
            ).scalars()
            outgoing = [render(Subscription.model_validate_json(d)) for d in docs]
            self._enqueue(conn, outgoing, now)
            return len(outgoing)

        return retried(self._engine, run)

    # --- the outbox --------------------------------------------------------------------------

    def due(self, now: float, exclude: Collection[int], limit: int) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest first, but those in
        ``exclude`` (under way)."""
        d = self._deliveries
        stmt = (
            sa.select(d)
            .where(d.c.status == DeliveryStatus.PENDING.value, d.c.next_attempt <= now)
            .order_by(d.c.next_attempt, d.c.id)
            .limit(limit + len(exclude))
        )
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [_delivery(row) for row in rows if row.id not in exclude][:limit]

    def next_attempt_after(self, now: float) -> float | None:
        """When the next pending delivery not yet due is due, if any."""
        d = self._deliveries
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.min(d.c.next_attempt)).where(
                    d.c.status == DeliveryStatus.PENDING.value, d.c.next_attempt > now
                )
            ).scalar()
        return None if value is None else float(value)

    def delivered(self, delivery_id: int, attempts: int, now: float) -> None:
        self._finish(delivery_id, DeliveryStatus.DELIVERED, attempts, now, None)

    def give_up(self, delivery_id: int, attempts: int, now: float, error: str) -> None:
        self._finish(delivery_id, DeliveryStatus.FAILED, attempts, now, error)

    def retry_at(self, delivery_id: int, attempts: int, when: float, error: str) -> None:
        d = self._deliveries
        with self._engine.begin() as conn:
            conn.execute(
                d.update()
                .where(d.c.id == delivery_id, d.c.status == DeliveryStatus.PENDING.value)
                .values(attempts=attempts, next_attempt=when, last_error=error[:1000])
            )

    def deliveries(self, subscription_arn: str | None = None) -> list[Delivery]:
        """Every delivery still kept (of one subscription, or all), oldest first."""
        d = self._deliveries
        stmt = sa.select(d).order_by(d.c.id)
        if subscription_arn is not None:
            stmt = stmt.where(d.c.subscription_arn == subscription_arn)
        with self._engine.connect() as conn:
            return [_delivery(row) for row in conn.execute(stmt).all()]

    def delivery_counts(self, subscription_arn: str) -> dict[DeliveryStatus, int]:
        """How many deliveries to the subscription are kept, by status."""
        d = self._deliveries
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.c.status, sa.func.count())
                .where(d.c.subscription_arn == subscription_arn)
                .group_by(d.c.status)
            ).all()
        counts = {status: 0 for status in DeliveryStatus}
        counts.update({DeliveryStatus(row[0]): int(row[1]) for row in rows})
        return counts

    def last_error(self, subscription_arn: str) -> str | None:
        """Why the newest failed attempt to deliver to the subscription failed, if any did."""
        d = self._deliveries
        with self._engine.connect() as conn:
            error: str | None = conn.execute(
                sa.select(d.c.last_error)
                .where(d.c.subscription_arn == subscription_arn, d.c.last_error.is_not(None))
                .order_by(sa.desc(sa.func.coalesce(d.c.finished, d.c.next_attempt)))
                .limit(1)
            ).scalar_one_or_none()
        return error

    def prune(self, before: float) -> int:
        """Forget deliveries finished, and message ids published, before ``before``."""
        d = self._deliveries
        m = self._messages
        with self._engine.begin() as conn:
            gone = conn.execute(
                d.delete().where(d.c.status != DeliveryStatus.PENDING.value, d.c.finished < before)
            ).rowcount
            conn.execute(m.delete().where(m.c.creation_time < before))
        return int(gone)

    def _finish(
        self,
        delivery_id: int,
        status: DeliveryStatus,
        attempts: int,
        now: float,
        error: str | None,
    ) -> None:
        d = self._deliveries
        with self._engine.begin() as conn:
            conn.execute(
                d.update()
                .where(d.c.id == delivery_id, d.c.status == DeliveryStatus.PENDING.value)
                .values(
                    status=status.value,
                    attempts=attempts,
                    finished=now,
                    last_error=None if error is None else error[:1000],
                )
            )

    def _enqueue(self, conn: Connection, outgoing: list[Outgoing], now: float) -> None:
        if not outgoing:
            return
        conn.execute(
            self._deliveries.insert(),
            [
                {
                    "subscription_arn": o.subscription_arn,
                    "message_id": o.message_id,
                    "message_type": o.message_type.value,
                    "url": o.url,
                    "body": o.body,
                    "status": DeliveryStatus.PENDING.value,
                    "attempts": 0,
                    "next_attempt": now,
                    "creation_time": now,
                }
                for o in outgoing
            ],
        )

    def _drop_pending(self, conn: Connection, arns: list[str]) -> None:
        if not arns:
            return
        d = self._deliveries
        conn.execute(
            d.delete().where(
                d.c.subscription_arn.in_(arns), d.c.status == DeliveryStatus.PENDING.value
            )
        )


def _doc(item: Topic | Subscription) -> str:
    return item.model_dump_json(by_alias=True, exclude_none=True)


def _delivery(row: sa.Row[tuple[object, ...]]) -> Delivery:
    values = row._mapping
    return Delivery(
        subscription_arn=values["subscription_arn"],
        message_id=values["message_id"],
        message_type=MessageType(values["message_type"]),
        url=values["url"],
        body=values["body"],
        id=values["id"],
        status=DeliveryStatus(values["status"]),
        attempts=values["attempts"],
        next_attempt=values["next_attempt"],
        creation_time=values["creation_time"],
        finished=values["finished"],
        last_error=values["last_error"],
    )
