"""boto3's own ``sns`` client, unchanged, against a real ``shipway server``: topics, HTTP
subscriptions confirmed by a real subscriber's GET of its SubscribeURL, Publish, retries,
delivery after a kill -9, alarm actions, authentication, and CloudWatch on the same port.

The subscriber is a small ``http.server`` in this process on 127.0.0.1
(:mod:`tests.fixtures.sns_subscriber`).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from typer.testing import CliRunner, Result

from shipway.cli.main import app as cli
from tests.fixtures.server import ShipwayServer, start_secured_server, start_server
from tests.fixtures.sns_subscriber import Subscriber

REGION = "us-east-1"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:"
NO_RETRIES = Config(retries={"max_attempts": 1})
FAST_RETRIES = {
    "SHIPWAY_NOTIFICATION_MIN_DELAY_SECONDS": "0.05",
    "SHIPWAY_NOTIFICATION_MAX_DELAY_SECONDS": "0.2",
}
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
NS = "{http://sns.amazonaws.com/doc/2010-03-31/}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    running = start_server(tmp_path_factory.mktemp("sns") / "home", env=FAST_RETRIES)
    yield running
    running.stop()


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    running = Subscriber().start()
    yield running
    running.stop()


def client(server: ShipwayServer, service: str = "sns", **keys: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=keys.get("akid", "AKIDEXAMPLE"),
        aws_secret_access_key=keys.get("secret", "not-checked-when-auth-is-off"),
        config=NO_RETRIES,
    )


@pytest.fixture(scope="module")
def sns(server: ShipwayServer) -> Any:
    return client(server)


def subscribe_confirmed(sns: Any, topic: str, subscriber: Subscriber, path: str = "/") -> str:
    """Subscribe the subscriber's URL at ``path`` and wait until it confirmed by its GET."""
    answer = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=subscriber.url(path))
    assert answer["SubscriptionArn"] == "pending confirmation"

    def confirmed() -> str | None:
        for item in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]:
            if item["Endpoint"] == subscriber.url(path) and item["SubscriptionArn"].startswith(
                topic + ":"
            ):
                return str(item["SubscriptionArn"])
        return None

    arn: str = subscriber.wait_for(confirmed, what="a confirmed subscription")
    return arn


