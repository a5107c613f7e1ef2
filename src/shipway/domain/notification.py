"""Notifications in SNS's vocabulary: topics, subscriptions and the messages POSTed to them.

A topic (``arn:aws:sns:<region>:<account>:<name>``) fans each published message out to its
confirmed subscriptions. Shipway delivers to ``http`` and ``https`` endpoints only (SNS's other
protocols name AWS services or phone and mail networks this server cannot reach, and are
refused with ``InvalidParameter``). A new subscription is pending until its endpoint confirms it:
it is sent a ``SubscriptionConfirmation`` message whose ``SubscribeURL`` (or ``Token``, through
``ConfirmSubscription``) confirms it. Standard topics only: FIFO topics are refused.

The documents here are what the wire shows and the store keeps; :func:`confirmation_message`
and :func:`notification_message` build the JSON bodies AWS POSTs, field for field, without
``Signature`` (the server holds no AWS signing certificate: see
:mod:`shipway.service.notification_delivery`). Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from pydantic import Field, StringConstraints

from shipway.domain.errors import InvalidParameterValue, NotFound, ValidationError
from shipway.domain.model import Tag
from shipway.domain.shape import Shape

__all__ = [
    "DELIVERED_PROTOCOLS",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_ID",
    "AttributesOutput",
    "ConfirmSubscriptionInput",
    "CreateTopicInput",
    "CreateTopicOutput",
    "GetSubscriptionAttributesInput",
    "ListSubscriptionsByTopicInput",
    "ListSubscriptionsInput",
    "ListSubscriptionsOutput",
    "ListTagsForResourceInput",
    "ListTopicsInput",
    "ListTopicsOutput",
    "MessageAttributeValue",
    "MessageType",
    "PublishInput",
    "PublishOutput",
    "SetTopicAttributesInput",
    "SubscribeInput",
    "Subscription",
    "SubscriptionArnOutput",
    "SubscriptionDescription",
    "SubscriptionNotFound",
    "SubscriptionSummary",
    "TagsOutput",
    "Topic",
    "TopicArnInput",
    "TopicDescription",
    "TopicNotFound",
    "TopicRef",
    "UnsubscribeInput",
    "check_endpoint",
    "check_message",
    "check_subject",
    "check_topic_attributes",
    "check_topic_name",
    "confirmation_message",
    "notification_message",
    "subscribe_url",
    "timestamp",
    "unsubscribe_url",
]

MAX_MESSAGE_BYTES = 256 * 1024
"""Largest message (body and attributes), as SNS's default ``MaximumMessageSize``."""
MAX_SUBJECT = 100
MAX_ENDPOINT = 2048
MAX_MESSAGE_ID = 100
DELIVERED_PROTOCOLS = ("http", "https")
_OTHER_PROTOCOLS = (
    "email",
    "email-json",
    "sms",
    "sqs",
    "application",
    "lambda",
    "firehose",
)
_TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]{1,256}")
_SUBJECT = re.compile(r"[\x20-\x7e]+")  # ASCII, printable, no line break, not blank alone
_SETTABLE = frozenset(
    {
        "DisplayName",
        "Policy",
        "DeliveryPolicy",
        "KmsMasterKeyId",
        "TracingConfig",
        "SignatureVersion",
        "DataProtectionPolicy",
        *(
            f"{kind}{what}"
            for kind in ("HTTP", "Lambda", "SQS", "Firehose", "Application")
            for what in ("SuccessFeedbackRoleArn", "SuccessFeedbackSampleRate")
        ),
        *(
            f"{kind}FailureFeedbackRoleArn"
            for kind in ("HTTP", "Lambda", "SQS", "Firehose", "Application")
        ),
    }
)
_FIFO_ONLY = frozenset(
    {"ContentBasedDeduplication", "FifoThroughputScope", "ArchivePolicy", "BeginningArchiveTime"}
)
_JSON_ATTRIBUTES = frozenset({"Policy", "DeliveryPolicy", "DataProtectionPolicy"})


class MessageType(StrEnum):
    """``Type`` of a message POSTed to an endpoint (header ``x-amz-sns-message-type``)."""

    SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
    NOTIFICATION = "Notification"


