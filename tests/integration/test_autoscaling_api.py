"""boto3's own ``application-autoscaling`` client, unchanged, against a real ``shipway server``
with real scikit-learn endpoints: every operation, the alarms target tracking makes (seen
through boto3's ``cloudwatch``), the AWS error of each bad input (and nothing changed), the
REST API's view, and targets and policies that outlive a ``kill -9`` of the server."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from tests.fixtures.models import Trained, train_sklearn
from tests.fixtures.server import ShipwayServer, start_server
from tests.integration.deploy import deploy
from tests.integration.rollouts import wait_until

INSTANCES = "sagemaker:variant:DesiredInstanceCount"
ORDERS = "endpoint/orders/variant/AllTraffic"
ENV = {"SHIPWAY_AUTOSCALING_INTERVAL_SECONDS": "1"}
ROLE = (
    "arn:aws:iam::123456789012:role/aws-service-role/sagemaker.application-autoscaling."
    "amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)
INVOCATIONS = {
    "TargetValue": 70.0,
    "PredefinedMetricSpecification": {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    },
}


def client(url: str, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-checked-when-auth-is-off",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train_sklearn(tmp_path_factory.mktemp("model") / "breast-cancer")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: Trained) -> Iterator[ShipwayServer]:
    running = start_server(tmp_path_factory.mktemp("autoscaling") / "home", ENV)
    try:
        deploy(running, "orders", str(model.folder), model.image)
        deploy(
            running,
            "canary",
            str(model.folder),
            model.image,
            variants=[("Blue", 1, 1.0), ("Green", 1, 1.0)],
        )
        yield running
    finally:
        running.stop()
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture(scope="module")
def autoscaling(server: ShipwayServer) -> Any:
    return client(server.url, "application-autoscaling")


@pytest.fixture(scope="module")
def cloudwatch(server: ShipwayServer) -> Any:
    return client(server.url, "cloudwatch")


def target(resource_id: str = ORDERS, **fields: Any) -> dict[str, Any]:
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource_id,
        "ScalableDimension": INSTANCES,
        **fields,
    }


def desired(server: ShipwayServer, name: str = "orders") -> tuple[int, int]:
    """The first variant's desired and current instance counts."""
    with server.client() as http:
        variant = http.get(f"/api/endpoints/{name}").json()["ProductionVariants"][0]
    return variant["DesiredInstanceCount"], variant["CurrentInstanceCount"]


def everything(autoscaling: Any, cloudwatch: Any) -> tuple[Any, ...]:
    """What a refused request must leave as it was: targets, policies, alarms."""
    targets = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")
    policies = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")
    alarms = cloudwatch.describe_alarms()["MetricAlarms"]
    return (
        targets["ScalableTargets"],
        policies["ScalingPolicies"],
        sorted(a["AlarmName"] for a in alarms),
    )


def test_register_describe_and_clamp_the_capacity(server: ShipwayServer, autoscaling: Any) -> None:
    registered = autoscaling.register_scalable_target(**target(MinCapacity=1, MaxCapacity=3))
    arn = registered["ScalableTargetARN"]
    assert arn.startswith("arn:aws:application-autoscaling:us-east-1:123456789012:scalable-target/")

    [found] = autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[ORDERS]
    )["ScalableTargets"]
    assert found["ResourceId"] == ORDERS
    assert found["ScalableDimension"] == INSTANCES
    assert (found["MinCapacity"], found["MaxCapacity"]) == (1, 3)
    assert found["RoleARN"] == ROLE
    assert found["ScalableTargetARN"] == arn
    assert found["SuspendedState"] == {
        "DynamicScalingInSuspended": False,
        "DynamicScalingOutSuspended": False,
        "ScheduledScalingSuspended": False,
    }
    assert found["CreationTime"].year >= 2024

    # raising MinCapacity above the desired count scales the variant out to it
    again = autoscaling.register_scalable_target(**target(MinCapacity=2))
    assert again["ScalableTargetARN"] == arn
    assert desired(server)[0] == 2
    described = server.wait_for_endpoint("orders")
    assert described["EndpointStatus"] == "InService"
    assert desired(server) == (2, 2)
    activity = autoscaling.describe_scaling_activities(
        ServiceNamespace="sagemaker", ResourceId=ORDERS
    )["ScalingActivities"][0]  # the newest
    assert activity["StatusCode"] == "Successful"
    assert activity["Cause"] == "minimum capacity was set to 2"
    assert activity["Description"] == "Setting desired instance count to 2."
    assert activity["StatusMessage"].startswith("Successfully set desired instance count to 2.")
    assert activity["ResourceId"] == ORDERS


