"""The SNS wire: which requests it takes (and which stay CloudWatch's), its error mapping, and
the awsquery codec with SNS's model against botocore's own serializer and parser."""

from __future__ import annotations

import asyncio
from typing import Any

import botocore.session
import pytest
from botocore.parsers import QueryParser
from botocore.serialize import QuerySerializer

from shipway.api import awsquery, sns
from shipway.api.cloudwatch import CloudWatchAPI
from shipway.api.sns import SNSAPI, wire_error
from shipway.api.wire import RequestWire, Wire, wire_of
from shipway.domain.errors import InvalidParameterValue, ValidationError
from shipway.domain.notification import (
    CreateTopicInput,
    PublishInput,
    SubscriptionNotFound,
    TopicNotFound,
)
from shipway.domain.shape import parse

MODEL = botocore.session.get_session().get_service_model("sns")
FORM = "application/x-www-form-urlencoded; charset=utf-8"
SIGNED_SNS = (
    "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sns/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=abc"
)
SIGNED_MONITORING = SIGNED_SNS.replace("/sns/", "/monitoring/")


def scope(
    path: str = "/", method: str = "POST", query: bytes = b"", **headers: str
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


def test_signed_requests_go_by_their_credential_scope() -> None:
    signed = scope(content_type=FORM, authorization=SIGNED_SNS)
    assert SNSAPI.handles(signed)
    assert wire_of(signed) == RequestWire(Wire.QUERY, "sns")
    assert wire_of(signed).signing_name == "sns"  # what authentication checks the scope against
    monitoring = scope(content_type=FORM, authorization=SIGNED_MONITORING)
    assert not SNSAPI.handles(monitoring)
    assert CloudWatchAPI.handles(monitoring)
    assert wire_of(monitoring).signing_name == "monitoring"
    unsigned = scope(content_type=FORM)
    assert not SNSAPI.handles(unsigned)  # its body decides (route)
    assert wire_of(unsigned).signing_name == "monitoring"
    other = scope(content_type=FORM, authorization=SIGNED_SNS.replace("/sns/", "/sqs/"))
    assert wire_of(other).signing_name == "monitoring"  # as before: refused as not CloudWatch's
    assert not SNSAPI.handles(scope("/api/topics", content_type=FORM, authorization=SIGNED_SNS))
    assert not SNSAPI.handles(scope(x_amz_target="SageMaker.ListModels", authorization=SIGNED_SNS))


def test_the_subscribe_url_alone_is_a_confirmation() -> None:
    confirm = b"Action=ConfirmSubscription&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3At&Token=ab"
    assert SNSAPI.confirms(scope(method="GET", query=confirm))
    assert SNSAPI.handles(scope(method="GET", query=confirm))
    for query in (
        confirm + b"&Extra=1",
        confirm + b"&Token=again",
        b"Action=ConfirmSubscription&TopicArn=t",
        b"Action=ListTopics&TopicArn=t&Token=ab",
        b"Action=Unsubscribe&SubscriptionArn=s",
    ):
        assert not SNSAPI.confirms(scope(method="GET", query=query)), query
    assert not SNSAPI.confirms(scope(method="POST", query=confirm))
    assert not SNSAPI.confirms(scope("/api", method="GET", query=confirm))
    assert not SNSAPI.confirms({**scope(method="GET", query=confirm), "type": "websocket"})
    assert SNSAPI.handles(scope(method="GET", query=b"Action=Unsubscribe&SubscriptionArn=s"))
    assert not SNSAPI.handles(scope(method="GET", query=b"Action=ListTopics"))


class _Settings:
    max_request_bytes = 1024 * 1024


class _Platform:
    """What routing reads of the platform: its request limit."""

    settings = _Settings()


def route(body: bytes, **headers: str) -> tuple[list[Any], bytes | None]:
    """What SNSAPI.route answered for a form POST, and the body it left for the next adapter
    (None: SNS took the request)."""
    api = SNSAPI(_Platform())  # type: ignore[arg-type]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    async def run() -> bytes | None:
        left = await api.route(scope(content_type=FORM, **headers), receive, send)
        return None if left is None else (await left())["body"]

    return sent, asyncio.run(run())


def test_an_unsigned_form_goes_by_its_version() -> None:
    sent, left = route(b"Action=NoSuchAction&Version=2010-03-31")
    assert left is None
    assert sent[0]["status"] == 400
    assert b'xmlns="http://sns.amazonaws.com/doc/2010-03-31/"' in sent[1]["body"]
    assert b"<Code>InvalidAction</Code>" in sent[1]["body"]
    for body in (b"Action=DescribeAlarms&Version=2010-08-01", b"Action=DescribeAlarms"):
        sent, left = route(body)
        assert sent == []
        assert left == body  # replayed whole to CloudWatch
    # a signed request goes by its scope, whatever its form says: its body is not read here
    sent, left = route(b"Action=ListTopics&Version=2010-03-31", authorization=SIGNED_MONITORING)
    assert sent == []
    assert left == b"Action=ListTopics&Version=2010-03-31"


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (TopicNotFound("arn:aws:sns:us-east-1:123456789012:t"), "NotFound", 404),
        (SubscriptionNotFound("arn:aws:sns:us-east-1:123456789012:t:s"), "NotFound", 404),
        (ValidationError("Invalid parameter: Name"), "InvalidParameter", 400),
        (InvalidParameterValue("bad attribute"), "ParameterValueInvalid", 400),
        (RuntimeError("boom"), "InternalError", 500),
    ],
)
def test_errors_are_snss_modelled_codes(error: Exception, code: str, status: int) -> None:
    mapped = wire_error(error)
    assert (mapped.code, mapped.status) == (code, status)
    modelled = {s.error_code: s.metadata.get("error", {}) for s in MODEL.error_shapes}
    assert code in modelled  # botocore raises the modelled class for this code
    assert modelled[code]["httpStatusCode"] == status
    assert mapped.fault == ("Receiver" if status >= 500 else "Sender")
    if isinstance(error, RuntimeError):
        assert "boom" not in mapped.message  # internals stay in the server log


