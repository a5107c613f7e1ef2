"""SNS topics, subscriptions, published message ids and the outbox in the metadata store, on
SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from shipway.domain.notification import MessageType, Subscription, Topic, TopicNotFound
from shipway.store.metadata import MetadataStore
from shipway.store.notifications import DeliveryStatus, NotificationStore, Outgoing

START = datetime(2026, 1, 1, tzinfo=UTC)
T0 = START.timestamp()
PREFIX = "arn:aws:sns:us-east-1:123456789012:"


def topic(name: str) -> Topic:
    return Topic(topic_arn=PREFIX + name, name=name, creation_time=START)


def subscription(t: Topic, endpoint: str, *, pending: bool = True, n: int = 1) -> Subscription:
    return Subscription(
        subscription_arn=f"{t.topic_arn}:sub-{n}",
        topic_arn=t.topic_arn,
        protocol="http",
        endpoint=endpoint,
        owner="123456789012",
        pending_confirmation=pending,
        confirmation_token=f"token-{n}",
        token_time=START,
        creation_time=START,
    )


def outgoing(
    s: Subscription, message_id: str, kind: MessageType = MessageType.NOTIFICATION
) -> Outgoing:
    return Outgoing(s.subscription_arn, message_id, kind, s.endpoint, f'{{"m": "{message_id}"}}')


def subscribe(
    store: NotificationStore, t: Topic, endpoint: str, *, pending: bool = True, n: int = 1
) -> Subscription:
    made = subscription(t, endpoint, pending=pending, n=n)
    return store.subscribe(
        t,
        "http",
        endpoint,
        lambda current: (
            current or made,
            None if current else outgoing(made, f"c-{n}", MessageType.SUBSCRIPTION_CONFIRMATION),
        ),
        T0,
    )


@pytest.fixture
def notifications(store: MetadataStore) -> NotificationStore:
    return store.notifications


def test_topics_are_created_once_and_page_by_name(notifications: NotificationStore) -> None:
    first = notifications.add_topic(topic("b"))
    again = notifications.add_topic(topic("b").model_copy(update={"attributes": {"x": "y"}}))
    assert again == first  # the stored one: the caller compares
    for name in ("a", "c", "B"):
        notifications.add_topic(topic(name))
    page, more = notifications.page_topics(None, 2)
    assert [t.name for t in page] == ["B", "a"]  # case-sensitive, as SNS's names
    assert more
    page, more = notifications.page_topics("a", 2)
    assert [t.name for t in page] == ["b", "c"]
    assert not more
    changed = notifications.update_topic(
        "a", lambda t: t.model_copy(update={"attributes": {"DisplayName": "A"}})
    )
    assert changed is not None
    stored = notifications.get_topic("a")
    assert stored is not None
    assert stored.attributes == {"DisplayName": "A"}
    assert notifications.update_topic("nope", lambda t: t) is None


def test_a_subscription_is_stored_once_with_its_confirmation(
    notifications: NotificationStore,
) -> None:
    t = notifications.add_topic(topic("orders"))
    made = subscribe(notifications, t, "http://127.0.0.1:9/hook")
    assert subscribe(notifications, t, "http://127.0.0.1:9/hook", n=2) == made  # decide saw it
    [confirmation] = notifications.deliveries(made.subscription_arn)
    assert confirmation.message_type is MessageType.SUBSCRIPTION_CONFIRMATION
    assert confirmation.status is DeliveryStatus.PENDING
    assert confirmation.topic_arn == t.topic_arn
    assert notifications.subscription_counts("orders") == (0, 1)
    assert notifications.by_token("orders", "token-1") == made
    assert notifications.by_token("other", "token-1") is None

    confirmed = notifications.confirm(made.subscription_arn)
    assert confirmed is not None
    assert not confirmed.pending_confirmation
    assert notifications.confirm(made.subscription_arn) == confirmed
    assert notifications.subscription_counts("orders") == (1, 0)
    assert notifications.confirm(PREFIX + "orders:gone") is None
    with pytest.raises(TopicNotFound):
        subscribe(notifications, topic("missing"), "http://127.0.0.1:9/")


def test_concurrent_subscribes_of_one_endpoint_make_one_subscription(
    notifications: NotificationStore,
) -> None:
    t = notifications.add_topic(topic("busy"))
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            subscribe(notifications, t, "http://127.0.0.1:9/same", n=n)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    items, _ = notifications.page_subscriptions("busy", None, 100)
    assert len(items) == 1
    assert len(notifications.deliveries()) == 1


def test_publish_writes_a_delivery_per_confirmed_subscription_once_per_message_id(
    notifications: NotificationStore,
) -> None:
    t = notifications.add_topic(topic("orders"))
    confirmed = [subscribe(notifications, t, f"http://127.0.0.1:9/{n}", n=n) for n in (1, 2)]
    for s in confirmed:
        notifications.confirm(s.subscription_arn)
    subscribe(notifications, t, "http://127.0.0.1:9/pending", n=3)
    before = len(notifications.deliveries())

    render = lambda s: outgoing(s, "m-1")  # noqa: E731
    assert notifications.publish(t, "m-1", T0, render) == 2
    assert notifications.publish(t, "m-1", T0 + 1, render) is None  # the same id: nothing new
    sent = [d for d in notifications.deliveries() if d.message_id == "m-1"]
    assert sorted(d.subscription_arn for d in sent) == sorted(s.subscription_arn for s in confirmed)
    assert len(notifications.deliveries()) == before + 2
    # another topic may use the same id
    other = notifications.add_topic(topic("other"))
    assert notifications.publish(other, "m-1", T0, render) == 0
    with pytest.raises(TopicNotFound):
        notifications.publish(topic("missing"), "m-2", T0, render)


def test_the_outbox_hands_out_due_rows_and_records_each_attempt(
    notifications: NotificationStore,
) -> None:
    t = notifications.add_topic(topic("orders"))
    s = subscribe(notifications, t, "http://127.0.0.1:9/")
    notifications.confirm(s.subscription_arn)
    for n in range(3):
        notifications.publish(t, f"m-{n}", T0 + n, lambda s, n=n: outgoing(s, f"m-{n}"))
    confirmation = notifications.deliveries()[0]

    due = notifications.due(T0 + 10, set(), 10)
    assert [d.message_id for d in due] == ["c-1", "m-0", "m-1", "m-2"]
    assert [d.message_id for d in notifications.due(T0 + 10, {confirmation.id}, 2)] == [
        "m-0",
        "m-1",
    ]
    assert [d.message_id for d in notifications.due(T0 + 1, set(), 10)] == ["c-1", "m-0", "m-1"]

    first, second, third = due[1:]
    notifications.delivered(confirmation.id, 1, T0 + 10)
    notifications.retry_at(first.id, 1, T0 + 30, "HTTP 500")
    notifications.give_up(second.id, 4, T0 + 10, "ConnectionRefusedError")
    assert [d.message_id for d in notifications.due(T0 + 20, set(), 10)] == ["m-2"]
    assert notifications.next_attempt_after(T0 + 20) == T0 + 30
    [retried] = [d for d in notifications.deliveries() if d.id == first.id]
    assert (retried.status, retried.attempts, retried.last_error) == (
        DeliveryStatus.PENDING,
        1,
        "HTTP 500",
    )
    # a row finished is not changed by a late record
    notifications.retry_at(second.id, 5, T0 + 50, "late")
    [given_up] = [d for d in notifications.deliveries() if d.id == second.id]
    assert (given_up.status, given_up.attempts) == (DeliveryStatus.FAILED, 4)
    assert third.status is DeliveryStatus.PENDING

    # pruning forgets what finished before the time, and the message ids published before it
    notifications.publish(t, "m-9", T0 + 50, lambda s: outgoing(s, "m-9"))
    assert notifications.prune(T0 + 11) == 2
    assert {d.message_id for d in notifications.deliveries()} == {"m-0", "m-2", "m-9"}
    assert notifications.publish(t, "m-9", T0 + 51, lambda s: outgoing(s, "m-9")) is None
    assert notifications.publish(t, "m-1", T0 + 51, lambda s: outgoing(s, "m-1")) == 1


def test_unsubscribing_or_deleting_the_topic_drops_what_was_still_to_be_sent(
    notifications: NotificationStore,
) -> None:
    t = notifications.add_topic(topic("orders"))
    a = subscribe(notifications, t, "http://127.0.0.1:9/a", n=1)
    b = subscribe(notifications, t, "http://127.0.0.1:9/b", n=2)
    for s in (a, b):
        notifications.confirm(s.subscription_arn)
    notifications.delivered(notifications.deliveries(a.subscription_arn)[0].id, 1, T0)
    notifications.publish(t, "m", T0, lambda s: outgoing(s, "m"))

    assert notifications.remove_subscription(a.subscription_arn)
    assert not notifications.remove_subscription(a.subscription_arn)
    assert notifications.get_subscription(a.subscription_arn) is None
    # what was delivered is kept (until pruned); what was pending is gone
    assert [d.status for d in notifications.deliveries(a.subscription_arn)] == [
        DeliveryStatus.DELIVERED
    ]
    assert len(notifications.deliveries(b.subscription_arn)) == 2

    assert notifications.remove_topic("orders")
    assert not notifications.remove_topic("orders")
    assert notifications.get_topic("orders") is None
    assert notifications.deliveries(b.subscription_arn) == []
    assert notifications.page_subscriptions(None, None, 10) == ([], None)


def test_subscriptions_page_in_the_order_they_were_made(notifications: NotificationStore) -> None:
    t = notifications.add_topic(topic("a"))
    u = notifications.add_topic(topic("b"))
    made = [
        subscribe(notifications, t if n % 2 else u, f"http://127.0.0.1:9/{n}", n=n)
        for n in range(1, 6)
    ]
    page, after = notifications.page_subscriptions(None, None, 3)
    assert page == made[:3]
    assert after is not None
    page, after = notifications.page_subscriptions(None, after, 3)
    assert page == made[3:]
    assert after is None
    page, after = notifications.page_subscriptions("a", None, 10)
    assert page == [made[0], made[2], made[4]]