class TopicNotFound(NotFound):
    def __init__(self, arn: str) -> None:
        super().__init__("topic", arn, arn)
        self.message = f"Topic does not exist: {arn}"
        self.args = (self.message,)


class SubscriptionNotFound(NotFound):
    def __init__(self, arn: str) -> None:
        super().__init__("subscription", arn, arn)
        self.message = f"Subscription does not exist: {arn}"
        self.args = (self.message,)


# --- resources --------------------------------------------------------------------------------


class Topic(Shape):
    topic_arn: str
    name: str
    attributes: dict[str, str] = Field(default_factory=dict)
    """The attributes set on it (DisplayName, Policy, DeliveryPolicy...), as given."""
    tags: list[Tag] = Field(default_factory=list)
    creation_time: datetime


class Subscription(Shape):
    subscription_arn: str
    topic_arn: str
    protocol: str
    endpoint: str
    owner: str
    pending_confirmation: bool = True
    confirmation_token: str
    """The secret a ``SubscriptionConfirmation`` carries; never shown on a wire."""
    token_time: datetime
    """When the token was sent: it is valid for ``TOKEN_SECONDS`` (two days, as on AWS)."""
    attributes: dict[str, str] = Field(default_factory=dict)
    creation_time: datetime

    @property
    def listed_arn(self) -> str:
        """The ARN as lists show it: ``PendingConfirmation`` until confirmed, as AWS does."""
        return "PendingConfirmation" if self.pending_confirmation else self.subscription_arn

    def summary(self) -> SubscriptionSummary:
        return SubscriptionSummary(
            subscription_arn=self.listed_arn,
            owner=self.owner,
            protocol=self.protocol,
            endpoint=self.endpoint,
            topic_arn=self.topic_arn,
        )


# --- the wire's shapes ------------------------------------------------------------------------

TopicArn = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
NextToken = Annotated[str, StringConstraints(max_length=8192)]


class CreateTopicInput(Shape):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    attributes: dict[str, str] | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    data_protection_policy: str | None = None


class CreateTopicOutput(Shape):
    topic_arn: str


class TopicArnInput(Shape):
    """DeleteTopic's and GetTopicAttributes' input."""

    topic_arn: TopicArn


class TopicRef(Shape):
    topic_arn: str


class ListTopicsInput(Shape):
    next_token: NextToken | None = None


class ListTopicsOutput(Shape):
    topics: list[TopicRef]
    next_token: str | None = None


class AttributesOutput(Shape):
    """GetTopicAttributes' and GetSubscriptionAttributes' output."""

    attributes: dict[str, str]


class SetTopicAttributesInput(Shape):
    topic_arn: TopicArn
    attribute_name: str
    attribute_value: str | None = None


class SubscribeInput(Shape):
    topic_arn: TopicArn
    protocol: str
    endpoint: str | None = None
    attributes: dict[str, str] | None = None
    return_subscription_arn: bool | None = None


class SubscriptionArnOutput(Shape):
    """Subscribe's and ConfirmSubscription's output."""

    subscription_arn: str


class ConfirmSubscriptionInput(Shape):
    topic_arn: TopicArn
    token: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    authenticate_on_unsubscribe: str | None = None


class UnsubscribeInput(Shape):
    subscription_arn: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class GetSubscriptionAttributesInput(Shape):
    subscription_arn: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class SubscriptionSummary(Shape):
    subscription_arn: str
    owner: str
    protocol: str
    endpoint: str
    topic_arn: str


class ListSubscriptionsInput(Shape):
    next_token: NextToken | None = None


class ListSubscriptionsByTopicInput(Shape):
    topic_arn: TopicArn
    next_token: NextToken | None = None


class ListSubscriptionsOutput(Shape):
    subscriptions: list[SubscriptionSummary]
    next_token: str | None = None


class MessageAttributeValue(Shape):
    data_type: str
    string_value: str | None = None
    binary_value: str | None = None
    """Base64, as the query wire carries a blob."""


