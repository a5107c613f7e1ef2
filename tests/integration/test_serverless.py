"""Serverless endpoints end to end: a real server, real instances, real boto3 clients.

A serverless variant has no instance until its first request, which waits for the cold start;
more than MaxConcurrency requests in flight are throttled; after the idle time no process of it
remains, and the next request starts one again. ProvisionedConcurrency keeps instances warm.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from shipway.cli.main import app
from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, instance_processes, start_server
from tests.integration.rollouts import aws

IDLE_SECONDS = 3
runner = CliRunner()

SLOW_INFERENCE_PY = textwrap.dedent(
    """
    import json
    import os
    import time

    import joblib
    import numpy as np


    def model_fn(model_dir):
        return joblib.load(os.path.join(model_dir, "model.joblib"))


    def input_fn(body, content_type):
        return json.loads(body)


    def predict_fn(data, model):
        time.sleep(data.get("sleep", 0))
        return model.predict(np.asarray(data["rows"]))


    def output_fn(prediction, accept):
        return json.dumps(prediction.tolist()), "application/json"
    """
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    running = start_server(
        tmp_path_factory.mktemp("serverless") / "home",
        env={"SHIPWAY_SERVERLESS_IDLE_SECONDS": str(IDLE_SECONDS)},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    """A scikit-learn model behind an inference.py that sleeps as long as the request asks."""
    trained = models.train_sklearn(tmp_path_factory.mktemp("slow-model"))
    (trained.folder / "code").mkdir()
    (trained.folder / "code" / "inference.py").write_text(SLOW_INFERENCE_PY)
    trained.image = "python"
    return trained


def create(
    server: ShipwayServer, name: str, model: models.Trained, serverless: dict[str, int]
) -> Any:
    sagemaker = aws(server.url, "sagemaker")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": model.image, "ModelDataUrl": str(model.folder)},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/shipway",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "ServerlessConfig": serverless}
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    return sagemaker


def body(model: models.Trained, sleep: float = 0.0) -> str:
    return json.dumps({"rows": model.rows.tolist(), "sleep": sleep})


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout} s")


def test_no_instance_until_the_first_request_which_waits_for_the_cold_start(
    server: ShipwayServer, model: models.Trained
) -> None:
    sagemaker = create(server, "sl-cold", model, {"MemorySizeInMB": 2048, "MaxConcurrency": 5})
    described = sagemaker.describe_endpoint(EndpointName="sl-cold")
    variant = described["ProductionVariants"][0]
    assert variant["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert variant["DesiredServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert variant["CurrentInstanceCount"] == 0
    assert "DesiredInstanceCount" not in variant
    assert instance_processes(server, "sl-cold") == []

    runtime = aws(server.url, "sagemaker-runtime")
    answer = runtime.invoke_endpoint(
        EndpointName="sl-cold", Body=body(model), ContentType="application/json"
    )
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    np.testing.assert_array_equal(json.loads(answer["Body"].read()), model.expected)
    assert len(instance_processes(server, "sl-cold")) >= 1
    assert (
        sagemaker.describe_endpoint(EndpointName="sl-cold")["ProductionVariants"][0][
            "CurrentInstanceCount"
        ]
        == 1
    )

    now = datetime.now(UTC)
    setup = aws(server.url, "cloudwatch").get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="ModelSetupTime",
        Dimensions=[
            {"Name": "EndpointName", "Value": "sl-cold"},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["SampleCount", "Maximum"],
    )["Datapoints"]
    assert sum(p["SampleCount"] for p in setup) == 1
    assert 0 < max(p["Maximum"] for p in setup) < 60e6  # microseconds


def test_requests_over_max_concurrency_are_throttled(
    server: ShipwayServer, model: models.Trained
) -> None:
    create(server, "sl-throttle", model, {"MemorySizeInMB": 1024, "MaxConcurrency": 2})
    client = runtime_without_retries(server)  # botocore retries ThrottlingException itself

    def call(sleep: float) -> str:
        try:
            client.invoke_endpoint(
                EndpointName="sl-throttle", Body=body(model, sleep), ContentType="application/json"
            )
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])
        return "ok"

    call(0)  # warm: the throttling below is about concurrency, not the cold start
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        slow = [pool.submit(call, 2.0) for _ in range(2)]
        time.sleep(0.7)  # both in flight
        third = pool.submit(call, 0).result()
        results = [f.result() for f in slow]
    assert third == "ThrottlingException"
    assert results == ["ok", "ok"]
    assert call(0) == "ok"  # room again


def runtime_without_retries(server: ShipwayServer) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-checked-when-auth-is-off",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def test_an_idle_variant_scales_to_zero_and_the_next_request_starts_it_again(
    server: ShipwayServer, model: models.Trained
) -> None:
    sagemaker = create(server, "sl-idle", model, {"MemorySizeInMB": 1024, "MaxConcurrency": 3})
    runtime = aws(server.url, "sagemaker-runtime")

    def invoke() -> None:
        answer = runtime.invoke_endpoint(
            EndpointName="sl-idle", Body=body(model), ContentType="application/json"
        )
        np.testing.assert_array_equal(json.loads(answer["Body"].read()), model.expected)

    def count() -> int:
        variant = sagemaker.describe_endpoint(EndpointName="sl-idle")["ProductionVariants"][0]
        return int(variant["CurrentInstanceCount"])

    started = time.monotonic()  # the request arrives after this: the idle time counts from it
    invoke()
    assert count() == 1
    wait_for(lambda: count() == 0, IDLE_SECONDS + 10, "scale to zero")
    assert time.monotonic() - started >= IDLE_SECONDS - 0.2  # not before the idle time
    wait_for(lambda: not instance_processes(server, "sl-idle"), 10, "no instance process left")
    assert sagemaker.describe_endpoint(EndpointName="sl-idle")["EndpointStatus"] == "InService"
    invoke()  # a cold start again
    assert count() == 1


def test_provisioned_concurrency_stays_warm_and_is_changed_in_place(
    server: ShipwayServer, model: models.Trained
) -> None:
    sagemaker = create(
        server,
        "sl-warm",
        model,
        {"MemorySizeInMB": 1024, "MaxConcurrency": 4, "ProvisionedConcurrency": 1},
    )

    def variant() -> dict[str, Any]:
        described = sagemaker.describe_endpoint(EndpointName="sl-warm")
        return dict(described["ProductionVariants"][0])

    assert variant()["CurrentInstanceCount"] == 1  # warm before any request
    time.sleep(IDLE_SECONDS + 1.5)
    assert variant()["CurrentInstanceCount"] == 1  # and after the idle time

    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName="sl-warm",
        DesiredWeightsAndCapacities=[
            {"VariantName": "AllTraffic", "ServerlessUpdateConfig": {"MaxConcurrency": 6}}
        ],
    )
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="sl-warm", WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    assert variant()["DesiredServerlessConfig"] == {
        "MemorySizeInMB": 1024,
        "MaxConcurrency": 6,
        "ProvisionedConcurrency": 1,
    }
    with pytest.raises(ClientError) as refused:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="sl-warm",
            DesiredWeightsAndCapacities=[
                {
                    "VariantName": "AllTraffic",
                    "ServerlessUpdateConfig": {"ProvisionedConcurrency": 7},
                }
            ],
        )
    assert "must not exceed its MaxConcurrency 6" in str(refused.value)
    with pytest.raises(ClientError) as refused:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="sl-warm",
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
        )
    assert "is serverless" in str(refused.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ServerlessConfig": {"MemorySizeInMB": 1500, "MaxConcurrency": 5}}, "1500"),
        ({"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 201}}, "200"),
        (
            {"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2,
                                  "ProvisionedConcurrency": 3}},
            "must not exceed MaxConcurrency",
        ),
        (
            {"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2},
             "InstanceType": "ml.t2.medium", "InitialInstanceCount": 1},
            "cannot have both",
        ),
        ({"second": True}, "exactly one production variant"),
        ({"shadow": True}, "Shadow variants"),
        ({"capture": True}, "DataCaptureConfig cannot be used with serverless"),
    ],
)  # fmt: skip
def test_serverless_restrictions_are_validation_errors_and_nothing_is_created(
    server: ShipwayServer, model: models.Trained, change: dict[str, Any], message: str
) -> None:
    sagemaker = aws(server.url, "sagemaker")
    name = "sl-bad"
    with contextlib.suppress(ClientError):  # made by an earlier case
        sagemaker.create_model(
            ModelName=name,
            PrimaryContainer={"Image": model.image, "ModelDataUrl": str(model.folder)},
            ExecutionRoleArn="arn:aws:iam::123456789012:role/shipway",
        )
    variant: dict[str, Any] = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2},
    }
    request: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": [variant]}
    if change.pop("second", False):
        request["ProductionVariants"].append({**variant, "VariantName": "Other"})
    if change.pop("shadow", False):
        request["ShadowProductionVariants"] = [{**variant, "VariantName": "Shadow"}]
    if change.pop("capture", False):
        request["DataCaptureConfig"] = {
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://bucket/capture",
            "CaptureOptions": [{"CaptureMode": "Input"}],
        }
    variant.update(change)
    with pytest.raises(ClientError) as refused:
        sagemaker.create_endpoint_config(**request)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert message in refused.value.response["Error"]["Message"]
    assert sagemaker.list_endpoint_configs(NameContains=name)["EndpointConfigs"] == []


def test_the_cli_creates_a_serverless_endpoint_from_a_model(
    server: ShipwayServer, model: models.Trained
) -> None:
    cli = ["--url", server.url]
    created = runner.invoke(
        app, [*cli, "models", "create", "sl-cli", "--image", "python",
              "--model-data", str(model.folder)],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    bad = runner.invoke(
        app, [*cli, "endpoints", "create", "sl-cli", "--model", "sl-cli",
              "--serverless", "memory=2048,concurrency=lots"],
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "concurrency must be a whole number" in bad.output
    created = runner.invoke(
        app, [*cli, "endpoints", "create", "sl-cli", "--model", "sl-cli",
              "--serverless", "memory=2048,concurrency=5"],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "InService" in created.output
    answer = runner.invoke(
        app, [*cli, "invoke", "sl-cli", "--content-type", "application/json",
              "--body", body(model)],
    )  # fmt: skip
    assert answer.exit_code == 0, answer.output
    np.testing.assert_array_equal(json.loads(answer.stdout), model.expected)
    described = runner.invoke(app, [*cli, "endpoints", "describe", "sl-cli"])
    assert described.exit_code == 0, described.output
    assert "serverless" in described.output
    config = aws(server.url, "sagemaker").describe_endpoint_config(EndpointConfigName="sl-cli")
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 5,
    }


def test_a_model_that_cannot_load_fails_its_requests_at_once_with_the_reason(
    server: ShipwayServer, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.joblib").write_bytes(b"not a pickle")
    create(
        server,
        "sl-broken",
        models.Trained(broken, "sklearn", np.zeros((1, 30)), np.zeros(1)),
        {"MemorySizeInMB": 1024, "MaxConcurrency": 2},
    )
    client = runtime_without_retries(server)
    for _ in range(2):  # the cold start, then a request while the restart waits (backoff)
        started = time.monotonic()
        with pytest.raises(ClientError) as failed:
            client.invoke_endpoint(
                EndpointName="sl-broken", Body="[[0]]", ContentType="application/json"
            )
        assert time.monotonic() - started < 10
        error = failed.value.response["Error"]
        assert error["Code"] == "ServiceUnavailable"
        assert "could not start an instance" in error["Message"]
        assert "model.joblib" in error["Message"] or "pickle" in error["Message"].lower()


def test_provisioned_concurrency_is_a_scalable_target(
    server: ShipwayServer, model: models.Trained
) -> None:
    sagemaker = create(
        server,
        "sl-scaled",
        model,
        {"MemorySizeInMB": 1024, "MaxConcurrency": 20, "ProvisionedConcurrency": 1},
    )
    autoscaling = aws(server.url, "application-autoscaling")
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/sl-scaled/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredProvisionedConcurrency",
    }
    with pytest.raises(ClientError) as refused:  # more than MaxConcurrency
        autoscaling.register_scalable_target(**target, MinCapacity=1, MaxCapacity=21)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    # a minimum above the current value raises it: two instances hold 11 (10 each)
    autoscaling.register_scalable_target(**target, MinCapacity=11, MaxCapacity=20)

    def variant() -> dict[str, Any]:
        return dict(sagemaker.describe_endpoint(EndpointName="sl-scaled")["ProductionVariants"][0])

    wait_for(lambda: variant()["DesiredServerlessConfig"].get("ProvisionedConcurrency") == 11,
             10, "provisioned concurrency raised")  # fmt: skip
    wait_for(lambda: variant()["CurrentInstanceCount"] == 2, 30, "two warm instances")
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="sl-scaled", WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    activities = autoscaling.describe_scaling_activities(
        ServiceNamespace="sagemaker", ResourceId=target["ResourceId"]
    )["ScalingActivities"]
    assert activities[0]["StatusCode"] == "Successful", activities
    assert activities[0]["Description"].endswith("to 11."), activities