def test_every_operation_is_one_sns_has() -> None:
    assert set(sns.OPERATIONS) <= set(MODEL.operation_names)


def serialize(operation: str, params: dict[str, Any]) -> dict[str, str]:
    """The form botocore sends (it url-encodes these pairs)."""
    request = QuerySerializer().serialize_to_request(params, MODEL.operation_model(operation))
    return {name: str(value) for name, value in request["body"].items()}


def test_awsquery_reads_what_botocore_writes_for_sns() -> None:
    params = {
        "Name": "orders",
        "Attributes": {"DisplayName": "Orders", "DeliveryPolicy": "{}"},
        "Tags": [{"Key": "team", "Value": "ml"}],
    }
    form = serialize("CreateTopic", params)
    assert form["Version"] == "2010-03-31"
    assert form["Attributes.entry.1.key"] == "DisplayName"
    assert awsquery.decode("CreateTopic", form, "sns") == params
    assert parse(CreateTopicInput, params).attributes == params["Attributes"]

    params = {
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
        "Message": "hello",
        "Subject": "Hi",
        "MessageAttributes": {
            "kind": {"DataType": "String", "StringValue": "score"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    }
    form = serialize("Publish", params)
    assert form["MessageAttributes.entry.1.Name"] == "kind"  # the map's own key and value names
    document = awsquery.decode("Publish", form, "sns")
    request = parse(PublishInput, document)
    assert request.message_attributes is not None
    assert request.message_attributes["kind"].string_value == "score"
    assert request.message_attributes["blob"].binary_value == "AAE="  # base64, as sent
    assert document["Subject"] == "Hi"

    form = serialize(
        "Subscribe",
        {
            "TopicArn": "t",
            "Protocol": "http",
            "Endpoint": "http://h/",
            "ReturnSubscriptionArn": True,
        },
    )
    assert awsquery.decode("Subscribe", form, "sns")["ReturnSubscriptionArn"] is True


def test_awsquery_writes_what_botocore_reads_for_sns() -> None:
    def read(operation: str, document: dict[str, Any]) -> dict[str, Any]:
        body = awsquery.encode(operation, document, "request-1", "sns")
        assert b'xmlns="http://sns.amazonaws.com/doc/2010-03-31/"' in body
        parsed: dict[str, Any] = QueryParser().parse(
            {"body": body, "headers": {}, "status_code": 200},
            MODEL.operation_model(operation).output_shape,
        )
        assert parsed.pop("ResponseMetadata")["RequestId"] == "request-1"
        return parsed

    topics = {"Topics": [{"TopicArn": "arn:a"}, {"TopicArn": "arn:b"}], "NextToken": "n"}
    assert read("ListTopics", topics) == topics
    attributes = {"Attributes": {"TopicArn": "arn:a", "SubscriptionsConfirmed": "1"}}
    assert read("GetTopicAttributes", attributes) == attributes
    subscriptions = {
        "Subscriptions": [
            {
                "SubscriptionArn": "PendingConfirmation",
                "Owner": "123456789012",
                "Protocol": "http",
                "Endpoint": "http://h/",
                "TopicArn": "arn:a",
            }
        ]
    }
    assert read("ListSubscriptionsByTopic", subscriptions) == subscriptions
    assert read("Publish", {"MessageId": "m"}) == {"MessageId": "m"}

    error = awsquery.encode_error("Sender", "NotFound", "Topic does not exist", "r", sns.NAMESPACE)
    assert b'xmlns="http://sns.amazonaws.com/doc/2010-03-31/"' in error
    parsed = QueryParser().parse({"body": error, "headers": {}, "status_code": 404}, None)
    assert parsed["Error"] == {
        "Type": "Sender",
        "Code": "NotFound",
        "Message": "Topic does not exist",
    }


def test_cloudwatch_stays_the_default_service() -> None:
    form = {"Action": "DescribeAlarms", "AlarmNames.member.1": "a"}
    assert awsquery.decode("DescribeAlarms", form) == {"AlarmNames": ["a"]}
    assert b"monitoring.amazonaws.com" in awsquery.encode("DescribeAlarms", {}, "r")
    with pytest.raises(ValidationError, match="Unknown operation"):
        awsquery.decode("DescribeAlarms", form, "sns")


def test_the_public_names_are_pinned() -> None:
    assert sns.__all__ == [
        "NAMESPACE",
        "OPERATIONS",
        "SIGNING_NAME",
        "SNSAPI",
        "VERSION",
        "wire_error",
    ]