def test_target_tracking_makes_its_cloudwatch_alarms(
    server: ShipwayServer, autoscaling: Any, cloudwatch: Any
) -> None:
    autoscaling.register_scalable_target(**target(MinCapacity=1, MaxCapacity=3))
    put = autoscaling.put_scaling_policy(
        PolicyName="invocations",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={**INVOCATIONS, "ScaleInCooldown": 60},
        **target(),
    )
    policy_arn = put["PolicyARN"]
    assert policy_arn.startswith("arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:")
    assert policy_arn.endswith(f":resource/sagemaker/{ORDERS}:policyName/invocations")
    names = [a["AlarmName"] for a in put["Alarms"]]
    assert names[0].startswith(f"TargetTracking-{ORDERS}-AlarmHigh-")
    assert names[1].startswith(f"TargetTracking-{ORDERS}-AlarmLow-")

    alarms = {
        a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    }
    high, low = alarms[names[0]], alarms[names[1]]
    assert high["AlarmArn"] == put["Alarms"][0]["AlarmARN"]
    assert (high["Namespace"], high["MetricName"], high["Statistic"]) == (
        "AWS/SageMaker",
        "InvocationsPerInstance",
        "Sum",
    )
    assert high["Dimensions"] == [
        {"Name": "EndpointName", "Value": "orders"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    # policies are evaluated every second here: 10-second periods, the per-minute target
    # scaled to them (70 a minute = 11.67 per 10 s)
    assert (high["ComparisonOperator"], high["Period"], high["EvaluationPeriods"]) == (
        "GreaterThanThreshold",
        10,
        3,
    )
    assert high["Threshold"] == pytest.approx(70 / 6)
    assert (low["ComparisonOperator"], low["EvaluationPeriods"]) == ("LessThanThreshold", 15)
    assert low["Threshold"] == pytest.approx(0.9 * 70 / 6)
    assert high["AlarmActions"] == low["AlarmActions"] == [policy_arn]

    [policy] = autoscaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=ORDERS, PolicyNames=["invocations"]
    )["ScalingPolicies"]
    assert policy["PolicyARN"] == policy_arn
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"] == {
        **INVOCATIONS,
        "ScaleInCooldown": 60,
    }
    assert policy["Alarms"] == put["Alarms"]

    # replaced: new alarms, the old ones gone, the same ARN
    replaced = autoscaling.put_scaling_policy(
        PolicyName="invocations",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={**INVOCATIONS, "TargetValue": 120.0},
        **target(),
    )
    assert replaced["PolicyARN"] == policy_arn
    new_names = [a["AlarmName"] for a in replaced["Alarms"]]
    assert set(new_names).isdisjoint(names)
    assert cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"] == []
    assert len(cloudwatch.describe_alarms(AlarmNames=new_names)["MetricAlarms"]) == 2

    autoscaling.delete_scaling_policy(PolicyName="invocations", **target())
    assert cloudwatch.describe_alarms(AlarmNames=new_names)["MetricAlarms"] == []
    assert (
        autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=ORDERS)[
            "ScalingPolicies"
        ]
        == []
    )
    with pytest.raises(autoscaling.exceptions.ObjectNotFoundException):
        autoscaling.delete_scaling_policy(PolicyName="invocations", **target())


