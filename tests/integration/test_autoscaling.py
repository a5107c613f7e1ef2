"""Autoscaling under a real load step: 1 → 32 concurrent clients → 1, against a real server.

A target tracking policy (on SageMakerVariantInvocationsPerInstance, and on the instances'
CPUUtilization) scales the variant out while the load is high and back in once it is low,
between MinCapacity and MaxCapacity, with no failed request, and DescribeScalingActivities
tells the story. Policies are evaluated every second (``SHIPWAY_AUTOSCALING_INTERVAL_SECONDS``).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, start_server
from tests.integration.deploy import deploy
from tests.integration.rollouts import aws

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    running = start_server(
        tmp_path_factory.mktemp("autoscaling") / "home",
        env={"SHIPWAY_AUTOSCALING_INTERVAL_SECONDS": "1"},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    return models.train_sklearn(tmp_path_factory.mktemp("model"))


RATE = 25.0
"""Requests per second of one client (a user with think time, not a closed loop): 32 clients
ask 32 times what one does, whatever the machine's speed."""


class Load:
    """Clients invoking an endpoint at ``RATE`` requests a second each, on kept-alive
    connections; every answer's status is counted. ``clients(n)`` changes how many run."""

    def __init__(self, server: ShipwayServer, endpoint: str, body: bytes) -> None:
        self._port = server.port
        self._path = f"/endpoints/{endpoint}/invocations"
        self._body = body
        self._threads: list[tuple[threading.Thread, threading.Event]] = []
        self._lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []

    def total(self) -> int:
        with self._lock:
            return sum(self.statuses.values())

    def clients(self, count: int) -> None:
        while len(self._threads) < count:
            stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(stop,), daemon=True)
            thread.start()
            self._threads.append((thread, stop))
        while len(self._threads) > count:
            thread, stop = self._threads.pop()
            stop.set()
            thread.join()

    def _run(self, stop: threading.Event) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
        headers = {"Content-Type": "application/json"}
        due = time.monotonic()
        while not stop.is_set():
            due += 1 / RATE
            if (wait := due - time.monotonic()) > 0:
                stop.wait(wait)
            try:
                connection.request("POST", self._path, self._body, headers)
                response = connection.getresponse()
                text = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.errors.append(repr(exc))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
                continue
            with self._lock:
                self.statuses[status] += 1
                if status != 200:
                    self.errors.append(f"{status} {text[:200]!r}")
        connection.close()


def capacity(sagemaker: Any, endpoint: str) -> int:
    variant = sagemaker.describe_endpoint(EndpointName=endpoint)["ProductionVariants"][0]
    return int(variant["DesiredInstanceCount"])


def until(
    condition: Callable[[], bool], timeout: float, what: str, story: Callable[[], str]
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s; the activities:\n{story()}")


def step_load(
    server: ShipwayServer,
    endpoint: str,
    model: models.Trained,
    policy: Callable[[float, float], dict[str, Any]],
    low_clients: int = 1,
) -> tuple[list[dict[str, Any]], Load]:
    """Register the variant (1..3 instances), run 1 client, put the policy (made from that
    client's invocations per minute and the instance's CPU utilization), run 32 clients until
    the variant has scaled out and its instances serve, then ``low_clients`` until it is back
    at one. The activities, newest first, and the load."""
    autoscaling = aws(server.url, "application-autoscaling")
    sagemaker = aws(server.url, "sagemaker")
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{endpoint}/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    autoscaling.register_scalable_target(**target, MinCapacity=1, MaxCapacity=3)
    load = Load(server, endpoint, json.dumps(model.rows[:1].tolist()).encode())

    def story() -> str:
        listed = autoscaling.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=target["ResourceId"]
        )["ScalingActivities"]
        return "\n".join(f"{a['StatusCode']}: {a['Description']} ({a['Cause']})" for a in listed)

    try:
        load.clients(1)
        time.sleep(1)
        before, started = load.total(), time.monotonic()
        time.sleep(4)
        per_minute = (load.total() - before) / (time.monotonic() - started) * 60
        cpu = recent_cpu(server, endpoint, seconds=4)
        autoscaling.put_scaling_policy(
            **target,
            PolicyName="step",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                **policy(per_minute, cpu),
                "ScaleOutCooldown": 5,
                "ScaleInCooldown": 5,
            },
        )
        time.sleep(3)
        assert capacity(sagemaker, endpoint) == 1, story()
        load.clients(32)
        until(lambda: capacity(sagemaker, endpoint) >= 2, 60, "scale out", story)
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        time.sleep(2)  # the added instances serve under load
        load.clients(low_clients)
        until(lambda: capacity(sagemaker, endpoint) == 1, 120, "scale in", story)
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        time.sleep(1)  # requests still flowing while the last instances drained
    finally:
        load.clients(0)
    activities = autoscaling.describe_scaling_activities(
        ServiceNamespace="sagemaker", ResourceId=target["ResourceId"]
    )["ScalingActivities"]
    return activities, load