class PublishInput(Shape):
    topic_arn: TopicArn | None = None
    target_arn: TopicArn | None = None
    phone_number: str | None = None
    message: str
    subject: str | None = None
    message_structure: str | None = None
    message_attributes: dict[str, MessageAttributeValue] | None = None
    message_deduplication_id: str | None = None
    message_group_id: str | None = None


class PublishOutput(Shape):
    message_id: str


class ListTagsForResourceInput(Shape):
    resource_arn: TopicArn


class TagsOutput(Shape):
    tags: list[Tag]


# --- the REST API's views -----------------------------------------------------------------------


class TopicDescription(Shape):
    """A topic as the REST API and ``shipway topics`` show it."""

    topic_arn: str
    name: str
    creation_time: datetime
    attributes: dict[str, str]
    """GetTopicAttributes' map (DisplayName, SubscriptionsConfirmed, SubscriptionsPending...)."""
    tags: list[Tag]


class SubscriptionDescription(Shape):
    """A subscription and how the deliveries to it are going (those kept: the last week's)."""

    subscription_arn: str
    topic_arn: str
    protocol: str
    endpoint: str
    pending_confirmation: bool
    creation_time: datetime
    deliveries_pending: int
    deliveries_delivered: int
    deliveries_failed: int
    """Given up after the last retry."""
    last_error: str | None = None
    """Why the newest failed attempt failed."""


# --- rules ------------------------------------------------------------------------------------


def _invalid(name: str, reason: str) -> ValidationError:
    return ValidationError(f"Invalid parameter: {name} Reason: {reason}")


def check_topic_name(name: str) -> None:
    if name.endswith(".fifo"):
        raise _invalid("Name", "FIFO topics are not supported: create a standard topic.")
    if not _TOPIC_NAME.fullmatch(name):
        raise _invalid(
            "Name",
            "A topic name is 1 to 256 ASCII letters, digits, hyphens and underscores.",
        )


def check_topic_attributes(attributes: dict[str, str]) -> None:
    """The attributes CreateTopic and SetTopicAttributes may set; FIFO ones are refused."""
    for name, value in attributes.items():
        if name == "FifoTopic":
            if value.lower() == "true":
                raise _invalid("Attributes", "FIFO topics are not supported.")
            continue
        if name in _FIFO_ONLY:
            raise _invalid("Attributes", f"{name} applies to FIFO topics, which are not supported.")
        if name not in _SETTABLE:
            raise _invalid("AttributeName", f"Unknown attribute {name}.")
        if name == "DisplayName" and len(value) > MAX_SUBJECT:
            raise _invalid("DisplayName", "at most 100 characters.")
        if name in _JSON_ATTRIBUTES and value:
            try:
                document = json.loads(value)
            except ValueError as exc:
                raise _invalid(name, f"not valid JSON: {exc}.") from exc
            if not isinstance(document, dict):
                raise _invalid(name, "must be a JSON object.")


def check_endpoint(protocol: str, endpoint: str | None) -> str:
    """The endpoint of an ``http`` or ``https`` subscription; every other protocol is refused."""
    if protocol not in DELIVERED_PROTOCOLS:
        if protocol in _OTHER_PROTOCOLS:
            raise _invalid(
                "Protocol",
                f"Shipway delivers notifications to http and https endpoints only; the {protocol} "
                "protocol is not supported.",
            )
        raise _invalid("Protocol", f"Amazon SNS does not support this protocol string: {protocol}")
    if not endpoint:
        raise _invalid("Endpoint", "An http or https subscription needs an Endpoint URL.")
    if len(endpoint) > MAX_ENDPOINT:
        raise _invalid("Endpoint", f"at most {MAX_ENDPOINT} characters.")
    try:
        url = urlsplit(endpoint)
        url.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise _invalid("Endpoint", f"not a URL: {exc}.") from exc
    if url.scheme.lower() != protocol or not url.hostname:
        raise _invalid("Endpoint", "Endpoint must match the specified protocol")
    return endpoint


def check_subject(subject: str | None) -> None:
    if subject is None:
        return
    if not subject or len(subject) > MAX_SUBJECT or not _SUBJECT.fullmatch(subject):
        raise _invalid(
            "Subject",
            "A subject is 1 to 100 printable ASCII characters, without line breaks.",
        )