def test_a_customized_metric_and_step_scaling(
    server: ShipwayServer, autoscaling: Any, cloudwatch: Any
) -> None:
    autoscaling.register_scalable_target(**target(MinCapacity=1, MaxCapacity=3))
    cpu = autoscaling.put_scaling_policy(
        PolicyName="cpu",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 50.0,
            "CustomizedMetricSpecification": {
                "Namespace": "/aws/sagemaker/Endpoints",
                "MetricName": "CPUUtilization",
                "Dimensions": [
                    {"Name": "EndpointName", "Value": "orders"},
                    {"Name": "VariantName", "Value": "AllTraffic"},
                ],
                "Statistic": "Average",
            },
            "DisableScaleIn": True,
        },
        **target(),
    )
    [high] = cloudwatch.describe_alarms(AlarmNames=[a["AlarmName"] for a in cpu["Alarms"]])[
        "MetricAlarms"
    ]  # DisableScaleIn: no AlarmLow
    assert (high["Namespace"], high["MetricName"], high["Statistic"], high["Threshold"]) == (
        "/aws/sagemaker/Endpoints",
        "CPUUtilization",
        "Average",
        50.0,
    )

    steps = autoscaling.put_scaling_policy(
        PolicyName="steps",
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "StepAdjustments": [
                {"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 100.0,
                 "ScalingAdjustment": 1},
                {"MetricIntervalLowerBound": 100.0, "ScalingAdjustment": 2},
            ],
            "Cooldown": 30,
        },
        **target(),
    )  # fmt: skip
    assert steps["Alarms"] == []
    cloudwatch.put_metric_alarm(
        AlarmName="orders-busy",
        MetricName="Invocations",
        Namespace="AWS/SageMaker",
        Statistic="Sum",
        Dimensions=[{"Name": "EndpointName", "Value": "orders"}],
        Period=60,
        EvaluationPeriods=1,
        Threshold=1000.0,
        ComparisonOperator="GreaterThanThreshold",
        AlarmActions=[steps["PolicyARN"]],
    )
    described = autoscaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", PolicyNames=["steps", "cpu"]
    )["ScalingPolicies"]
    assert [p["PolicyName"] for p in described] == ["cpu", "steps"]
    assert [a["AlarmName"] for a in described[1]["Alarms"]] == ["orders-busy"]
    assert described[1]["StepScalingPolicyConfiguration"]["Cooldown"] == 30

    for name in ("cpu", "steps"):
        autoscaling.delete_scaling_policy(PolicyName=name, **target())
    # the user's alarm stays; the one target tracking made is gone
    remaining = {a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert "orders-busy" in remaining
    assert not remaining & {a["AlarmName"] for a in cpu["Alarms"]}
    cloudwatch.delete_alarms(AlarmNames=["orders-busy"])


@pytest.mark.parametrize(
    ("call", "fields", "error", "fragment"),
    [
        ("register_scalable_target",
         target("endpoint/nope/variant/AllTraffic", MinCapacity=1, MaxCapacity=2),
         "ValidationException", "endpoint/nope\" of ResourceId"),
        ("register_scalable_target",
         target("endpoint/orders/variant/Nope", MinCapacity=1, MaxCapacity=2),
         "ValidationException", "Variant Nope of ResourceId"),
        ("register_scalable_target", target(MinCapacity=3, MaxCapacity=2),
         "ValidationException", "MinCapacity (3) must be less than or equal to MaxCapacity (2)"),
        ("register_scalable_target", target("service/cluster/web", MinCapacity=1, MaxCapacity=2),
         "ValidationException", "Unsupported resource ID"),
        ("register_scalable_target",
         {**target(MinCapacity=1, MaxCapacity=2), "ServiceNamespace": "ecs"},
         "ValidationException", "serviceNamespace"),
        ("put_scaling_policy",
         {**target(), "PolicyName": "p", "PolicyType": "TargetTrackingScaling",
          "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 1.0,
          "PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget"}}},
         "ValidationException", "predefinedMetricType"),
        ("put_scaling_policy",
         {**target("endpoint/canary/variant/Green"), "PolicyName": "p",
          "PolicyType": "TargetTrackingScaling",
          "TargetTrackingScalingPolicyConfiguration": INVOCATIONS},
         "ObjectNotFoundException", "No scalable target registered"),
        ("put_scaling_policy",
         {**target(), "PolicyName": "p", "PolicyType": "PredictiveScaling",
          "PredictiveScalingPolicyConfiguration": {"MetricSpecifications": []}},
         "ValidationException", "PredictiveScaling is not supported"),
        ("deregister_scalable_target", target("endpoint/canary/variant/Green"),
         "ObjectNotFoundException", "No scalable target registered"),
        ("describe_scaling_activities", {"ServiceNamespace": "sagemaker", "NextToken": "nope"},
         "InvalidNextTokenException", "Invalid NextToken"),
        ("describe_scaling_policies", {"ServiceNamespace": "sagemaker", "MaxResults": 11},
         "ValidationException", "maxResults"),
    ],
)  # fmt: skip
def test_bad_input_is_the_aws_error_and_changes_nothing(
    server: ShipwayServer,
    autoscaling: Any,
    cloudwatch: Any,
    call: str,
    fields: dict[str, Any],
    error: str,
    fragment: str,
) -> None:
    autoscaling.register_scalable_target(**target(MinCapacity=1, MaxCapacity=3))
    before = everything(autoscaling, cloudwatch)
    capacity = desired(server)[0]

    with pytest.raises(getattr(autoscaling.exceptions, error)) as caught:
        getattr(autoscaling, call)(**fields)

    assert fragment in caught.value.response["Error"]["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert everything(autoscaling, cloudwatch) == before
    assert desired(server)[0] == capacity


def test_paginators_walk_every_page(autoscaling: Any) -> None:
    for variant in ("Blue", "Green"):
        autoscaling.register_scalable_target(
            **target(f"endpoint/canary/variant/{variant}", MinCapacity=1, MaxCapacity=2)
        )
    blue = target("endpoint/canary/variant/Blue")
    for i in range(12):
        autoscaling.put_scaling_policy(
            PolicyName=f"step-{i:02}",
            PolicyType="StepScaling",
            StepScalingPolicyConfiguration={
                "AdjustmentType": "ExactCapacity",
                "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 2}],
            },
            **blue,
        )

    pages = list(
        autoscaling.get_paginator("describe_scalable_targets").paginate(
            ServiceNamespace="sagemaker", PaginationConfig={"PageSize": 1}
        )
    )
    found = [t["ResourceId"] for page in pages for t in page["ScalableTargets"]]
    assert {"endpoint/canary/variant/Blue", "endpoint/canary/variant/Green"} <= set(found)
    assert len(found) == len(set(found)) == len(pages)

    pages = list(
        autoscaling.get_paginator("describe_scaling_policies").paginate(
            ServiceNamespace="sagemaker", ResourceId=blue["ResourceId"]
        )
    )
    assert [len(p["ScalingPolicies"]) for p in pages] == [10, 2]  # 10 a page by default
    assert [p["PolicyName"] for page in pages for p in page["ScalingPolicies"]] == [
        f"step-{i:02}" for i in range(12)
    ]
    autoscaling.deregister_scalable_target(**blue)
    assert (
        autoscaling.describe_scaling_policies(
            ServiceNamespace="sagemaker", ResourceId=blue["ResourceId"]
        )["ScalingPolicies"]
        == []
    )
    with pytest.raises(autoscaling.exceptions.ObjectNotFoundException):
        autoscaling.deregister_scalable_target(**blue)


def test_the_rest_api_shows_the_same_scaling(server: ShipwayServer, autoscaling: Any) -> None:
    green = "endpoint/canary/variant/Green"
    with server.client() as http:
        assert http.get("/api/endpoints/canary/variants/Green/scaling").status_code in (200, 404)
        registered = http.put(
            "/api/endpoints/canary/variants/Green/scaling",
            json={"MinCapacity": 1, "MaxCapacity": 2},
        )
        assert registered.status_code == 200, registered.text
        assert registered.json()["ResourceId"] == green
        put = http.put(
            "/api/endpoints/canary/variants/Green/scaling/policies/busy",
            json={
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": INVOCATIONS,
            },
        )
        assert put.status_code == 200, put.text
        assert len(put.json()["Alarms"]) == 2
        [policy] = autoscaling.describe_scaling_policies(
            ServiceNamespace="sagemaker", ResourceId=green
        )["ScalingPolicies"]
        assert policy["PolicyARN"] == put.json()["PolicyARN"]

        view = http.get("/api/endpoints/canary/scaling").json()
        [variant] = [v for v in view["Variants"] if v["VariantName"] == "Green"]
        assert variant["DesiredCapacity"] == 1
        assert [a["StateValue"] for a in variant["Alarms"]] == ["INSUFFICIENT_DATA"] * 2

        missing = http.put(
            "/api/endpoints/canary/variants/Green/scaling/policies/bad",
            json={"PolicyType": "TargetTrackingScaling"},
        )
        assert missing.status_code == 400
        assert missing.json()["code"] == "ValidationException"
        unknown = http.get("/api/endpoints/nope/scaling")
        assert unknown.status_code == 404
        assert http.get("/api/endpoints/canary/variants/Blue/scaling/policies/x").status_code == 404

        assert (
            http.delete("/api/endpoints/canary/variants/Green/scaling/policies/busy").status_code
            == 204
        )
        assert http.delete("/api/endpoints/canary/variants/Green/scaling").status_code == 204
        gone = http.get("/api/endpoints/canary/variants/Green/scaling")
        assert gone.status_code == 404
        assert gone.json()["code"] == "ObjectNotFoundException"
        activities = http.get("/api/endpoints/orders/scaling/activities")
        assert activities.status_code == 200
        assert all(a["ResourceId"] == ORDERS for a in activities.json()["ScalingActivities"])
        of_variant = http.get("/api/endpoints/orders/variants/AllTraffic/scaling/activities")
        assert of_variant.status_code == 200
        assert of_variant.json() == activities.json()
        unknown = http.get("/api/endpoints/nowhere/variants/AllTraffic/scaling/activities")
        assert unknown.status_code == 404


def test_deleting_an_endpoint_forgets_its_scaling(
    server: ShipwayServer, model: Trained, autoscaling: Any, cloudwatch: Any
) -> None:
    deploy(server, "brief", str(model.folder), model.image)
    brief = target("endpoint/brief/variant/AllTraffic")
    autoscaling.register_scalable_target(**brief, MinCapacity=1, MaxCapacity=2)
    put = autoscaling.put_scaling_policy(
        PolicyName="p",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=INVOCATIONS,
        **brief,
    )
    names = [a["AlarmName"] for a in put["Alarms"]]

    with server.client() as http:
        assert http.delete("/api/endpoints/brief").status_code == 204

    def forgotten() -> bool:
        targets = autoscaling.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[brief["ResourceId"]]
        )["ScalableTargets"]
        return not targets

    wait_until(forgotten, 30, "the deleted endpoint's target to go")
    assert cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"] == []
    assert (
        autoscaling.describe_scaling_policies(
            ServiceNamespace="sagemaker", ResourceId=brief["ResourceId"]
        )["ScalingPolicies"]
        == []
    )