def recent_cpu(server: ShipwayServer, endpoint: str, seconds: int) -> float:
    """The variant's average CPUUtilization over the last seconds, from CloudWatch."""
    now = datetime.now(UTC)
    points = aws(server.url, "cloudwatch").get_metric_statistics(
        Namespace="/aws/sagemaker/Endpoints",
        MetricName="CPUUtilization",
        Dimensions=[
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        StartTime=now - timedelta(seconds=seconds),
        EndTime=now,
        Period=1,
        Statistics=["Average"],
    )["Datapoints"]
    assert points, "no CPUUtilization datapoints"
    return sum(p["Average"] for p in points) / len(points)


def check_story(activities: list[dict[str, Any]], load: Load) -> None:
    assert load.errors == [], load.errors[:5]
    assert set(load.statuses) == {200}
    assert load.statuses[200] > 100
    # oldest first; AWS's wording: "Setting desired instance count to 2."
    successful = [a for a in reversed(activities) if a["StatusCode"] == "Successful"]
    out = [a for a in successful if int(a["Description"].rstrip(".").split()[-1]) >= 2]
    back = [a for a in successful if a["Description"].endswith(" to 1.")]
    assert out, activities
    assert back, activities
    assert successful.index(out[0]) < successful.index(back[-1])
    for activity in (out[0], back[-1]):
        assert "monitor alarm" in activity["Cause"] or "metric" in activity["Cause"], activity
        assert activity["EndTime"] >= activity["StartTime"]


@pytest.mark.slow(seconds=35)
def test_invocations_per_instance_scales_out_under_a_load_step_and_back_in(
    server: ShipwayServer, model: models.Trained
) -> None:
    deploy(server, "as-invocations", str(model.folder), model.image)
    activities, load = step_load(
        server,
        "as-invocations",
        model,
        lambda one_client, _cpu: {
            # per instance per minute: one client stays under it on one instance (scale in
            # needs 90 % of it), 32 are ten times over it
            "TargetValue": round(one_client * 3),
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
        },
    )
    check_story(activities, load)


@pytest.mark.slow(seconds=35)
def test_cpu_utilization_scales_out_under_a_load_step_and_back_in(
    server: ShipwayServer, model: models.Trained
) -> None:
    deploy(server, "as-cpu", str(model.folder), model.image)
    activities, load = step_load(
        server,
        "as-cpu",
        model,
        lambda _one_client, cpu: {
            # three times what one client costs: 32 cost far more
            "TargetValue": round(max(cpu * 3, 5.0), 1),
            "CustomizedMetricSpecification": {
                "MetricName": "CPUUtilization",
                "Namespace": "/aws/sagemaker/Endpoints",
                "Dimensions": [
                    {"Name": "EndpointName", "Value": "as-cpu"},
                    {"Name": "VariantName", "Value": "AllTraffic"},
                ],
                "Statistic": "Average",
                "Unit": "Percent",
            },
        },
    )
    check_story(activities, load)


def test_a_step_policy_scales_while_its_alarm_is_in_alarm(
    server: ShipwayServer, model: models.Trained
) -> None:
    """Step scaling driven by a CloudWatch alarm on the user's own metric (a queue's depth put
    with PutMetricData): +1 instance per alarm period while the alarm is in ALARM, up to Max;
    nothing once it is OK again."""
    deploy(server, "as-steps", str(model.folder), model.image)
    autoscaling = aws(server.url, "application-autoscaling")
    cloudwatch = aws(server.url, "cloudwatch")
    sagemaker = aws(server.url, "sagemaker")
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/as-steps/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    autoscaling.register_scalable_target(**target, MinCapacity=1, MaxCapacity=3)
    policy = autoscaling.put_scaling_policy(
        **target,
        PolicyName="backlog",
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
            "Cooldown": 0,
        },
    )
    depth = {"Namespace": "Shop/Orders", "MetricName": "QueueDepth"}
    cloudwatch.put_metric_alarm(
        AlarmName="orders-backlog",
        **depth,
        Statistic="Maximum",
        Period=10,
        EvaluationPeriods=1,
        Threshold=100.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[policy["PolicyARN"]],
    )
    stop = threading.Event()

    def report_depth(value: float) -> None:
        while not stop.is_set():
            cloudwatch.put_metric_data(**{"Namespace": depth["Namespace"]}, MetricData=[
                {"MetricName": depth["MetricName"], "Value": value}])  # fmt: skip
            stop.wait(1.0)

    reporter = threading.Thread(target=report_depth, args=(500.0,))
    reporter.start()
    try:
        started = time.monotonic()
        until(lambda: capacity(sagemaker, "as-steps") == 2, 40, "a first step", lambda: "")
        until(lambda: capacity(sagemaker, "as-steps") == 3, 40, "a second step", lambda: "")
        assert time.monotonic() - started >= 10  # one step per alarm period, not per interval
    finally:
        stop.set()
        reporter.join()
    time.sleep(3)
    assert capacity(sagemaker, "as-steps") == 3  # at Max: no more
    activities = autoscaling.describe_scaling_activities(
        ServiceNamespace="sagemaker", ResourceId=target["ResourceId"]
    )["ScalingActivities"]
    steps = [a for a in activities if a["StatusCode"] == "Successful"]
    assert [a["Description"] for a in reversed(steps)][-2:] == [
        "Setting desired instance count to 2.",
        "Setting desired instance count to 3.",
    ], activities
    assert "orders-backlog in state ALARM triggered policy backlog" in steps[0]["Cause"]
