"""SNS operations (CreateTopic, Subscribe, ConfirmSubscription, Publish...) and the publishing
API the rest of Shipway calls (the async dispatcher's success and error notifications, alarm
actions).

Everything a call changes is in the metadata store when it returns, the messages it sends
included (the outbox, :mod:`shipway.store.notifications`); ``on_outbox`` then wakes the delivery
loop (:mod:`shipway.service.notification_delivery`), which POSTs them.

:meth:`NotificationService.publish` is synchronous (callers run it in a worker thread) and
idempotent by ``message_id``: publishing the same id to the same topic again sends nothing new
and returns the same id, so a caller that repeats its work after a crash notifies once.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import uuid
from collections.abc import Callable
from datetime import timedelta

from shipway.domain.clock import Clock
from shipway.domain.errors import ValidationError
from shipway.domain.model import Tag
from shipway.domain.names import Account
from shipway.domain.notification import (
    MAX_MESSAGE_ID,
    AttributesOutput,
    ConfirmSubscriptionInput,
    CreateTopicInput,
    CreateTopicOutput,
    ListSubscriptionsOutput,
    ListTopicsOutput,
    MessageAttributeValue,
    MessageType,
    PublishInput,
    PublishOutput,
    SetTopicAttributesInput,
    SubscribeInput,
    Subscription,
    SubscriptionArnOutput,
    SubscriptionDescription,
    SubscriptionNotFound,
    TagsOutput,
    Topic,
    TopicDescription,
    TopicNotFound,
    TopicRef,
    check_endpoint,
    check_message,
    check_subject,
    check_topic_attributes,
    check_topic_name,
    confirmation_message,
    notification_message,
)
from shipway.service.notification_delivery import RetryPolicy
from shipway.store.metadata import MetadataStore
from shipway.store.notifications import DeliveryStatus, Outgoing

__all__ = ["PAGE_SIZE", "TOKEN_SECONDS", "NotificationService"]

log = logging.getLogger(__name__)

PAGE_SIZE = 100
"""Topics or subscriptions one List call answers (SNS: 100)."""
TOKEN_SECONDS = 2 * 86_400
"""How long a confirmation token is valid (SNS: two days)."""
PENDING = "pending confirmation"
"""Subscribe's answer for a subscription not yet confirmed, as SNS words it."""
_SUBSCRIPTION_ATTRIBUTES = frozenset({"DeliveryPolicy", "RawMessageDelivery"})
_UNSUPPORTED_SUBSCRIPTION_ATTRIBUTES = {
    "FilterPolicy": "Filter policies are not supported: every confirmed subscription gets every "
    "message.",
    "FilterPolicyScope": "Filter policies are not supported.",
    "RedrivePolicy": "Dead-letter queues (RedrivePolicy) are not supported.",
    "SubscriptionRoleArn": "SubscriptionRoleArn applies to Firehose subscriptions, which are "
    "not supported.",
    "ReplayPolicy": "Message replay applies to FIFO topics, which are not supported.",
}


def _nothing() -> None:
    pass


