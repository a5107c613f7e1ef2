"""The boto3 flow of AWS's asynchronous inference examples over ``s3://`` (moto's standalone
server as S3), with an SNS topic per outcome and a real HTTP subscriber that confirms its
subscription and receives SageMaker's notification message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.fixtures import models
from tests.fixtures.s3 import S3Bucket
from tests.fixtures.server import ShipwayServer, start_server
from tests.fixtures.sns_subscriber import Received, Subscriber
from tests.integration.rollouts import ROLE, aws
from tests.integration.test_async import ASYNC_INFERENCE_PY


@pytest.fixture
def model(tmp_path: Path) -> models.Trained:
    trained = models.train_sklearn(tmp_path / "model")
    (trained.folder / "code").mkdir()
    (trained.folder / "code" / "inference.py").write_text(ASYNC_INFERENCE_PY)
    trained.image = "python"
    return trained


@pytest.fixture
def server(tmp_path: Path, s3_bucket: S3Bucket) -> Iterator[ShipwayServer]:
    running = start_server(tmp_path / "home", env=s3_bucket.env)
    yield running
    running.stop()


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    running = Subscriber().start()
    yield running
    running.stop()


def s3_object(bucket: S3Bucket, url: str, timeout: float = 60.0) -> bytes:
    """Poll S3 for an output object, as AWS's examples do."""
    prefix = f"s3://{bucket.name}/"
    assert url.startswith(prefix), url
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = bucket.client.get_object(Bucket=bucket.name, Key=url[len(prefix) :])
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                raise
            time.sleep(0.2)
            continue
        body: bytes = answer["Body"].read()
        return body
    raise AssertionError(f"nothing at {url} after {timeout} s")


def notification_for(subscriber: Subscriber, inference_id: str) -> dict[str, Any]:
    def find() -> Received | None:
        for received in subscriber.messages("Notification"):
            if json.loads(received.body["Message"])["inferenceId"] == inference_id:
                return received
        return None

    received: Received = subscriber.wait_for(find, 60, f"the notification of {inference_id}")
    message: dict[str, Any] = json.loads(received.body["Message"])
    return message


def test_the_aws_example_flow_over_s3_with_sns_notifications(
    server: ShipwayServer, model: models.Trained, s3_bucket: S3Bucket, subscriber: Subscriber
) -> None:
    sns = aws(server.url, "sns")
    success = sns.create_topic(Name="async-success")["TopicArn"]
    error = sns.create_topic(Name="async-error")["TopicArn"]
    for topic in (success, error):
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=subscriber.url("/hook"))
    subscriber.wait_for(lambda: len(subscriber.confirmations) == 2, 20, "two confirmations")

    sagemaker = aws(server.url, "sagemaker")
    model_data = s3_bucket.upload(models.pack(model.folder, model.folder.parent / "m.tar.gz"),
                                  "models/model.tar.gz")  # fmt: skip
    sagemaker.create_model(
        ModelName="notified",
        PrimaryContainer={"Image": model.image, "ModelDataUrl": model_data},
        ExecutionRoleArn=ROLE,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="notified",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "notified",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        AsyncInferenceConfig={
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
            "OutputConfig": {
                "S3OutputPath": s3_bucket.url("async/output"),
                "S3FailurePath": s3_bucket.url("async/failure"),
                "NotificationConfig": {
                    "SuccessTopic": success,
                    "ErrorTopic": error,
                    "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"],
                },
            },
        },
    )
    sagemaker.create_endpoint(EndpointName="notified", EndpointConfigName="notified")
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="notified", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    runtime = aws(server.url, "sagemaker-runtime")

    rows = s3_bucket.put(
        "async/input/rows.json", json.dumps({"rows": model.rows.tolist()}).encode()
    )
    response = runtime.invoke_endpoint_async(
        EndpointName="notified", InputLocation=rows, ContentType="application/json"
    )
    answer = json.loads(s3_object(s3_bucket, response["OutputLocation"]))
    assert answer == model.expected.tolist()
    message = notification_for(subscriber, response["InferenceId"])
    assert message["invocationStatus"] == "Completed"
    assert message["requestParameters"]["endpointName"] == "notified"
    assert message["requestParameters"]["inputLocation"] == rows
    assert message["responseParameters"]["outputLocation"] == response["OutputLocation"]
    assert json.loads(message["responseBody"]["content"]) == model.expected.tolist()
    assert message["eventTime"].endswith("Z")

    failing = s3_bucket.put(
        "async/input/fail.json", json.dumps({"rows": model.rows.tolist(), "fail": True}).encode()
    )
    failed = runtime.invoke_endpoint_async(
        EndpointName="notified", InputLocation=failing, ContentType="application/json"
    )
    reason = s3_object(s3_bucket, failed["FailureLocation"]).decode()
    assert "the model was asked to fail" in reason
    message = notification_for(subscriber, failed["InferenceId"])
    assert message["invocationStatus"] == "Failed"
    assert "the model was asked to fail" in message["failureReason"]
    assert "responseBody" not in message  # only the success topic asked for it
    with pytest.raises(ClientError):
        s3_bucket.client.head_object(
            Bucket=s3_bucket.name, Key=f"async/output/{failed['InferenceId']}.out"
        )

    missing = s3_bucket.url("async/input/not-there.json")
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint_async(EndpointName="notified", InputLocation=missing)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "does not exist" in caught.value.response["Error"]["Message"]


def test_a_config_naming_a_topic_that_does_not_exist_is_refused(server: ShipwayServer) -> None:
    sagemaker = aws(server.url, "sagemaker")
    with pytest.raises(ClientError) as caught:
        sagemaker.create_endpoint_config(
            EndpointConfigName="no-topic",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "anything",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
            AsyncInferenceConfig={
                "OutputConfig": {
                    "S3OutputPath": "s3://bucket/out",
                    "NotificationConfig": {
                        "SuccessTopic": "arn:aws:sns:us-east-1:123456789012:missing"
                    },
                }
            },
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "missing" in caught.value.response["Error"]["Message"]
