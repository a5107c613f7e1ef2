"""The SNS wire adapter: topics, subscriptions and Publish for ``boto3.client("sns")``, on the
same port as every other API.

SNS speaks awsquery alone (:mod:`shipway.api.awsquery`, driven by botocore's SNS model):
``POST /`` with a form body ``Action=CreateTopic&Version=2010-03-31&...``, XML answers in the
namespace ``http://sns.amazonaws.com/doc/2010-03-31/``. CloudWatch's awsquery requests look the
same, so a request is SNS's when

- its SigV4 credential is scoped to ``sns`` (``Credential=<key>/<date>/<region>/sns/
  aws4_request``, as boto3 signs it; authentication checks that scope), or
- it is unsigned (authentication off) and its form says ``Version=2010-03-31``;

every other form ``POST /`` stays CloudWatch's (:meth:`SNSAPI.route`). Besides, a subscriber
confirms with a plain, unsigned ``GET`` of the SubscribeURL it was sent,
``/?Action=ConfirmSubscription&TopicArn=...&Token=...``: the token is its credential, and
:class:`~shipway.api.auth.AuthMiddleware` lets exactly that request shape through
(:meth:`SNSAPI.confirms`). The UnsubscribeURL (``GET /?Action=Unsubscribe&SubscriptionArn=``)
is served too, but takes the server's authentication like any other call.

Errors are SNS's query error XML (``<ErrorResponse><Error><Type>Sender</Type><Code>NotFound
</Code>...``), so botocore raises the modelled class (``client.exceptions.NotFoundException``,
``InvalidParameterException``...) with the status the model gives it. No rule lives here.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from shipway.api import awsquery
from shipway.api.body_limit import Disconnected, read_body, replay
from shipway.api.operations import Operations
from shipway.api.wire import RequestWire, Wire, wire_of
from shipway.domain.errors import InvalidParameterValue, NotFound, ShipwayError
from shipway.domain.notification import (
    ConfirmSubscriptionInput,
    CreateTopicInput,
    GetSubscriptionAttributesInput,
    ListSubscriptionsByTopicInput,
    ListSubscriptionsInput,
    ListTagsForResourceInput,
    ListTopicsInput,
    PublishInput,
    SetTopicAttributesInput,
    SubscribeInput,
    TopicArnInput,
    UnsubscribeInput,
)
from shipway.domain.shape import Shape, parse

if TYPE_CHECKING:
    from shipway.platform import Platform

__all__ = ["NAMESPACE", "OPERATIONS", "SIGNING_NAME", "SNSAPI", "VERSION", "wire_error"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Document = dict[str, Any]

SERVICE = "sns"
"""botocore's name of the service model."""
SIGNING_NAME = "sns"
"""The SigV4 service SNS's requests are signed for."""
VERSION = "2010-03-31"
NAMESPACE = "http://sns.amazonaws.com/doc/2010-03-31/"
FORM = b"application/x-www-form-urlencoded"
_CONFIRMATION_KEYS = frozenset({"Action", "TopicArn", "Token"})


@dataclass(frozen=True)
class WireError:
    code: str
    """SNS's query error code (what botocore's exceptions are keyed by)."""
    status: int
    message: str

    @property
    def fault(self) -> str:
        return "Receiver" if self.status >= 500 else "Sender"


def wire_error(exc: Exception) -> WireError:
    """The modelled SNS error for a domain error: ``NotFound`` (404), ``ParameterValueInvalid``
    (an invalid message attribute), any other bad input ``InvalidParameter`` (400), anything
    unexpected ``InternalError`` (500)."""
    if isinstance(exc, NotFound):
        return WireError("NotFound", 404, exc.message)
    if isinstance(exc, InvalidParameterValue):
        return WireError("ParameterValueInvalid", 400, exc.message)
    if isinstance(exc, ShipwayError) and exc.code != "InternalFailure":
        return WireError("InvalidParameter", 400, exc.message)
    return WireError("InternalError", 500, "An internal error occurred; see the server log.")


# --- operations -------------------------------------------------------------------------------

Call = Callable[["Platform", Document], Shape | None]
OPERATIONS: Operations[Call] = Operations()


@OPERATIONS.register("CreateTopic")
def _create_topic(p: Platform, body: Document) -> Shape:
    return p.notifications.create_topic(parse(CreateTopicInput, body))


@OPERATIONS.register("DeleteTopic")
def _delete_topic(p: Platform, body: Document) -> None:
    p.notifications.delete_topic(parse(TopicArnInput, body).topic_arn)


@OPERATIONS.register("ListTopics")
def _list_topics(p: Platform, body: Document) -> Shape:
    return p.notifications.list_topics(parse(ListTopicsInput, body).next_token)


@OPERATIONS.register("GetTopicAttributes")
def _get_topic_attributes(p: Platform, body: Document) -> Shape:
    return p.notifications.get_topic_attributes(parse(TopicArnInput, body).topic_arn)


@OPERATIONS.register("SetTopicAttributes")
def _set_topic_attributes(p: Platform, body: Document) -> None:
    p.notifications.set_topic_attributes(parse(SetTopicAttributesInput, body))


@OPERATIONS.register("Subscribe")
def _subscribe(p: Platform, body: Document) -> Shape:
    return p.notifications.subscribe(parse(SubscribeInput, body))


