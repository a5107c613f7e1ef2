"""NotificationService and alarm actions over a real SQLite store, with a manual clock: what
each call leaves in the outbox, idempotent publishing, confirmation tokens; and the retry
policy's delays."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from shipway.domain.alarm import AlarmState, PutMetricAlarmInput, SetAlarmStateInput
from shipway.domain.clock import ManualClock
from shipway.domain.errors import NotFound, ValidationError
from shipway.domain.names import Account
from shipway.domain.notification import (
    ConfirmSubscriptionInput,
    CreateTopicInput,
    MessageType,
    PublishInput,
    SubscribeInput,
)
from shipway.domain.shape import parse
from shipway.monitor.metrics import MetricsStore
from shipway.service.alarm_actions import AlarmActions
from shipway.service.alarms import AlarmService
from shipway.service.notification_delivery import DeliveryFailed, RetryPolicy, post
from shipway.service.notifications import NotificationService
from shipway.store.metadata import MetadataStore
from shipway.store.notifications import Delivery, DeliveryStatus

BASE = "https://shipway.example.com"
ACCOUNT = Account()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    opened = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    yield opened
    opened.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def woken() -> list[int]:
    return []


@pytest.fixture
def service(store: MetadataStore, clock: ManualClock, woken: list[int]) -> NotificationService:
    return NotificationService(
        store,
        ACCOUNT,
        clock,
        base_url=BASE + "/",
        policy=RetryPolicy(),
        on_outbox=lambda: woken.append(1),
    )


def topic(service: NotificationService, name: str = "orders") -> str:
    return service.create_topic(CreateTopicInput(name=name)).topic_arn


def subscribe(service: NotificationService, arn: str, endpoint: str = "http://h/") -> str:
    return service.subscribe(
        SubscribeInput(
            topic_arn=arn, protocol="http", endpoint=endpoint, return_subscription_arn=True
        )
    ).subscription_arn


def outbox(store: MetadataStore, kind: MessageType | None = None) -> list[Delivery]:
    return [d for d in store.notifications.deliveries() if kind is None or d.message_type is kind]


def confirm_all(service: NotificationService, store: MetadataStore) -> None:
    for delivery in outbox(store, MessageType.SUBSCRIPTION_CONFIRMATION):
        body = json.loads(delivery.body)
        service.confirm_subscription(
            ConfirmSubscriptionInput(topic_arn=body["TopicArn"], token=body["Token"])
        )


def test_the_retry_policy_retries_at_once_then_backs_off_then_gives_up() -> None:
    policy = RetryPolicy(retries=8, no_delay_retries=3, min_delay=1.0, max_delay=5.0)
    assert [policy.delay(n) for n in range(1, 10)] == [0, 0, 0, 1, 2, 4, 5, 5, None]
    assert RetryPolicy(retries=0).delay(1) is None
    default = RetryPolicy()
    assert sum(d or 0 for d in map(default.delay, range(1, 51))) / 3600 == pytest.approx(6.45, 0.01)
    assert default.delay(51) is None
    assert default.document()["http"]["defaultHealthyRetryPolicy"]["numRetries"] == 50  # type: ignore[index]


def test_subscribe_sends_a_confirmation_whose_url_confirms(
    service: NotificationService, store: MetadataStore, woken: list[int]
) -> None:
    arn = topic(service)
    subscription = subscribe(service, arn)
    assert woken == [1]
    [confirmation] = outbox(store)
    body = json.loads(confirmation.body)
    assert body["Type"] == "SubscriptionConfirmation"
    url = urlsplit(body["SubscribeURL"])
    assert f"{url.scheme}://{url.netloc}" == BASE
    query = {k: v for k, [v] in parse_qs(url.query).items()}
    assert query == {"Action": "ConfirmSubscription", "TopicArn": arn, "Token": body["Token"]}
    assert confirmation.url == "http://h/"

    # a second Subscribe of a pending endpoint sends a new token; the old one is then invalid
    assert subscribe(service, arn) == subscription
    first, second = outbox(store)
    old, new = json.loads(first.body)["Token"], json.loads(second.body)["Token"]
    assert old != new
    with pytest.raises(ValidationError, match="Token"):
        service.confirm_subscription(ConfirmSubscriptionInput(topic_arn=arn, token=old))
    confirmed = service.confirm_subscription(ConfirmSubscriptionInput(topic_arn=arn, token=new))
    assert confirmed.subscription_arn == subscription
    # confirming again is harmless; subscribing again answers the subscription, sending nothing
    service.confirm_subscription(ConfirmSubscriptionInput(topic_arn=arn, token=new))
    assert subscribe(service, arn) == subscription
    assert len(outbox(store)) == 2
    pending = service.subscribe(
        SubscribeInput(topic_arn=arn, protocol="http", endpoint="http://o/")
    )
    assert pending.subscription_arn == "pending confirmation"


def test_a_token_expires_after_two_days(
    service: NotificationService, store: MetadataStore, clock: ManualClock
) -> None:
    arn = topic(service)
    subscribe(service, arn)
    [confirmation] = outbox(store)
    clock.advance(timedelta(days=2, seconds=1).total_seconds())
    with pytest.raises(ValidationError, match="expired"):
        service.confirm_subscription(
            ConfirmSubscriptionInput(topic_arn=arn, token=json.loads(confirmation.body)["Token"])
        )


def test_publish_is_durable_and_idempotent_by_message_id(
    service: NotificationService, store: MetadataStore
) -> None:
    arn = topic(service)
    subscribe(service, arn, "http://a/")
    subscribe(service, arn, "http://b/")
    confirm_all(service, store)
    assert service.publish(arn, "done", subject="Done", message_id="req-1") == "req-1"
    assert service.publish(arn, "done", subject="Done", message_id="req-1") == "req-1"
    notifications = outbox(store, MessageType.NOTIFICATION)
    assert sorted(d.url for d in notifications) == ["http://a/", "http://b/"]
    body = json.loads(notifications[0].body)
    assert (body["MessageId"], body["Message"], body["Subject"]) == ("req-1", "done", "Done")
    assert body["UnsubscribeURL"].startswith(BASE + "/?Action=Unsubscribe&SubscriptionArn=")
    generated = service.publish(arn, "again")
    assert generated != "req-1"
    assert len(outbox(store, MessageType.NOTIFICATION)) == 4

    with pytest.raises(NotFound):  # what the async dispatcher catches
        service.publish(service.topic_arn("missing"), "m")
    with pytest.raises(ValidationError):
        service.publish(arn, "m", message_id="x" * 101)
    with pytest.raises(ValidationError, match="Empty message"):
        service.publish(arn, "")
    assert service.topic_exists(arn)
    assert not service.topic_exists(service.topic_arn("missing"))
    assert not service.topic_exists("arn:aws:sns:eu-west-1:123456789012:orders")
    assert not service.topic_exists("not an arn")


def test_message_structure_and_raw_delivery(
    service: NotificationService, store: MetadataStore
) -> None:
    arn = topic(service)
    subscribe(service, arn, "http://json/")
    service.subscribe(
        SubscribeInput(
            topic_arn=arn,
            protocol="http",
            endpoint="http://raw/",
            attributes={"RawMessageDelivery": "true"},
        )
    )
    confirm_all(service, store)
    message = json.dumps({"default": "for everyone", "http": "for http"})
    service.publish_request(
        parse(PublishInput, {"TopicArn": arn, "Message": message, "MessageStructure": "json"})
    )
    bodies = {d.url: d.body for d in outbox(store, MessageType.NOTIFICATION)}
    assert json.loads(bodies["http://json/"])["Message"] == "for http"
    assert bodies["http://raw/"] == "for http"
    with pytest.raises(ValidationError, match="No default entry"):
        service.publish_request(
            parse(PublishInput, {"TopicArn": arn, "Message": "{}", "MessageStructure": "json"})
        )
    with pytest.raises(ValidationError, match="Filter policies are not supported"):
        service.subscribe(
            SubscribeInput(
                topic_arn=arn,
                protocol="http",
                endpoint="http://f/",
                attributes={"FilterPolicy": "{}"},
            )
        )


def test_delete_topic_forgets_its_subscriptions(
    service: NotificationService, store: MetadataStore
) -> None:
    arn = topic(service)
    subscription = subscribe(service, arn)
    service.delete_topic(arn)
    service.delete_topic(arn)
    with pytest.raises(NotFound):
        service.get_subscription_attributes(subscription)
    assert outbox(store) == []
    assert service.list_subscriptions().subscriptions == []


def test_an_alarm_state_change_publishes_to_the_topics_of_its_actions(
    service: NotificationService,
    store: MetadataStore,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    oncall = topic(service, "oncall")
    calm = topic(service, "calm")
    subscribe(service, oncall, "http://oncall/")
    subscribe(service, calm, "http://calm/")
    confirm_all(service, store)
    alarms = AlarmService(
        store,
        MetricsStore(),
        clock,
        ACCOUNT,
        on_transition=AlarmActions(service, ACCOUNT).state_changed,
    )
    definition = {
        "AlarmName": "errors \u2014 orders",
        "MetricName": "Invocation5XXErrors",
        "Namespace": "AWS/SageMaker",
        "ExtendedStatistic": "p99",
        "Period": 60,
        "EvaluationPeriods": 2,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanThreshold",
        "AlarmActions": [oncall, service.topic_arn("deleted"), "arn:aws:automate:x"],
        "OKActions": [calm],
    }
    alarms.put_metric_alarm(parse(PutMetricAlarmInput, definition))
    with caplog.at_level(logging.WARNING, "shipway.service.alarm_actions"):
        alarms.set_alarm_state(
            SetAlarmStateInput(
                alarm_name="errors \u2014 orders", state_value=AlarmState.ALARM, state_reason="r"
            )
        )
    assert "could not notify" in caplog.text  # the deleted topic; the others were notified
    [sent] = outbox(store, MessageType.NOTIFICATION)
    assert sent.url == "http://oncall/"
    body = json.loads(sent.body)
    assert body["Subject"] == 'ALARM: "errors ? orders" in US East (N. Virginia)'
    document = json.loads(body["Message"])
    assert document["NewStateValue"] == "ALARM"
    assert document["OldStateValue"] == "INSUFFICIENT_DATA"
    assert document["AWSAccountId"] == "123456789012"
    assert document["Trigger"]["StatisticType"] == "ExtendedStatistic"
    assert document["Trigger"]["ExtendedStatistic"] == "p99"
    assert document["Trigger"]["EvaluationPeriods"] == 2

    # the same state again is no change: nothing more is published
    alarms.set_alarm_state(
        SetAlarmStateInput(
            alarm_name="errors \u2014 orders", state_value=AlarmState.ALARM, state_reason="r"
        )
    )
    assert len(outbox(store, MessageType.NOTIFICATION)) == 1
    alarms.disable_alarm_actions(["errors \u2014 orders"])
    alarms.set_alarm_state(
        SetAlarmStateInput(
            alarm_name="errors \u2014 orders", state_value=AlarmState.OK, state_reason="r"
        )
    )
    assert len(outbox(store, MessageType.NOTIFICATION)) == 1


@pytest.mark.parametrize("host", ["169.254.169.254", "[fe80::1]", "[::ffff:169.254.169.254]"])
def test_no_notification_goes_to_a_link_local_address(host: str) -> None:
    """Cloud metadata services answer on link-local addresses: a subscription never makes the
    server POST there (refused before any connection)."""
    delivery = Delivery(
        subscription_arn="arn:aws:sns:us-east-1:123456789012:t:abc",
        message_id="m-1",
        message_type=MessageType.NOTIFICATION,
        url=f"http://{host}/latest/api/token",
        body="{}",
        id=1,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt=0.0,
        creation_time=0.0,
    )
    with pytest.raises(DeliveryFailed, match="link-local"):
        post(delivery, timeout=1.0)