def check_message(message: str, attributes: dict[str, MessageAttributeValue]) -> None:
    if not message:
        raise _invalid("Message", "Empty message")
    size = len(message.encode()) + sum(
        len(name.encode())
        + len(value.data_type.encode())
        + len((value.string_value or value.binary_value or "").encode())
        for name, value in attributes.items()
    )
    if size > MAX_MESSAGE_BYTES:
        raise _invalid(
            "Message",
            f"Message too long: {size} bytes with its attributes (at most {MAX_MESSAGE_BYTES}).",
        )
    for name, value in attributes.items():
        kind, dot, label = value.data_type.partition(".")
        if kind not in ("String", "Number", "Binary") or (dot and not label):
            raise InvalidParameterValue(
                f"The message attribute '{name}' has an invalid message attribute type, the set "
                "of supported type prefixes is Binary, Number, and String."
            )
        if kind == "Binary":
            if value.binary_value is None:
                raise InvalidParameterValue(
                    f"The message attribute '{name}' with type 'Binary' must use field 'Binary'."
                )
            try:
                base64.b64decode(value.binary_value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidParameterValue(
                    f"The message attribute '{name}' has a BinaryValue that is not base64."
                ) from exc
        elif value.string_value is None:
            raise InvalidParameterValue(
                f"The message attribute '{name}' must contain non-empty message attribute value "
                f"for message attribute type '{kind}'."
            )
        if kind == "Number":
            try:
                float(value.string_value or "")
            except ValueError as exc:
                raise InvalidParameterValue(
                    f"Could not cast message attribute '{name}' value to number."
                ) from exc


# --- the messages POSTed ----------------------------------------------------------------------


def timestamp(moment: datetime) -> str:
    """SNS's ``Timestamp``: ``2026-01-01T00:00:00.000Z``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def subscribe_url(base_url: str, topic_arn: str, token: str) -> str:
    return (
        f"{base_url}/?Action=ConfirmSubscription&TopicArn={quote(topic_arn, safe=':')}"
        f"&Token={quote(token, safe='')}"
    )


def unsubscribe_url(base_url: str, subscription_arn: str) -> str:
    return f"{base_url}/?Action=Unsubscribe&SubscriptionArn={quote(subscription_arn, safe=':')}"


def confirmation_message(
    subscription: Subscription, message_id: str, base_url: str, now: datetime
) -> dict[str, Any]:
    """The ``SubscriptionConfirmation`` body: its ``SubscribeURL`` (a plain GET) confirms."""
    return {
        "Type": MessageType.SUBSCRIPTION_CONFIRMATION.value,
        "MessageId": message_id,
        "Token": subscription.confirmation_token,
        "TopicArn": subscription.topic_arn,
        "Message": (
            f"You have chosen to subscribe to the topic {subscription.topic_arn}.\n"
            "To confirm the subscription, visit the SubscribeURL included in this message."
        ),
        "SubscribeURL": subscribe_url(
            base_url, subscription.topic_arn, subscription.confirmation_token
        ),
        "Timestamp": timestamp(now),
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertURL": "",
    }


def notification_message(
    subscription: Subscription,
    message_id: str,
    message: str,
    subject: str | None,
    attributes: dict[str, MessageAttributeValue],
    base_url: str,
    now: datetime,
) -> dict[str, Any]:
    """The ``Notification`` body one subscription is sent."""
    body: dict[str, Any] = {
        "Type": MessageType.NOTIFICATION.value,
        "MessageId": message_id,
        "TopicArn": subscription.topic_arn,
    }
    if subject is not None:
        body["Subject"] = subject
    body.update(
        {
            "Message": message,
            "Timestamp": timestamp(now),
            "SignatureVersion": "1",
            "Signature": "",
            "SigningCertURL": "",
            "UnsubscribeURL": unsubscribe_url(base_url, subscription.subscription_arn),
        }
    )
    if attributes:
        body["MessageAttributes"] = {
            name: {
                "Type": value.data_type,
                "Value": value.binary_value
                if value.data_type.startswith("Binary")
                else value.string_value,
            }
            for name, value in attributes.items()
        }
    return body
