"""An asynchronous endpoint scaled to zero and back with AWS's recipe: MinCapacity 0, target
tracking on ApproximateBacklogSizePerInstance, and a step policy fired by an alarm on
HasBacklogWithoutCapacity (target tracking cannot leave zero). Requests queued while the
endpoint has no instance all complete once it has one again. Policies are evaluated every
second here (``SHIPWAY_AUTOSCALING_INTERVAL_SECONDS``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, start_server
from tests.integration.rollouts import aws
from tests.integration.test_async import (
    ASYNC_INFERENCE_PY,
    create_async_endpoint,
    upload,
    wait_for_object,
)

pytestmark = pytest.mark.slow(seconds=35)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    running = start_server(
        tmp_path_factory.mktemp("async-scaling") / "home",
        env={"SHIPWAY_AUTOSCALING_INTERVAL_SECONDS": "1"},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    trained = models.train_sklearn(tmp_path_factory.mktemp("async-scaling-model"))
    (trained.folder / "code").mkdir()
    (trained.folder / "code" / "inference.py").write_text(ASYNC_INFERENCE_PY)
    trained.image = "python"
    return trained


def until(condition: Callable[[], bool], timeout: float, what: str, server: ShipwayServer) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout} s:\n{server.log()[-3000:]}")


def instances(sagemaker: Any, name: str) -> int:
    described = sagemaker.describe_endpoint(EndpointName=name)
    return int(described["ProductionVariants"][0].get("CurrentInstanceCount", 0))


def test_the_aws_recipe_scales_to_zero_and_back_and_queued_requests_complete(
    server: ShipwayServer, model: models.Trained, tmp_path: Path
) -> None:
    name = "async-zero"
    sagemaker = create_async_endpoint(server, name, model, tmp_path, concurrency=2)
    autoscaling = aws(server.url, "application-autoscaling")
    cloudwatch = aws(server.url, "cloudwatch")
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{name}/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    autoscaling.register_scalable_target(**target, MinCapacity=0, MaxCapacity=2)
    autoscaling.put_scaling_policy(
        **target,
        PolicyName="backlog-per-instance",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 5.0,
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance",
                "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": name}],
                "Statistic": "Average",
            },
            "ScaleInCooldown": 0,
            "ScaleOutCooldown": 0,
        },
    )
    step = autoscaling.put_scaling_policy(
        **target,
        PolicyName="has-backlog-without-capacity",
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Average",
            "Cooldown": 0,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
        },
    )
    cloudwatch.put_metric_alarm(
        AlarmName=f"{name}-has-backlog-without-capacity",
        MetricName="HasBacklogWithoutCapacity",
        Namespace="AWS/SageMaker",
        Dimensions=[{"Name": "EndpointName", "Value": name}],
        Statistic="Average",
        Period=10,
        EvaluationPeriods=1,
        DatapointsToAlarm=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="missing",
        AlarmActions=[step["PolicyARN"]],
    )

    # no backlog: target tracking scales the endpoint in to zero
    until(lambda: instances(sagemaker, name) == 0, 90, "a scale-in to zero", server)
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] in (
        "InService",
        "Updating",
    )

    # requests queued meanwhile: HasBacklogWithoutCapacity fires the step policy
    runtime = aws(server.url, "sagemaker-runtime")
    outputs = [
        runtime.invoke_endpoint_async(
            EndpointName=name,
            InputLocation=upload(tmp_path, f"zero-{i}.json", {"rows": model.rows[:3].tolist()}),
            ContentType="application/json",
        )["OutputLocation"]
        for i in range(6)
    ]
    time.sleep(2)
    assert all(not Path(url[len("file://") :]).exists() for url in outputs)
    end = datetime.now(UTC) + timedelta(minutes=1)
    backlog = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="HasBacklogWithoutCapacity",
        Dimensions=[{"Name": "EndpointName", "Value": name}],
        StartTime=end - timedelta(minutes=5),
        EndTime=end,
        Period=60,
        Statistics=["Maximum"],
    )
    assert max(p["Maximum"] for p in backlog["Datapoints"]) == 1.0

    until(lambda: instances(sagemaker, name) >= 1, 90, "a scale-out from zero", server)
    for url in outputs:
        answer = json.loads(wait_for_object(url, timeout=90))
        assert answer == model.expected[:3].tolist()
    activities = autoscaling.describe_scaling_activities(ServiceNamespace="sagemaker")
    causes = " ".join(a["Cause"] for a in activities["ScalingActivities"])
    assert "has-backlog-without-capacity" in causes
    assert "backlog-per-instance" in causes