def test_targets_policies_and_capacity_survive_kill_9(tmp_path: Path, model: Trained) -> None:
    home = tmp_path / "home"
    server = start_server(home, ENV)
    try:
        deploy(server, "orders", str(model.folder), model.image)
        autoscaling = client(server.url, "application-autoscaling")
        autoscaling.register_scalable_target(**target(MinCapacity=2, MaxCapacity=4))
        server.wait_for_endpoint("orders")
        assert desired(server) == (2, 2)
        put = autoscaling.put_scaling_policy(
            PolicyName="invocations",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration=INVOCATIONS,
            **target(),
        )
        before = (
            autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"],
            autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"],
            autoscaling.describe_scaling_activities(ServiceNamespace="sagemaker")[
                "ScalingActivities"
            ],
        )
    finally:
        server.stop(signal.SIGKILL)

    server = start_server(home, ENV)
    try:
        autoscaling = client(server.url, "application-autoscaling")
        after = (
            autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"],
            autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"],
            autoscaling.describe_scaling_activities(ServiceNamespace="sagemaker")[
                "ScalingActivities"
            ],
        )
        assert after == before
        names = [a["AlarmName"] for a in put["Alarms"]]
        alarms = client(server.url, "cloudwatch").describe_alarms(AlarmNames=names)
        assert len(alarms["MetricAlarms"]) == 2
        # the endpoint is InService as stored; its two instances come back
        wait_until(lambda: desired(server) == (2, 2), 60, "both instances back in service")
        with server.client() as http:
            answer = http.post(
                "/endpoints/orders/invocations",
                json=model.rows.tolist(),
                headers={"Accept": "application/json"},
            )
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()