class NotificationService:
    def __init__(
        self,
        store: MetadataStore,
        account: Account,
        clock: Clock,
        *,
        base_url: str,
        policy: RetryPolicy,
        on_outbox: Callable[[], None] = _nothing,
    ) -> None:
        """``base_url`` starts the SubscribeURL and UnsubscribeURL of the messages sent;
        ``policy`` is the delivery's (GetTopicAttributes shows it); ``on_outbox`` is told after
        every write of messages to send."""
        self._store = store.notifications
        self._account = account
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self._policy = policy
        self._on_outbox = on_outbox
        self._prefix = f"arn:aws:sns:{account.region}:{account.account_id}:"

    # --- names ---------------------------------------------------------------------------------

    def topic_arn(self, name: str) -> str:
        """``arn:aws:sns:{region}:{account}:{name}``."""
        return self._prefix + name

    def _topic_name(self, arn: str, parameter: str = "TopicArn") -> str:
        """The name of the topic an ARN names; InvalidParameter for what is no topic ARN,
        TopicNotFound for another region's or account's."""
        parts = arn.split(":")
        if len(parts) != 6 or parts[:3] != ["arn", "aws", "sns"] or not parts[5]:
            raise ValidationError(f"Invalid parameter: {parameter} Reason: not a topic ARN: {arn}")
        if not arn.startswith(self._prefix):
            raise TopicNotFound(arn)
        return parts[5]

    def _topic(self, arn: str, parameter: str = "TopicArn") -> Topic:
        topic = self._store.get_topic(self._topic_name(arn, parameter))
        if topic is None:
            raise TopicNotFound(arn)
        return topic

    def topic_exists(self, arn: str) -> bool:
        """Whether ``arn`` names a topic of this server (endpoint configs check their
        notification topics with it)."""
        try:
            self._topic(arn)
        except (TopicNotFound, ValidationError):
            return False
        return True

    # --- topics --------------------------------------------------------------------------------

    def create_topic(self, request: CreateTopicInput) -> CreateTopicOutput:
        """Create the topic, or answer the ARN of the one of that name (idempotent); a topic
        of that name with other attributes or tags is InvalidParameter, as on SNS."""
        check_topic_name(request.name)
        attributes = dict(request.attributes or {})
        if request.data_protection_policy is not None:
            attributes["DataProtectionPolicy"] = request.data_protection_policy
        check_topic_attributes(attributes)
        attributes.pop("FifoTopic", None)  # "false": a standard topic, as every topic here
        tags = list(request.tags or [])
        _check_tags(tags)
        topic = Topic(
            topic_arn=self.topic_arn(request.name),
            name=request.name,
            attributes=attributes,
            tags=tags,
            creation_time=self._clock.now(),
        )
        stored = self._store.add_topic(topic)
        if stored is not topic:
            if any(stored.attributes.get(k) != v for k, v in attributes.items()):
                raise ValidationError(
                    "Invalid parameter: Attributes Reason: Topic already exists with different "
                    "attributes"
                )
            if request.tags is not None and _tag_map(stored.tags) != _tag_map(tags):
                raise ValidationError(
                    "Invalid parameter: Tags Reason: Topic already exists with different tags"
                )
        return CreateTopicOutput(topic_arn=stored.topic_arn)

    def delete_topic(self, arn: str) -> None:
        """Delete the topic and its subscriptions; a topic that does not exist is no error
        (DeleteTopic is idempotent)."""
        self._store.remove_topic(self._topic_name(arn))

    def list_topics(self, next_token: str | None = None) -> ListTopicsOutput:
        after = _decode(next_token, "topics") if next_token else None
        if after is not None and not isinstance(after, str):
            raise _invalid_token(next_token or "")
        topics, more = self._store.page_topics(after, PAGE_SIZE)
        token = _encode("topics", topics[-1].name) if more and topics else None
        return ListTopicsOutput(
            topics=[TopicRef(topic_arn=t.topic_arn) for t in topics], next_token=token
        )

    def topics(self) -> list[Topic]:
        """Every topic, by name."""
        found: list[Topic] = []
        after: str | None = None
        while True:
            page, more = self._store.page_topics(after, PAGE_SIZE)
            found += page
            if not more or not page:
                return found
            after = page[-1].name

    def describe_topic(self, name: str) -> Topic:
        topic = self._store.get_topic(name)
        if topic is None:
            raise TopicNotFound(self.topic_arn(name))
        return topic

    def get_topic_attributes(self, arn: str) -> AttributesOutput:
        return AttributesOutput(attributes=self.topic_attributes(self._topic(arn)))

    def topic_attributes(self, topic: Topic) -> dict[str, str]:
        """GetTopicAttributes' map: what was set, and what SNS reports of every topic."""
        confirmed, pending = self._store.subscription_counts(topic.name)
        attributes = {
            "TopicArn": topic.topic_arn,
            "Owner": self._account.account_id,
            "DisplayName": "",
            "Policy": json.dumps(self._default_policy(topic.topic_arn), separators=(",", ":")),
            "SubscriptionsConfirmed": str(confirmed),
            "SubscriptionsPending": str(pending),
            "SubscriptionsDeleted": "0",
            "EffectiveDeliveryPolicy": json.dumps(self._policy.document(), separators=(",", ":")),
            "FifoTopic": "false",
        }
        attributes.update(topic.attributes)
        return attributes

    def set_topic_attributes(self, request: SetTopicAttributesInput) -> None:
        name = self._topic_name(request.topic_arn)
        value = request.attribute_value or ""
        check_topic_attributes({request.attribute_name: value})

        def change(topic: Topic) -> Topic:
            attributes = dict(topic.attributes)
            if value:
                attributes[request.attribute_name] = value
            else:
                attributes.pop(request.attribute_name, None)
            return topic.model_copy(update={"attributes": attributes})

        if self._store.update_topic(name, change) is None:
            raise TopicNotFound(request.topic_arn)

    def list_tags(self, resource_arn: str) -> TagsOutput:
        return TagsOutput(tags=self._topic(resource_arn, "ResourceArn").tags)

    def _default_policy(self, arn: str) -> dict[str, object]:
        return {
            "Version": "2008-10-17",
            "Id": "__default_policy_ID",
            "Statement": [
                {
                    "Sid": "__default_statement_ID",
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": [
                        "SNS:GetTopicAttributes",
                        "SNS:SetTopicAttributes",
                        "SNS:AddPermission",
                        "SNS:RemovePermission",
                        "SNS:DeleteTopic",
                        "SNS:Subscribe",
                        "SNS:ListSubscriptionsByTopic",
                        "SNS:Publish",
                    ],
                    "Resource": arn,
                    "Condition": {"StringEquals": {"AWS:SourceOwner": self._account.account_id}},
                }
            ],
        }

    # --- subscriptions -------------------------------------------------------------------------

    def subscribe(self, request: SubscribeInput) -> SubscriptionArnOutput:
        """Subscribe an http or https endpoint: it is sent a SubscriptionConfirmation, and is
        pending until it confirms. Subscribing it again answers the confirmed subscription, or
        sends a pending one a new confirmation."""
        topic = self._topic(request.topic_arn)
        endpoint = check_endpoint(request.protocol, request.endpoint)
        attributes = dict(request.attributes or {})
        _check_subscription_attributes(attributes)
        now = self._clock.now()
        message_id = str(uuid.uuid4())

        def decide(current: Subscription | None) -> tuple[Subscription, Outgoing | None]:
            if current is not None and not current.pending_confirmation:
                return current, None
            token = secrets.token_hex(64)
            if current is None:
                subscription = Subscription(
                    subscription_arn=f"{topic.topic_arn}:{uuid.uuid4()}",
                    topic_arn=topic.topic_arn,
                    protocol=request.protocol,
                    endpoint=endpoint,
                    owner=self._account.account_id,
                    confirmation_token=token,
                    token_time=now,
                    attributes=attributes,
                    creation_time=now,
                )
            else:
                subscription = current.model_copy(
                    update={
                        "confirmation_token": token,
                        "token_time": now,
                        "attributes": {**current.attributes, **attributes},
                    }
                )
            body = confirmation_message(subscription, message_id, self._base_url, now)
            confirmation = Outgoing(
                subscription_arn=subscription.subscription_arn,
                message_id=message_id,
                message_type=MessageType.SUBSCRIPTION_CONFIRMATION,
                url=subscription.endpoint,
                body=json.dumps(body, indent=2),
            )
            return subscription, confirmation

        subscription = self._store.subscribe(
            topic, request.protocol, endpoint, decide, now.timestamp()
        )
        if subscription.pending_confirmation:
            self._on_outbox()
            if not request.return_subscription_arn:
                return SubscriptionArnOutput(subscription_arn=PENDING)
        return SubscriptionArnOutput(subscription_arn=subscription.subscription_arn)

    def confirm_subscription(self, request: ConfirmSubscriptionInput) -> SubscriptionArnOutput:
        """Confirm the subscription a SubscriptionConfirmation's token was sent to (what its
        SubscribeURL does): from now on it is sent every message published."""
        topic = self._topic(request.topic_arn)
        subscription = self._store.by_token(topic.name, request.token)
        if subscription is None:
            raise ValidationError("Invalid parameter: Token")
        if subscription.pending_confirmation:
            age = self._clock.now() - subscription.token_time
            if age > timedelta(seconds=TOKEN_SECONDS):
                raise ValidationError(
                    "Invalid parameter: Token Reason: the token has expired; subscribe again"
                )
            confirmed = self._store.confirm(subscription.subscription_arn)
            if confirmed is None:
                raise ValidationError("Invalid parameter: Token")
            log.info("subscription %s confirmed", subscription.subscription_arn)
        return SubscriptionArnOutput(subscription_arn=subscription.subscription_arn)

    def unsubscribe(self, arn: str) -> None:
        """Delete the subscription: nothing more is sent to it, not even what was still to be."""
        self._subscription_topic(arn)
        if not self._store.remove_subscription(arn):
            raise SubscriptionNotFound(arn)

    def get_subscription_attributes(self, arn: str) -> AttributesOutput:
        self._subscription_topic(arn)
        subscription = self._store.get_subscription(arn)
        if subscription is None:
            raise SubscriptionNotFound(arn)
        attributes = {
            "SubscriptionArn": subscription.subscription_arn,
            "TopicArn": subscription.topic_arn,
            "Owner": subscription.owner,
            "Protocol": subscription.protocol,
            "Endpoint": subscription.endpoint,
            "PendingConfirmation": str(subscription.pending_confirmation).lower(),
            "ConfirmationWasAuthenticated": "false",
            "RawMessageDelivery": "false",
            "EffectiveDeliveryPolicy": json.dumps(
                self._policy.document()["http"], separators=(",", ":")
            ),
        }
        attributes.update(subscription.attributes)
        return AttributesOutput(attributes=attributes)

    def list_subscriptions(
        self, topic_arn: str | None = None, next_token: str | None = None
    ) -> ListSubscriptionsOutput:
        """Every subscription (ListSubscriptions), or one topic's (ListSubscriptionsByTopic),
        in the order they were made; pending ones show ``PendingConfirmation``."""
        name = None if topic_arn is None else self._topic(topic_arn).name
        kind = "subscriptions" if name is None else f"subscriptions:{name}"
        after = _decode(next_token, kind) if next_token else None
        if after is not None and not isinstance(after, int):
            raise _invalid_token(next_token or "")
        items, more = self._store.page_subscriptions(name, after, PAGE_SIZE)
        return ListSubscriptionsOutput(
            subscriptions=[s.summary() for s in items],
            next_token=None if more is None else _encode(kind, more),
        )

    def subscriptions_of(self, name: str) -> list[Subscription]:
        """Every subscription of the topic ``name``, pending ones included."""
        topic = self.describe_topic(name)
        found: list[Subscription] = []
        after: int | None = None
        while True:
            page, after = self._store.page_subscriptions(topic.name, after, PAGE_SIZE)
            found += page
            if after is None:
                return found

    def describe(self, topic: Topic) -> TopicDescription:
        """A topic with its attributes, as the REST API shows it."""
        return TopicDescription(
            topic_arn=topic.topic_arn,
            name=topic.name,
            creation_time=topic.creation_time,
            attributes=self.topic_attributes(topic),
            tags=topic.tags,
        )

    def describe_subscriptions(self, name: str) -> list[SubscriptionDescription]:
        """The topic's subscriptions, each with how its deliveries are going."""
        described = []
        for subscription in self.subscriptions_of(name):
            arn = subscription.subscription_arn
            counts = self._store.delivery_counts(arn)
            described.append(
                SubscriptionDescription(
                    subscription_arn=arn,
                    topic_arn=subscription.topic_arn,
                    protocol=subscription.protocol,
                    endpoint=subscription.endpoint,
                    pending_confirmation=subscription.pending_confirmation,
                    creation_time=subscription.creation_time,
                    deliveries_pending=counts[DeliveryStatus.PENDING],
                    deliveries_delivered=counts[DeliveryStatus.DELIVERED],
                    deliveries_failed=counts[DeliveryStatus.FAILED],
                    last_error=self._store.last_error(arn),
                )
            )
        return described

    def _subscription_topic(self, arn: str) -> str:
        topic_arn, colon, label = arn.rpartition(":")
        if not colon or not label:
            raise ValidationError(f"Invalid parameter: SubscriptionArn Reason: {arn}")
        try:
            return self._topic_name(topic_arn, "SubscriptionArn")
        except TopicNotFound as exc:
            raise SubscriptionNotFound(arn) from exc

    # --- publishing ----------------------------------------------------------------------------

    def publish(
        self,
        topic_arn: str,
        message: str,
        *,
        subject: str | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish ``message`` to every confirmed subscription of the topic; its MessageId.

        Durable on return (the deliveries are in the store). A ``message_id`` given makes it
        idempotent: the same id published to the same topic again sends nothing new and
        returns that id. :class:`~shipway.domain.notification.TopicNotFound` (a
        :class:`~shipway.domain.errors.NotFound`) when there is no such topic.
        """
        if message_id is not None and not 0 < len(message_id) <= MAX_MESSAGE_ID:
            raise ValidationError(
                f"Invalid parameter: MessageId Reason: 1 to {MAX_MESSAGE_ID} characters."
            )
        return self._publish(topic_arn, message, subject, {}, None, message_id)

    def publish_request(self, request: PublishInput) -> PublishOutput:
        """Publish, as the wire asks it (TopicArn or TargetArn, MessageStructure, attributes)."""
        if request.phone_number is not None:
            raise ValidationError(
                "Invalid parameter: PhoneNumber Reason: SMS is not supported: publish to a topic."
            )
        if request.message_deduplication_id is not None:
            raise ValidationError(
                "Invalid parameter: MessageDeduplicationId Reason: The request includes "
                "MessageDeduplicationId parameter that is not valid for this topic type "
                "(FIFO topics are not supported)."
            )
        if (request.topic_arn is None) == (request.target_arn is None):
            raise ValidationError(
                "Invalid parameter: TopicArn or TargetArn Reason: exactly one of TopicArn and "
                "TargetArn (a topic's ARN) must be given."
            )
        arn = request.topic_arn or request.target_arn or ""
        message_id = self._publish(
            arn,
            request.message,
            request.subject,
            dict(request.message_attributes or {}),
            request.message_structure,
            None,
        )
        return PublishOutput(message_id=message_id)

    def _publish(
        self,
        topic_arn: str,
        message: str,
        subject: str | None,
        attributes: dict[str, MessageAttributeValue],
        structure: str | None,
        message_id: str | None,
    ) -> str:
        topic = self._topic(topic_arn)
        check_subject(subject)
        check_message(message, attributes)
        if structure is not None and structure != "json":
            raise ValidationError(
                "Invalid parameter: MessageStructure Reason: the only structure is json."
            )
        bodies = None if structure is None else _structured(message)
        now = self._clock.now()
        chosen_id = message_id or str(uuid.uuid4())

        def render(subscription: Subscription) -> Outgoing:
            text = (
                message if bodies is None else bodies.get(subscription.protocol, bodies["default"])
            )
            if subscription.attributes.get("RawMessageDelivery", "").lower() == "true":
                body = text
            else:
                document = notification_message(
                    subscription, chosen_id, text, subject, attributes, self._base_url, now
                )
                body = json.dumps(document, indent=2)
            return Outgoing(
                subscription_arn=subscription.subscription_arn,
                message_id=chosen_id,
                message_type=MessageType.NOTIFICATION,
                url=subscription.endpoint,
                body=body,
            )

        sent = self._store.publish(topic, chosen_id, now.timestamp(), render)
        if sent:
            self._on_outbox()
        return chosen_id


def _structured(message: str) -> dict[str, str]:
    """MessageStructure json: a message per protocol, and ``default`` for the others."""
    try:
        document = json.loads(message)
    except ValueError as exc:
        raise ValidationError(
            "Invalid parameter: Message Structure - JSON message body failed to parse"
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("default"), str):
        raise ValidationError(
            "Invalid parameter: Message Structure - No default entry in JSON message body"
        )
    return {k: v for k, v in document.items() if isinstance(v, str)}


def _check_subscription_attributes(attributes: dict[str, str]) -> None:
    for name, value in attributes.items():
        unsupported = _UNSUPPORTED_SUBSCRIPTION_ATTRIBUTES.get(name)
        if unsupported is not None:
            raise ValidationError(f"Invalid parameter: Attributes Reason: {unsupported}")
        if name not in _SUBSCRIPTION_ATTRIBUTES:
            raise ValidationError(f"Invalid parameter: Attributes Reason: Unknown attribute {name}")
        if name == "RawMessageDelivery" and value.lower() not in ("true", "false"):
            raise ValidationError(
                "Invalid parameter: Attributes Reason: RawMessageDelivery: Invalid value "
                f"[{value}]. Must be true or false."
            )
        if name == "DeliveryPolicy":
            try:
                json.loads(value)
            except ValueError as exc:
                raise ValidationError(
                    f"Invalid parameter: DeliveryPolicy Reason: not valid JSON: {exc}"
                ) from exc


def _check_tags(tags: list[Tag]) -> None:
    keys = [t.key for t in tags]
    if len(set(keys)) != len(keys):
        raise ValidationError("Invalid parameter: Tags Reason: a tag key appears twice")


def _tag_map(tags: list[Tag]) -> dict[str, str]:
    return {t.key: t.value for t in tags}


def _encode(kind: str, position: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps([kind, position]).encode()).decode()


def _invalid_token(token: str) -> ValidationError:
    return ValidationError(f"Invalid parameter: NextToken Reason: {token[:64]!r} is not valid")


def _decode(token: str, kind: str) -> str | int:
    """The keyset a NextToken carries; InvalidParameter unless this API made it for ``kind``."""
    try:
        made_for, position = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise _invalid_token(token) from exc
    if made_for != kind or isinstance(position, bool) or not isinstance(position, str | int):
        raise _invalid_token(token)
    return position