@OPERATIONS.register("ConfirmSubscription")
def _confirm_subscription(p: Platform, body: Document) -> Shape:
    return p.notifications.confirm_subscription(parse(ConfirmSubscriptionInput, body))


@OPERATIONS.register("Unsubscribe")
def _unsubscribe(p: Platform, body: Document) -> None:
    p.notifications.unsubscribe(parse(UnsubscribeInput, body).subscription_arn)


@OPERATIONS.register("GetSubscriptionAttributes")
def _get_subscription_attributes(p: Platform, body: Document) -> Shape:
    request = parse(GetSubscriptionAttributesInput, body)
    return p.notifications.get_subscription_attributes(request.subscription_arn)


@OPERATIONS.register("ListSubscriptions")
def _list_subscriptions(p: Platform, body: Document) -> Shape:
    return p.notifications.list_subscriptions(None, parse(ListSubscriptionsInput, body).next_token)


@OPERATIONS.register("ListSubscriptionsByTopic")
def _list_subscriptions_by_topic(p: Platform, body: Document) -> Shape:
    request = parse(ListSubscriptionsByTopicInput, body)
    return p.notifications.list_subscriptions(request.topic_arn, request.next_token)


@OPERATIONS.register("Publish")
def _publish(p: Platform, body: Document) -> Shape:
    return p.notifications.publish_request(parse(PublishInput, body))


@OPERATIONS.register("ListTagsForResource")
def _list_tags_for_resource(p: Platform, body: Document) -> Shape:
    return p.notifications.list_tags(parse(ListTagsForResourceInput, body).resource_arn)


def _output(result: Shape | None) -> Document:
    if result is None:
        return {}
    document: Document = result.model_dump(mode="python", by_alias=True, exclude_none=True)
    return document


# --- the adapter ------------------------------------------------------------------------------


def _signed(scope: Scope) -> bool:
    return any(name == b"authorization" for name, _ in scope["headers"])


def _is_form_post(scope: Scope) -> bool:
    if scope["method"] != "POST" or scope["path"] != "/":
        return False
    return any(n == b"content-type" and v.startswith(FORM) for n, v in scope["headers"])


def _query(scope: Scope) -> list[tuple[str, str]]:
    raw: bytes = scope.get("query_string", b"")
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True)


class SNSAPI:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    @staticmethod
    def confirms(scope: Scope) -> bool:
        """Whether this is a subscriber's GET of a SubscribeURL: ``GET /?Action=
        ConfirmSubscription&TopicArn=...&Token=...`` and nothing else (no signature needed)."""
        if scope.get("type") != "http" or scope.get("method") != "GET" or scope["path"] != "/":
            return False
        pairs = _query(scope)
        keys = [name for name, _ in pairs]
        return (
            len(keys) == len(_CONFIRMATION_KEYS)
            and set(keys) == _CONFIRMATION_KEYS
            and dict(pairs)["Action"] == "ConfirmSubscription"
        )

    @staticmethod
    def handles(scope: Scope) -> bool:
        """SNS's requests that the headers tell apart: signed for ``sns``, or a GET of a
        SubscribeURL or UnsubscribeURL."""
        if scope["method"] == "GET" and scope["path"] == "/":
            action = dict(_query(scope)).get("Action")
            return action in ("ConfirmSubscription", "Unsubscribe")
        return _is_form_post(scope) and wire_of(scope) == RequestWire(Wire.QUERY, SIGNING_NAME)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer the request if it is SNS's: None then, else the ``receive`` to go on with
        (an unsigned form POST's body is read here to see its ``Version``, then replayed)."""
        if self.handles(scope):
            await self(scope, receive, send)
            return None
        if not _is_form_post(scope) or _signed(scope):
            return receive
        try:
            body = await read_body(receive, self._platform.settings.max_request_bytes)
        except Disconnected:
            return None
        receive = replay(body, receive)
        if _form(body).get("Version") == VERSION:
            await self(scope, receive, send)
            return None
        return receive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = str(uuid.uuid4())
        if scope["method"] == "GET":
            form = dict(_query(scope))
        else:
            try:
                body = await read_body(receive, self._platform.settings.max_request_bytes)
            except Disconnected:
                return
            form = _form(body)
        name = form.get("Action", "")
        call = OPERATIONS.get(name)
        if call is None:
            message = f"The action {name or '(none)'} is not valid for this endpoint."
            await _respond(send, WireError("InvalidAction", 400, message), request_id)
            return
        try:
            document = awsquery.decode(name, form, SERVICE)
            result = await asyncio.to_thread(call, self._platform, document)
            answer = awsquery.encode(name, _output(result), request_id, SERVICE)
        except Exception as exc:
            if not isinstance(exc, ShipwayError):
                log.exception("SNS %s failed", name)
            await _respond(send, wire_error(exc), request_id)
            return
        await _send(send, 200, answer, request_id)


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


async def _respond(send: Send, error: WireError, request_id: str) -> None:
    body = awsquery.encode_error(error.fault, error.code, error.message, request_id, NAMESPACE)
    await _send(send, error.status, body, request_id)


async def _send(send: Send, status: int, body: bytes, request_id: str) -> None:
    headers = [
        (b"content-type", b"text/xml"),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