def test_a_subscriber_confirms_with_its_subscribe_url_and_gets_what_is_published(
    server: ShipwayServer, sns: Any, subscriber: Subscriber
) -> None:
    topic = sns.create_topic(Name="orders", Tags=[{"Key": "team", "Value": "ml"}])["TopicArn"]
    assert topic == TOPIC_ARN + "orders"
    pending = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=subscriber.url("/hook"))
    assert pending["SubscriptionArn"] == "pending confirmation"

    [confirmation] = subscriber.wait_for(
        lambda: subscriber.messages("SubscriptionConfirmation"), what="a confirmation"
    )
    headers, body = confirmation.headers, confirmation.body
    assert confirmation.path == "/hook"
    assert headers["x-amz-sns-message-type"] == "SubscriptionConfirmation"
    assert headers["x-amz-sns-message-id"] == body["MessageId"]
    assert headers["x-amz-sns-topic-arn"] == topic
    assert headers["content-type"].startswith("text/plain")
    assert body["TopicArn"] == topic
    assert body["Token"]
    assert body["SubscribeURL"].startswith(f"{server.url}/?Action=ConfirmSubscription&TopicArn=")
    assert body["Token"] in body["SubscribeURL"]
    assert topic in body["Message"]
    datetime.strptime(body["Timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    # the subscriber's plain GET of the SubscribeURL answered ConfirmSubscription's XML
    [answer] = subscriber.confirmations
    arn = ElementTree.fromstring(answer).findtext(
        f"{NS}ConfirmSubscriptionResult/{NS}SubscriptionArn"
    )
    assert arn is not None
    assert arn.startswith(topic + ":")
    listed = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert listed == [
        {
            "SubscriptionArn": arn,
            "Owner": "123456789012",
            "Protocol": "http",
            "Endpoint": subscriber.url("/hook"),
            "TopicArn": topic,
        }
    ]
    assert (
        sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]["PendingConfirmation"]
        == "false"
    )
    attributes = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    assert attributes["SubscriptionsConfirmed"] == "1"
    assert attributes["SubscriptionsPending"] == "0"
    assert sns.list_tags_for_resource(ResourceArn=topic)["Tags"] == [{"Key": "team", "Value": "ml"}]
    # subscribing the same endpoint again answers the confirmed subscription
    again = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=subscriber.url("/hook"))
    assert again["SubscriptionArn"] == arn

    message_id = sns.publish(
        TopicArn=topic,
        Message="order 42 scored",
        Subject="Scored",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "score"},
            "count": {"DataType": "Number", "StringValue": "3"},
        },
    )["MessageId"]
    received = subscriber.notification(message_id)
    assert received.path == "/hook"
    assert received.headers["x-amz-sns-message-type"] == "Notification"
    assert received.headers["x-amz-sns-message-id"] == message_id
    assert received.headers["x-amz-sns-topic-arn"] == topic
    assert received.headers["x-amz-sns-subscription-arn"] == arn
    body = received.body
    assert body["Type"] == "Notification"
    assert body["MessageId"] == message_id
    assert body["TopicArn"] == topic
    assert body["Subject"] == "Scored"
    assert body["Message"] == "order 42 scored"
    assert body["SignatureVersion"] == "1"
    stamp = datetime.strptime(body["Timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert body["UnsubscribeURL"].startswith(f"{server.url}/?Action=Unsubscribe&SubscriptionArn=")
    assert body["MessageAttributes"] == {
        "kind": {"Type": "String", "Value": "score"},
        "count": {"Type": "Number", "Value": "3"},
    }


def test_return_subscription_arn_and_confirm_subscription_with_the_token(
    sns: Any, subscriber: Subscriber
) -> None:
    subscriber.confirm = False
    topic = sns.create_topic(Name="by-token")["TopicArn"]
    arn = sns.subscribe(
        TopicArn=topic, Protocol="http", Endpoint=subscriber.url(), ReturnSubscriptionArn=True
    )["SubscriptionArn"]
    assert arn.startswith(topic + ":")
    [confirmation] = subscriber.wait_for(lambda: subscriber.messages("SubscriptionConfirmation"))
    [listed] = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert listed["SubscriptionArn"] == "PendingConfirmation"
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["SubscriptionsPending"] == "1"
    # nothing is sent to a subscription until it is confirmed
    sns.publish(TopicArn=topic, Message="too early")
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.confirm_subscription(TopicArn=topic, Token="not-the-token")
    confirmed = sns.confirm_subscription(TopicArn=topic, Token=confirmation.body["Token"])
    assert confirmed["SubscriptionArn"] == arn
    message_id = sns.publish(TopicArn=topic, Message="now")["MessageId"]
    subscriber.notification(message_id)
    assert [m.body["Message"] for m in subscriber.messages("Notification")] == ["now"]


def test_create_topic_is_idempotent_and_list_topics_pages(sns: Any) -> None:
    names = [f"paged-{i:03d}" for i in range(105)]
    arns = [sns.create_topic(Name=name)["TopicArn"] for name in names]
    assert sns.create_topic(Name="paged-000")["TopicArn"] == arns[0]
    sns.create_topic(Name="shown", Attributes={"DisplayName": "Orders"})
    assert sns.create_topic(Name="shown", Attributes={"DisplayName": "Orders"})["TopicArn"]
    with pytest.raises(sns.exceptions.InvalidParameterException, match="different attributes"):
        sns.create_topic(Name="shown", Attributes={"DisplayName": "Other"})
    assert (
        sns.get_topic_attributes(TopicArn=TOPIC_ARN + "shown")["Attributes"]["DisplayName"]
        == "Orders"
    )

    first = sns.list_topics()
    assert len(first["Topics"]) == 100
    assert first["NextToken"]
    listed = [
        t["TopicArn"]
        for page in sns.get_paginator("list_topics").paginate()
        for t in page["Topics"]
    ]
    assert len(listed) == len(set(listed))
    assert set(arns) <= set(listed)

    sns.delete_topic(TopicArn=arns[0])
    sns.delete_topic(TopicArn=arns[0])  # idempotent, as SNS's
    listed = [
        t["TopicArn"]
        for page in sns.get_paginator("list_topics").paginate()
        for t in page["Topics"]
    ]
    assert arns[0] not in listed
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.list_topics(NextToken="not-a-token")


def test_errors_are_boto3s_modelled_exceptions(sns: Any) -> None:
    missing = TOPIC_ARN + "no-such-topic"
    for call in (
        lambda: sns.get_topic_attributes(TopicArn=missing),
        lambda: sns.publish(TopicArn=missing, Message="m"),
        lambda: sns.subscribe(TopicArn=missing, Protocol="http", Endpoint="http://127.0.0.1:1/"),
        lambda: sns.list_subscriptions_by_topic(TopicArn=missing),
        lambda: sns.unsubscribe(SubscriptionArn=missing + ":0f3c5d1e-0000-4000-8000-000000000000"),
    ):
        with pytest.raises(sns.exceptions.NotFoundException) as raised:
            call()
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert raised.value.response["Error"]["Type"] == "Sender"

    topic = sns.create_topic(Name="errors")["TopicArn"]
    for protocol, endpoint in (
        ("sqs", "arn:aws:sqs:us-east-1:123456789012:queue"),
        ("email", "someone@example.com"),
        ("lambda", "arn:aws:lambda:us-east-1:123456789012:function:f"),
        ("carrier-pigeon", "roof"),
        ("https", "http://127.0.0.1:1/"),  # the endpoint must be the protocol's
    ):
        with pytest.raises(sns.exceptions.InvalidParameterException) as raised:
            sns.subscribe(TopicArn=topic, Protocol=protocol, Endpoint=endpoint)
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(sns.exceptions.InvalidParameterException, match="sqs protocol is not"):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint="arn:aws:sqs:us-east-1:1:q")
    with pytest.raises(sns.exceptions.InvalidParameterException, match="FIFO"):
        sns.create_topic(Name="jobs.fifo", Attributes={"FifoTopic": "true"})
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.create_topic(Name="bad name!")
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.publish(TopicArn="not-an-arn", Message="m")
    with pytest.raises(sns.exceptions.InvalidParameterValueException):
        sns.publish(
            TopicArn=topic,
            Message="m",
            MessageAttributes={"n": {"DataType": "Number", "StringValue": "three"}},
        )
    with pytest.raises(sns.exceptions.InvalidParameterException, match="Subject"):
        sns.publish(TopicArn=topic, Message="m", Subject="two\nlines")


def test_unsubscribe_stops_delivery(sns: Any, subscriber: Subscriber) -> None:
    topic = sns.create_topic(Name="unsubscribing")["TopicArn"]
    leaving = subscribe_confirmed(sns, topic, subscriber, "/leaving")
    subscribe_confirmed(sns, topic, subscriber, "/staying")
    sns.unsubscribe(SubscriptionArn=leaving)
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.unsubscribe(SubscriptionArn=leaving)
    message_id = sns.publish(TopicArn=topic, Message="after")["MessageId"]
    received = subscriber.notification(message_id, "/staying")
    time.sleep(0.3)  # what would have gone to /leaving went out with the other
    assert subscriber.messages("Notification", "/leaving") == []
    [remaining] = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert remaining["Endpoint"] == subscriber.url("/staying")
    # the UnsubscribeURL a notification carries unsubscribes with a plain GET (authentication
    # off; with it on, the GET must be signed)
    answer = httpx.get(received.body["UnsubscribeURL"])
    assert answer.status_code == 200, answer.text
    assert ElementTree.fromstring(answer.text).tag == f"{NS}UnsubscribeResponse"
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []
    sns.publish(TopicArn=topic, Message="to nobody")
    time.sleep(0.3)
    assert len(subscriber.messages("Notification")) == 1


def test_a_subscriber_that_fails_twice_gets_the_message_on_the_retry(
    sns: Any, subscriber: Subscriber
) -> None:
    topic = sns.create_topic(Name="flaky")["TopicArn"]
    subscribe_confirmed(sns, topic, subscriber)
    subscriber.fail_next(500, 500)
    message_id = sns.publish(TopicArn=topic, Message="retried")["MessageId"]
    subscriber.notification(message_id)
    time.sleep(0.3)
    attempts = [r.status for r in subscriber.received if r.body.get("MessageId") == message_id]
    assert attempts == [500, 500, 200]


def test_an_alarm_action_naming_a_topic_notifies_its_subscribers(
    server: ShipwayServer, sns: Any, subscriber: Subscriber
) -> None:
    topic = sns.create_topic(Name="oncall")["TopicArn"]
    quiet = sns.create_topic(Name="quiet")["TopicArn"]
    subscribe_confirmed(sns, topic, subscriber, "/oncall")
    subscribe_confirmed(sns, quiet, subscriber, "/quiet")
    cloudwatch = client(server, "cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="orders-5xx",
        AlarmDescription="5XX errors of orders",
        MetricName="Invocation5XXErrors",
        Namespace="AWS/SageMaker",
        Statistic="Sum",
        Dimensions=[{"Name": "EndpointName", "Value": "orders"}],
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="ignore",
        AlarmActions=[topic],
        OKActions=[quiet],
    )
    cloudwatch.set_alarm_state(AlarmName="orders-5xx", StateValue="ALARM", StateReason="test")

    [received] = subscriber.wait_for(
        lambda: subscriber.messages("Notification", "/oncall"), what="the alarm's notification"
    )
    assert received.body["Subject"] == 'ALARM: "orders-5xx" in US East (N. Virginia)'
    alarm = json.loads(received.body["Message"])
    assert alarm["AlarmName"] == "orders-5xx"
    assert alarm["AlarmDescription"] == "5XX errors of orders"
    assert alarm["NewStateValue"] == "ALARM"
    assert alarm["OldStateValue"] == "INSUFFICIENT_DATA"
    assert alarm["NewStateReason"] == "test"
    assert alarm["Region"] == "US East (N. Virginia)"
    assert alarm["AlarmArn"] == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-5xx"
    assert alarm["AlarmActions"] == [topic]
    datetime.strptime(alarm["StateChangeTime"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert alarm["Trigger"]["MetricName"] == "Invocation5XXErrors"
    assert alarm["Trigger"]["Statistic"] == "SUM"
    assert alarm["Trigger"]["Dimensions"] == [{"value": "orders", "name": "EndpointName"}]
    assert subscriber.messages("Notification", "/quiet") == []

    cloudwatch.set_alarm_state(AlarmName="orders-5xx", StateValue="OK", StateReason="fine")
    [ok] = subscriber.wait_for(lambda: subscriber.messages("Notification", "/quiet"))
    assert json.loads(ok.body["Message"])["OldStateValue"] == "ALARM"
    assert len(subscriber.messages("Notification", "/oncall")) == 1


def test_cloudwatch_and_sns_share_the_port_and_take_only_their_own_requests(
    server: ShipwayServer, sns: Any
) -> None:
    sns.create_topic(Name="shared")
    cloudwatch = client(server, "cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="shared",
        MetricName="Invocations",
        Namespace="AWS/SageMaker",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    [alarm] = cloudwatch.describe_alarms(AlarmNames=["shared"])["MetricAlarms"]
    assert alarm["MetricName"] == "Invocations"
    # unsigned awsquery requests (authentication off) go by their form's Version
    listed = httpx.post(
        server.url + "/",
        data={
            "Action": "GetTopicAttributes",
            "Version": "2010-03-31",
            "TopicArn": TOPIC_ARN + "shared",
        },
    )
    assert listed.status_code == 200, listed.text
    assert ElementTree.fromstring(listed.text).tag == f"{NS}GetTopicAttributesResponse"
    assert f"<value>{TOPIC_ARN}shared</value>" in listed.text
    alarms = httpx.post(
        server.url + "/", data={"Action": "DescribeAlarms", "Version": "2010-08-01"}
    )
    assert alarms.status_code == 200, alarms.text
    assert ElementTree.fromstring(alarms.text).tag.endswith("DescribeAlarmsResponse")
    assert "<AlarmName>shared</AlarmName>" in alarms.text
    # one service's operation sent to the other is not the other's
    wrong = httpx.post(server.url + "/", data={"Action": "DescribeAlarms", "Version": "2010-03-31"})
    assert wrong.status_code == 400
    assert "<Code>InvalidAction</Code>" in wrong.text


def test_the_rest_api_and_the_cli_show_topics_and_how_deliveries_go(
    server: ShipwayServer, sns: Any, subscriber: Subscriber
) -> None:
    topic = sns.create_topic(Name="watched", Attributes={"DisplayName": "Watched"})["TopicArn"]
    subscribe_confirmed(sns, topic, subscriber, "/ok")
    down = Subscriber().start()
    down_url = down.url("/down")
    subscribe_confirmed(sns, topic, down, "/down")
    down.stop()  # refused from now on: its delivery stays pending, with the error
    message_id = sns.publish(TopicArn=topic, Message="watch")["MessageId"]
    subscriber.notification(message_id, "/ok")
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint="http://127.0.0.1:9/never")

    with httpx.Client(base_url=server.url, timeout=30) as rest:
        topics = rest.get("/api/topics").json()["Topics"]
        [watched] = [t for t in topics if t["Name"] == "watched"]
        assert watched["TopicArn"] == topic
        assert watched["Attributes"]["DisplayName"] == "Watched"
        assert watched["Attributes"]["SubscriptionsConfirmed"] == "2"
        assert watched["Attributes"]["SubscriptionsPending"] == "1"
        assert rest.get("/api/topics/watched").json() == watched

        def deliveries() -> dict[str, Any]:
            answer = rest.get("/api/topics/watched/subscriptions").json()["Subscriptions"]
            return {s["Endpoint"]: s for s in answer}

        found = subscriber.wait_for(
            lambda: (d := deliveries()) and d[down_url].get("LastError") and d,
            what="a failed attempt recorded",
        )
        ok = found[subscriber.url("/ok")]
        assert (ok["PendingConfirmation"], ok["DeliveriesDelivered"], ok["DeliveriesPending"]) == (
            False,
            2,  # the confirmation and the message
            0,
        )
        assert found[down_url]["DeliveriesPending"] == 1
        assert "ConnectionRefusedError" in found[down_url]["LastError"]
        assert found["http://127.0.0.1:9/never"]["PendingConfirmation"] is True
        missing = rest.get("/api/topics/no-such-topic/subscriptions")
        assert missing.status_code == 404
        assert missing.json()["code"] == "ResourceNotFound"

    runner = CliRunner()

    def shipway(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli, ["--url", server.url, "topics", *args])
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    assert "watched" in shipway("list").stdout
    listed = json.loads(shipway("list", "--json").stdout)
    assert topic in [t["TopicArn"] for t in listed["Topics"]]
    shown = shipway("show", "watched").stdout
    assert topic in shown
    assert "Subscriptions" in shown
    for word in ("pending", "confirmed", "refused"):  # the table wraps long cells
        assert word in shown
    as_json = json.loads(shipway("show", "watched", "--json").stdout)
    assert as_json["TopicArn"] == topic
    assert {s["Endpoint"] for s in as_json["Subscriptions"]} == set(found)
    missing_topic = shipway("show", "no-such-topic", code=1)
    assert missing_topic.stderr.startswith("Error: ResourceNotFound: Topic does not exist")


def test_kill_9_loses_no_published_message(tmp_path: Path, subscriber: Subscriber) -> None:
    server = start_server(
        tmp_path / "home", env={**FAST_RETRIES, "SHIPWAY_NOTIFICATION_RETRIES": "10000"}
    )
    try:
        sns = client(server)
        topic = sns.create_topic(Name="durable")["TopicArn"]
        subscribe_confirmed(sns, topic, subscriber)
        subscriber.stop()  # refused from now on
        message_id = sns.publish(TopicArn=topic, Message="kept")["MessageId"]
        time.sleep(0.5)  # a few attempts fail
        server.stop(signal.SIGKILL)
        subscriber.start()
        server.start()
        subscriber.notification(message_id)
        time.sleep(0.5)
        delivered = [
            m for m in subscriber.messages("Notification") if m.body["MessageId"] == message_id
        ]
        assert len(delivered) == 1
    finally:
        server.stop()


def test_with_authentication_the_subscribe_url_alone_needs_no_signature(
    tmp_path: Path, subscriber: Subscriber
) -> None:
    server = start_secured_server(tmp_path, "AKIDSNS", "sns-secret", env=FAST_RETRIES)
    try:
        sns = client(server, akid="AKIDSNS", secret="sns-secret")
        topic = sns.create_topic(Name="secured")["TopicArn"]
        subscribe_confirmed(sns, topic, subscriber)  # the subscriber's GET is unsigned
        message_id = sns.publish(TopicArn=topic, Message="signed")["MessageId"]
        subscriber.notification(message_id)
        cloudwatch = client(server, "cloudwatch", akid="AKIDSNS", secret="sns-secret")
        assert cloudwatch.describe_alarms()["MetricAlarms"] == []

        with pytest.raises(ClientError) as raised:
            client(server, akid="AKIDSNS", secret="wrong").list_topics()
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        for refused in (
            "/?Action=ListTopics",
            f"/?Action=Unsubscribe&SubscriptionArn={topic}:x",
            f"/?Action=ConfirmSubscription&TopicArn={topic}&Token=t&Extra=1",
        ):
            assert httpx.get(server.url + refused).status_code == 403, refused
        assert (
            httpx.post(
                server.url + "/", data={"Action": "ListTopics", "Version": "2010-03-31"}
            ).status_code
            == 403
        )
        # the confirmation shape passes authentication; a wrong token is then refused by SNS
        wrong = httpx.get(
            server.url + "/",
            params={"Action": "ConfirmSubscription", "TopicArn": topic, "Token": "t"},
        )
        assert wrong.status_code == 400
        assert "<Code>InvalidParameter</Code>" in wrong.text
    finally:
        server.stop()
