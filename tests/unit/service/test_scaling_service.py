"""ScalingService over a real SQLite store, real endpoint and alarm services, a manual clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipway.domain.alarm import AlarmState, ComparisonOperator
from shipway.domain.async_inference import AsyncInferenceConfig
from shipway.domain.clock import ManualClock
from shipway.domain.endpoint import CreateEndpointInput, Endpoint, EndpointStatus
from shipway.domain.endpoint_config import CreateEndpointConfigInput
from shipway.domain.errors import (
    InvalidNextToken,
    ResourceLimitExceeded,
    ValidationError,
)
from shipway.domain.instance_types import InstanceTypeCatalog
from shipway.domain.model import CreateModelInput
from shipway.domain.names import Account
from shipway.domain.scaling import (
    DeleteScalingPolicyInput,
    DeregisterScalableTargetInput,
    DescribeScalableTargetsInput,
    DescribeScalingActivitiesInput,
    DescribeScalingPoliciesInput,
    ObjectNotFound,
    PutScalingPolicyInput,
    RegisterScalableTargetInput,
    ScalableDimension,
    ScalableTarget,
    ScalingActivityStatusCode,
)
from shipway.domain.shape import parse
from shipway.monitor.metrics import MetricsStore
from shipway.service import EndpointConfigService, EndpointService, ModelService
from shipway.service.alarms import AlarmService
from shipway.service.scaling import ScalingService
from shipway.store.artifacts import ArtifactStore
from shipway.store.metadata import MetadataStore

ACCOUNT = Account()
INSTANCES = "sagemaker:variant:DesiredInstanceCount"
CONCURRENCY = "sagemaker:variant:DesiredProvisionedConcurrency"
RESOURCE = "endpoint/orders/variant/AllTraffic"
ROLE = (
    "arn:aws:iam::123456789012:role/aws-service-role/sagemaker.application-autoscaling."
    "amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)


@dataclass
class Scaling:
    service: ScalingService
    store: MetadataStore
    alarms: AlarmService
    endpoints: EndpointService
    configs: EndpointConfigService
    clock: ManualClock
    changes: list[str]

    def endpoint(
        self,
        name: str = "orders",
        *variants: dict[str, Any],
        in_service: bool = True,
        **config: Any,
    ) -> None:
        request = parse(
            CreateEndpointConfigInput,
            {
                "EndpointConfigName": name,
                "ProductionVariants": list(variants) or [instance_variant()],
                **config,
            },
        )
        self.configs.create_endpoint_config(request)
        self.endpoints.create_endpoint(
            parse(CreateEndpointInput, {"EndpointName": name, "EndpointConfigName": name})
        )
        if in_service:
            self.set_status(name, EndpointStatus.IN_SERVICE)

    def set_status(self, name: str, status: EndpointStatus) -> None:
        """What the controller writes once the endpoint's instances are up."""

        def change(endpoint: Endpoint) -> Endpoint:
            return endpoint.model_copy(update={"endpoint_status": status})

        assert self.store.endpoints.update(name, change) is not None

    def register(self, resource_id: str = RESOURCE, **fields: Any) -> str | None:
        request = parse(
            RegisterScalableTargetInput,
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource_id,
                "ScalableDimension": INSTANCES,
                **fields,
            },
        )
        return self.service.register_scalable_target(request).scalable_target_arn

    def put_policy(
        self, name: str = "invocations", resource_id: str = RESOURCE, **fields: Any
    ) -> Any:
        document = {
            "PolicyName": name,
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource_id,
            "ScalableDimension": INSTANCES,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 70.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
            },
            **fields,
        }
        request = parse(PutScalingPolicyInput, {k: v for k, v in document.items() if v is not None})
        return self.service.put_scaling_policy(request)

    def target(self, resource_id: str = RESOURCE, dimension: str = INSTANCES) -> ScalableTarget:
        return self.service.describe_target(resource_id, ScalableDimension(dimension))

    def desired(self, name: str = "orders", variant: str = "AllTraffic") -> int:
        endpoint = self.store.endpoints.get(name)
        assert endpoint is not None
        return next(
            v.desired_instance_count for v in endpoint.variants if v.variant_name == variant
        )

    def activities(self, **fields: Any) -> list[Any]:
        request = parse(DescribeScalingActivitiesInput, {"ServiceNamespace": "sagemaker", **fields})
        return self.service.describe_scaling_activities(request).scaling_activities

    def alarm_names(self) -> list[str]:
        return [a.alarm_name for a in self.store.alarms.all()]


def instance_variant(name: str = "AllTraffic", count: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": "m",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": count,
        **fields,
    }


def serverless_variant(name: str = "AllTraffic", **serverless: Any) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": "m",
        "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 10, **serverless},
    }


@pytest.fixture
def scaling(tmp_path: Path) -> Iterator[Scaling]:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.joblib").write_bytes(b"not really a model")
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    clock = ManualClock()
    changes: list[str] = []
    models = ModelService(store, ArtifactStore(tmp_path / "cache"), ACCOUNT, clock)
    models.create_model(
        parse(
            CreateModelInput,
            {
                "ModelName": "m",
                "PrimaryContainer": {"Image": "sklearn", "ModelDataUrl": str(model_dir)},
            },
        )
    )
    alarms = AlarmService(store, MetricsStore(), clock, ACCOUNT)
    endpoints = EndpointService(store, ACCOUNT, clock, max_instances=8)
    service = ScalingService(
        store,
        alarms,
        clock,
        ACCOUNT,
        interval_seconds=60.0,
        max_instances=8,
        on_change=changes.append,
    )
    try:
        yield Scaling(
            service,
            store,
            alarms,
            endpoints,
            EndpointConfigService(store, InstanceTypeCatalog.load(), ACCOUNT, clock),
            clock,
            changes,
        )
    finally:
        store.close()


# --- RegisterScalableTarget --------------------------------------------------------------------


def test_register_a_variant_and_describe_it(scaling: Scaling) -> None:
    scaling.endpoint()
    arn = scaling.register(MinCapacity=1, MaxCapacity=4)

    assert arn is not None
    assert arn.startswith("arn:aws:application-autoscaling:us-east-1:123456789012:scalable-target/")
    assert len(arn.rsplit("/", 1)[1]) == 32
    target = scaling.target()
    assert (target.min_capacity, target.max_capacity) == (1, 4)
    assert target.role_arn == ROLE
    assert target.creation_time == scaling.clock.now()
    assert target.scalable_target_arn == arn
    assert scaling.service.targets() == [target]
    assert scaling.activities() == []  # 1 is within [1, 4]: nothing to clamp


def test_the_endpoint_name_matches_in_any_case_and_is_stored_as_created(scaling: Scaling) -> None:
    scaling.endpoint("Orders")
    scaling.register("endpoint/ORDERS/variant/AllTraffic", MinCapacity=1, MaxCapacity=2)

    assert scaling.target("endpoint/orders/variant/AllTraffic").resource_id == (
        "endpoint/Orders/variant/AllTraffic"
    )


@pytest.mark.parametrize(
    ("resource_id", "fields", "message"),
    [
        ("endpoint/nope/variant/AllTraffic", {}, "endpoint/nope\" of ResourceId"),
        ("endpoint/orders/variant/Nope", {}, "Variant Nope of ResourceId"),
        ("orders/AllTraffic", {}, "Unsupported resource ID"),
        (RESOURCE, {"MinCapacity": 3, "MaxCapacity": 2}, "MinCapacity (3) must be less"),
        (RESOURCE, {"MinCapacity": 0, "MaxCapacity": 2}, "must be >= 1 for a real-time"),
        (RESOURCE, {"MaxCapacity": 2}, "MinCapacity must be given"),
        (RESOURCE, {"MinCapacity": 1, "MaxCapacity": 2, "ScalableDimension": CONCURRENCY},
         "runs on instances"),
    ],
)  # fmt: skip
def test_bad_registrations_change_nothing(
    scaling: Scaling, resource_id: str, fields: dict[str, Any], message: str
) -> None:
    scaling.endpoint()
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scaling.register(resource_id, **fields)
    assert scaling.service.targets() == []
    assert scaling.desired() == 1


def test_a_shadow_variant_is_not_scalable(scaling: Scaling) -> None:
    scaling.endpoint(
        "orders",
        instance_variant(),
        ShadowProductionVariants=[instance_variant("Shadow")],
    )
    with pytest.raises(ValidationError, match="is a shadow variant"):
        scaling.register("endpoint/orders/variant/Shadow", MinCapacity=1, MaxCapacity=2)


def test_an_async_endpoint_may_scale_to_zero(scaling: Scaling) -> None:
    scaling.endpoint()
    with pytest.raises(ValidationError, match="must be >= 1"):
        scaling.register(MinCapacity=0, MaxCapacity=3)

    def asynchronous(endpoint: Endpoint) -> Endpoint:
        async_config = AsyncInferenceConfig.model_validate(
            {"OutputConfig": {"S3OutputPath": "s3://b/o"}}
        )
        config = endpoint.config.model_copy(update={"async_inference_config": async_config})
        return endpoint.model_copy(update={"config": config})

    scaling.store.endpoints.update("orders", asynchronous)
    scaling.register(MinCapacity=0, MaxCapacity=3)
    assert scaling.target().min_capacity == 0


def test_an_update_changes_the_given_fields_and_clamps_the_capacity(scaling: Scaling) -> None:
    scaling.endpoint()
    first = scaling.register(MinCapacity=1, MaxCapacity=4)
    created = scaling.target().creation_time
    scaling.clock.advance(10)

    again = scaling.register(MinCapacity=3, SuspendedState={"DynamicScalingInSuspended": True})

    assert again == first
    target = scaling.target()
    assert (target.min_capacity, target.max_capacity) == (3, 4)
    assert target.creation_time == created
    assert target.suspended_state is not None
    assert target.suspended_state.dynamic_scaling_in_suspended is True
    assert scaling.desired() == 3
    assert scaling.changes == ["orders"]
    endpoint = scaling.store.endpoints.get("orders")
    assert endpoint is not None
    assert endpoint.endpoint_status is EndpointStatus.UPDATING
    [activity] = scaling.activities()
    assert activity.status_code is ScalingActivityStatusCode.SUCCESSFUL
    assert activity.cause == "minimum capacity was set to 3"
    assert activity.description == "Setting desired instance count to 3."
    assert activity.status_message == (
        "Successfully set desired instance count to 3. Change successfully fulfilled by sagemaker."
    )

    scaling.register(SuspendedState={"DynamicScalingOutSuspended": True})
    suspended = scaling.target().suspended_state
    assert suspended is not None
    assert suspended.dynamic_scaling_in_suspended is True  # kept: not given this time
    assert suspended.dynamic_scaling_out_suspended is True
    with pytest.raises(ValidationError, match="MinCapacity"):
        scaling.register(MaxCapacity=2)  # below the stored MinCapacity 3
    assert scaling.target().max_capacity == 4


def test_a_clamp_while_a_deployment_runs_fails_and_says_why(scaling: Scaling) -> None:
    scaling.endpoint()
    scaling.set_status("orders", EndpointStatus.UPDATING)

    scaling.register(MinCapacity=2, MaxCapacity=4)

    assert scaling.target().min_capacity == 2  # registered all the same
    assert scaling.desired() == 1
    [activity] = scaling.activities()
    assert activity.status_code is ScalingActivityStatusCode.FAILED
    assert activity.status_message == (
        "Failed to set desired instance count to 2. Reason: endpoint orders is Updating; its "
        "variants scale only while it is InService."
    )


# --- serverless provisioned concurrency ----------------------------------------------------------


def test_provisioned_concurrency_of_a_serverless_variant(scaling: Scaling) -> None:
    scaling.endpoint("orders", serverless_variant(ProvisionedConcurrency=2))
    with pytest.raises(ValidationError, match="is serverless"):
        scaling.register(MinCapacity=1, MaxCapacity=2)
    with pytest.raises(
        ValidationError, match=r"must not exceed the variant's MaxConcurrency \(10\)"
    ):
        scaling.register(ScalableDimension=CONCURRENCY, MinCapacity=1, MaxCapacity=11)

    scaling.register(ScalableDimension=CONCURRENCY, MinCapacity=3, MaxCapacity=8)

    endpoint = scaling.store.endpoints.get("orders")
    assert endpoint is not None
    [state] = endpoint.variants
    assert state.desired_serverless_config is not None
    assert state.desired_serverless_config.provisioned_concurrency == 3
    assert state.desired_serverless_config.max_concurrency == 10
    [activity] = scaling.activities()
    assert activity.description == "Setting desired provisioned concurrency to 3."

    with pytest.raises(ValidationError, match="InvocationsPerInstance is for"):
        scaling.put_policy(ScalableDimension=CONCURRENCY)
    output = scaling.put_policy(
        ScalableDimension=CONCURRENCY,
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 0.7,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantProvisionedConcurrencyUtilization"
            },
        },
    )
    high = scaling.alarms.describe_alarm(output.alarms[0].alarm_name)
    assert high.metric_name == "ServerlessProvisionedConcurrencyUtilization"
    assert high.threshold == pytest.approx(0.7)  # a ratio: no per-minute scaling


def test_serverless_without_provisioned_concurrency_is_not_scalable(scaling: Scaling) -> None:
    scaling.endpoint("orders", serverless_variant())
    with pytest.raises(ValidationError, match="no ProvisionedConcurrency"):
        scaling.register(ScalableDimension=CONCURRENCY, MinCapacity=1, MaxCapacity=2)


# --- DescribeScalableTargets, DeregisterScalableTarget --------------------------------------------


def test_describe_pages_and_filters(scaling: Scaling) -> None:
    for i in range(3):
        scaling.endpoint(f"e{i}")
        scaling.register(f"endpoint/e{i}/variant/AllTraffic", MinCapacity=1, MaxCapacity=2)

    def describe(**fields: Any) -> tuple[list[str], str | None]:
        request = parse(DescribeScalableTargetsInput, {"ServiceNamespace": "sagemaker", **fields})
        output = scaling.service.describe_scalable_targets(request)
        return [t.resource_id for t in output.scalable_targets], output.next_token

    first, token = describe(MaxResults=2)
    assert first == ["endpoint/e0/variant/AllTraffic", "endpoint/e1/variant/AllTraffic"]
    assert token is not None
    assert describe(MaxResults=2, NextToken=token) == (["endpoint/e2/variant/AllTraffic"], None)
    assert describe(ResourceIds=["endpoint/E1/variant/AllTraffic"])[0] == [
        "endpoint/e1/variant/AllTraffic"
    ]
    assert describe(ScalableDimension=CONCURRENCY) == ([], None)
    with pytest.raises(InvalidNextToken):
        describe(NextToken="bm90IGEgdG9rZW4=")
    with pytest.raises(ValidationError):
        describe(MaxResults=51)


def test_deregister_deletes_the_policies_and_their_alarms(scaling: Scaling) -> None:
    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=4)
    scaling.put_policy()
    assert len(scaling.alarm_names()) == 2

    request = parse(
        DeregisterScalableTargetInput,
        {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE, "ScalableDimension": INSTANCES},
    )
    scaling.service.deregister_scalable_target(request)

    assert scaling.service.targets() == []
    assert scaling.alarm_names() == []
    with pytest.raises(ObjectNotFound, match="No scalable target registered"):
        scaling.service.deregister_scalable_target(request)


# --- PutScalingPolicy ---------------------------------------------------------------------------


def test_target_tracking_creates_its_alarms_as_aws_does(scaling: Scaling) -> None:
    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=4)

    output = scaling.put_policy()

    assert output.policy_arn.startswith("arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:")
    assert output.policy_arn.endswith(
        ":resource/sagemaker/endpoint/orders/variant/AllTraffic:policyName/invocations"
    )
    high_name, low_name = (a.alarm_name for a in output.alarms or [])
    assert high_name.startswith("TargetTracking-endpoint/orders/variant/AllTraffic-AlarmHigh-")
    assert low_name.startswith("TargetTracking-endpoint/orders/variant/AllTraffic-AlarmLow-")
    high = scaling.alarms.describe_alarm(high_name)
    low = scaling.alarms.describe_alarm(low_name)
    assert (high.namespace, high.metric_name, high.stat) == (
        "AWS/SageMaker",
        "InvocationsPerInstance",
        "Sum",
    )
    assert high.dimension_map == {"EndpointName": "orders", "VariantName": "AllTraffic"}
    assert high.comparison_operator is ComparisonOperator.GREATER_THAN
    assert (high.period, high.evaluation_periods, high.threshold) == (60, 3, 70.0)
    assert low.comparison_operator is ComparisonOperator.LESS_THAN
    assert (low.period, low.evaluation_periods) == (60, 15)
    assert low.threshold == pytest.approx(63.0)
    assert high.alarm_actions == low.alarm_actions == [output.policy_arn]
    assert high.alarm_arn == output.alarms[0].alarm_arn

    [policy] = scaling.service.policies(scaling.target())
    assert policy.policy_arn == output.policy_arn
    assert policy.alarms == output.alarms
    assert scaling.service.alarm_states(policy) == {
        high_name: AlarmState.INSUFFICIENT_DATA,
        low_name: AlarmState.INSUFFICIENT_DATA,
    }


def test_short_intervals_use_ten_second_periods_at_the_per_minute_rate(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    try:
        clock = ManualClock()
        alarms = AlarmService(store, MetricsStore(), clock, ACCOUNT)
        service = ScalingService(store, alarms, clock, ACCOUNT, interval_seconds=1.0)
        target = ScalableTarget(
            service_namespace="sagemaker",
            resource_id=RESOURCE,
            scalable_dimension=INSTANCES,
            min_capacity=1,
            max_capacity=2,
            role_arn=ROLE,
            creation_time=clock.now(),
        )
        from shipway.store.scaling import target_key

        store.scaling.upsert_target(
            target_key(parse_variant(RESOURCE), ScalableDimension(INSTANCES)), lambda _: target
        )
        request = parse(
            PutScalingPolicyInput,
            {
                "PolicyName": "p",
                "ServiceNamespace": "sagemaker",
                "ResourceId": RESOURCE,
                "ScalableDimension": INSTANCES,
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": 60.0,
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                    },
                    "DisableScaleIn": True,
                },
            },
        )
        output = service.put_scaling_policy(request)
        [high] = output.alarms or []  # no AlarmLow: the policy never scales in
        alarm = alarms.describe_alarm(high.alarm_name)
        assert alarm.period == 10
        assert alarm.threshold == pytest.approx(10.0)  # 60 a minute: 10 per 10 s
    finally:
        store.close()


def parse_variant(resource_id: str) -> Any:
    from shipway.domain.scaling import parse_resource_id

    return parse_resource_id(resource_id)


def test_a_customized_metric_is_alarmed_on_as_given(scaling: Scaling) -> None:
    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=4)
    output = scaling.put_policy(
        "cpu",
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
            "ScaleInCooldown": 120,
        },
    )
    high = scaling.alarms.describe_alarm((output.alarms or [])[0].alarm_name)
    assert (high.namespace, high.metric_name, high.stat, high.threshold) == (
        "/aws/sagemaker/Endpoints",
        "CPUUtilization",
        "Average",
        50.0,
    )


def test_replacing_a_policy_replaces_its_alarms_and_keeps_its_arn(scaling: Scaling) -> None:
    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=4)
    first = scaling.put_policy()
    created = scaling.service.policies(scaling.target())[0].creation_time
    scaling.clock.advance(5)

    second = scaling.put_policy(PolicyType=None, TargetTrackingScalingPolicyConfiguration={
        "TargetValue": 100.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        },
    })  # fmt: skip

    assert second.policy_arn == first.policy_arn
    old = {a.alarm_name for a in first.alarms or []}
    new = {a.alarm_name for a in second.alarms or []}
    assert old.isdisjoint(new)
    assert set(scaling.alarm_names()) == new
    [policy] = scaling.service.policies(scaling.target())
    assert policy.creation_time == created
    tracking = policy.target_tracking_scaling_policy_configuration
    assert tracking is not None
    assert tracking.target_value == 100.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"PolicyType": "PredictiveScaling", "TargetTrackingScalingPolicyConfiguration": None},
         "PredictiveScaling is not supported"),
        ({"PolicyType": None}, "PolicyType must be given"),
        ({"PolicyType": "StepScaling"}, "does not go with PolicyType StepScaling"),
        ({"TargetTrackingScalingPolicyConfiguration": {"TargetValue": 1.0,
          "PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget"}}},
         "enum value set"),
        ({"TargetTrackingScalingPolicyConfiguration": {"TargetValue": 1.0,
          "PredefinedMetricSpecification": {
              "PredefinedMetricType": "SageMakerVariantProvisionedConcurrencyUtilization"}}},
         "is for sagemaker:variant:DesiredProvisionedConcurrency"),
        ({"TargetTrackingScalingPolicyConfiguration": {"TargetValue": 1.0}},
         "exactly one of PredefinedMetricSpecification"),
    ],
)  # fmt: skip
def test_bad_policies_change_nothing(
    scaling: Scaling, fields: dict[str, Any], message: str
) -> None:
    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=4)
    with pytest.raises(ValidationError, match=message):
        scaling.put_policy(**fields)
    assert scaling.service.policies(scaling.target()) == []
    assert scaling.alarm_names() == []


def test_a_policy_on_an_unregistered_target_is_object_not_found(scaling: Scaling) -> None:
    scaling.endpoint()
    with pytest.raises(ObjectNotFound, match="No scalable target registered") as caught:
        scaling.put_policy()
    assert caught.value.code == "ObjectNotFoundException"
    assert scaling.alarm_names() == []


def steps(*bounds: tuple[float | None, float | None]) -> list[dict[str, Any]]:
    """Step adjustments of +1 over these (lower, upper) metric intervals."""
    made = []
    for lower, upper in bounds:
        step: dict[str, Any] = {"ScalingAdjustment": 1}
        if lower is not None:
            step["MetricIntervalLowerBound"] = lower
        if upper is not None:
            step["MetricIntervalUpperBound"] = upper
        made.append(step)
    return made


STEP = {
    "AdjustmentType": "ChangeInCapacity",
    "StepAdjustments": [
        {"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": -1},
        {"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 10.0, "ScalingAdjustment": 1},
        {"MetricIntervalLowerBound": 10.0, "ScalingAdjustment": 2},
    ],
    "Cooldown": 60,
}


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ({"StepAdjustments": steps((None, None))}, "cannot lack both"),
        ({"StepAdjustments": steps((0.0, 5.0), (6.0, None))}, "leave a gap"),
        ({"StepAdjustments": steps((0.0, 5.0), (4.0, None))}, "overlap"),
        ({"StepAdjustments": steps((0.0, 5.0))}, "positive MetricIntervalUpperBound"),
        ({"StepAdjustments": steps((-5.0, None))}, "negative MetricIntervalLowerBound"),
        ({"StepAdjustments": steps((1.0, None), (0.0, None))}, "At most one"),
        ({"StepAdjustments": steps((3.0, 1.0), (None, 3.0), (1.0, None))}, "must be less than"),
        ({"MinAdjustmentMagnitude": 2}, "only to AdjustmentType PercentChangeInCapacity"),
        ({"AdjustmentType": None}, "needs an AdjustmentType"),
        ({"AdjustmentType": "ExactCapacity"}, "must be >= 0"),
    ],
)  # fmt: skip
def test_step_scaling_follows_aws_step_rules(
    scaling: Scaling, steps: dict[str, Any], message: str
) -> None:
    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=4)
    configuration = {k: v for k, v in {**STEP, **steps}.items() if v is not None}
    with pytest.raises(ValidationError, match=message):
        scaling.put_policy(
            "steps",
            PolicyType="StepScaling",
            TargetTrackingScalingPolicyConfiguration=None,
            StepScalingPolicyConfiguration=configuration,
        )
    assert scaling.service.policies(scaling.target()) == []


def test_a_step_policy_lists_the_alarms_that_name_it(scaling: Scaling) -> None:
    from shipway.domain.alarm import PutMetricAlarmInput

    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=4)
    output = scaling.put_policy(
        "steps",
        PolicyType="StepScaling",
        TargetTrackingScalingPolicyConfiguration=None,
        StepScalingPolicyConfiguration=STEP,
    )
    assert output.alarms == []  # step scaling creates none: the user's alarms drive it
    for name, actions in (("busy", [output.policy_arn]), ("other", [output.policy_arn + "x"])):
        scaling.alarms.put_metric_alarm(
            parse(
                PutMetricAlarmInput,
                {
                    "AlarmName": name,
                    "MetricName": "Invocations",
                    "Namespace": "AWS/SageMaker",
                    "Statistic": "Sum",
                    "Period": 60,
                    "EvaluationPeriods": 1,
                    "Threshold": 100.0,
                    "ComparisonOperator": "GreaterThanThreshold",
                    "AlarmActions": actions,
                },
            )
        )
    [policy] = scaling.service.policies(scaling.target())
    assert [a.alarm_name for a in policy.alarms or []] == ["busy"]

    delete = parse(
        DeleteScalingPolicyInput,
        {
            "PolicyName": "steps",
            "ServiceNamespace": "sagemaker",
            "ResourceId": RESOURCE,
            "ScalableDimension": INSTANCES,
        },
    )
    scaling.service.delete_scaling_policy(delete)
    assert sorted(scaling.alarm_names()) == ["busy", "other"]  # the user's: kept
    with pytest.raises(ObjectNotFound, match="No scaling policy found"):
        scaling.service.delete_scaling_policy(delete)


def test_describe_scaling_policies_pages_ten_at_most(scaling: Scaling) -> None:
    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=4)
    for i in range(3):
        scaling.put_policy(
            f"p{i}",
            PolicyType="StepScaling",
            TargetTrackingScalingPolicyConfiguration=None,
            StepScalingPolicyConfiguration=STEP,
        )

    def describe(**fields: Any) -> tuple[list[str], str | None]:
        request = parse(DescribeScalingPoliciesInput, {"ServiceNamespace": "sagemaker", **fields})
        output = scaling.service.describe_scaling_policies(request)
        return [p.policy_name for p in output.scaling_policies], output.next_token

    names, token = describe(MaxResults=2)
    assert names == ["p0", "p1"]
    assert describe(MaxResults=2, NextToken=token) == (["p2"], None)
    assert describe(PolicyNames=["p1"], ResourceId=RESOURCE)[0] == ["p1"]
    assert describe(ResourceId="endpoint/other/variant/AllTraffic") == ([], None)
    with pytest.raises(ValidationError):
        describe(MaxResults=11)
    with pytest.raises(InvalidNextToken):
        describe(NextToken=token.replace("p", "q") if token else "x")


def test_policies_per_target_are_limited(scaling: Scaling) -> None:
    from shipway.service import scaling as module

    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=4)
    limit = module.MAX_POLICIES_PER_TARGET
    for i in range(limit):
        scaling.put_policy(
            f"p{i}",
            PolicyType="StepScaling",
            TargetTrackingScalingPolicyConfiguration=None,
            StepScalingPolicyConfiguration=STEP,
        )
    with pytest.raises(ResourceLimitExceeded, match="scaling policies"):
        scaling.put_policy(f"p{limit}")
    scaling.put_policy("p0")  # a replace is not a new policy


# --- set_capacity and activities ------------------------------------------------------------------


def test_set_capacity_writes_the_variant_and_records_the_story(scaling: Scaling) -> None:
    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=3)
    target = scaling.target()

    activity = scaling.service.set_capacity(
        target,
        5,
        cause="monitor alarm high in state ALARM",
        description="Setting desired instance count to 3.",
    )

    assert activity.status_code is ScalingActivityStatusCode.SUCCESSFUL
    assert scaling.desired() == 3  # clamped into [1, 3]
    assert scaling.service.current_capacity(target) == 3
    assert scaling.changes == ["orders"]

    # the endpoint is Updating until the controller has the instances: scaling waits
    again = scaling.service.set_capacity(target, 2, cause="c", description="d")
    assert again.status_code is ScalingActivityStatusCode.FAILED
    assert scaling.desired() == 3
    scaling.clock.advance(30)
    repeated = scaling.service.set_capacity(target, 2, cause="c", description="d")
    assert repeated.activity_id == again.activity_id  # the same decision: one activity
    assert repeated.start_time == again.start_time
    assert repeated.end_time == scaling.clock.now()

    scaling.set_status("orders", EndpointStatus.IN_SERVICE)
    same = scaling.service.set_capacity(target, 3, cause="c", description="d")
    assert same.not_scaled
    assert same.not_scaled_reasons is not None
    assert same.not_scaled_reasons[0].code == "AlreadyAtDesiredCapacity"
    assert same.not_scaled_reasons[0].current_capacity == 3

    shown = [a.activity_id for a in scaling.activities()]
    assert shown == [again.activity_id, activity.activity_id]  # newest first, no not-scaled
    everything = scaling.activities(IncludeNotScaledActivities=True)
    assert [a.activity_id for a in everything] == [same.activity_id, *shown]
    page = parse(
        DescribeScalingActivitiesInput,
        {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE, "MaxResults": 1},
    )
    first = scaling.service.describe_scaling_activities(page)
    assert [a.activity_id for a in first.scaling_activities] == [again.activity_id]
    rest = scaling.service.describe_scaling_activities(
        page.model_copy(update={"next_token": first.next_token})
    )
    assert [a.activity_id for a in rest.scaling_activities] == [activity.activity_id]
    assert rest.next_token is None


def test_set_capacity_respects_the_server_quota(scaling: Scaling) -> None:
    scaling.endpoint("big", instance_variant(count=6))
    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=5)
    target = scaling.target()

    activity = scaling.service.set_capacity(target, 5, cause="c", description="d")

    assert scaling.desired() == 2  # 6 + 2 = the quota of 8
    assert activity.status_code is ScalingActivityStatusCode.SUCCESSFUL
    assert "5 asked; the server allows 8 instances" in (activity.status_message or "")
    scaling.set_status("orders", EndpointStatus.IN_SERVICE)
    full = scaling.service.set_capacity(target, 5, cause="c", description="d")
    assert full.status_code is ScalingActivityStatusCode.FAILED
    assert "quota (8, SHIPWAY_MAX_INSTANCES) is used up" in (full.status_message or "")
    assert scaling.desired() == 2


def test_forget_an_endpoint_removes_its_scaling(scaling: Scaling) -> None:
    scaling.endpoint()
    scaling.endpoint("kept")
    scaling.register(MinCapacity=2, MaxCapacity=4)
    scaling.register("endpoint/kept/variant/AllTraffic", MinCapacity=1, MaxCapacity=4)
    scaling.put_policy()
    kept = scaling.put_policy(resource_id="endpoint/kept/variant/AllTraffic")

    scaling.service.forget_endpoint("ORDERS")

    assert [t.resource_id for t in scaling.service.targets()] == [
        "endpoint/kept/variant/AllTraffic"
    ]
    assert set(scaling.alarm_names()) == {a.alarm_name for a in kept.alarms or []}
    assert scaling.activities(IncludeNotScaledActivities=True) == []


def test_endpoint_scaling_at_a_glance(scaling: Scaling) -> None:
    scaling.endpoint()
    scaling.register(MinCapacity=1, MaxCapacity=4)
    output = scaling.put_policy()
    view = scaling.service.endpoint_scaling("orders")
    [variant] = view.variants
    assert variant.variant_name == "AllTraffic"
    assert variant.desired_capacity == 1
    assert [p.policy_name for p in variant.scaling_policies] == ["invocations"]
    assert [(a.alarm_name, a.state_value) for a in variant.alarms] == [
        (a.alarm_name, "INSUFFICIENT_DATA") for a in output.alarms or []
    ]


def test_a_store_reopened_keeps_targets_policies_and_activities(
    scaling: Scaling, tmp_path: Path
) -> None:
    scaling.endpoint()
    scaling.register(MinCapacity=2, MaxCapacity=4)
    scaling.put_policy()
    before = (scaling.service.targets(), scaling.service.policies(scaling.target()))

    reopened = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    try:
        clock = ManualClock()
        service = ScalingService(
            reopened, AlarmService(reopened, MetricsStore(), clock, ACCOUNT), clock, ACCOUNT
        )
        assert (service.targets(), service.policies(before[0][0])) == before
        assert len(reopened.scaling.activities()[0]) == 1
    finally:
        reopened.close()


def test_the_scaling_of_endpoints_gone_meanwhile_is_forgotten(scaling: Scaling) -> None:
    """A server that stopped between an endpoint's removal and forgetting its scaling: the
    next start forgets it."""
    scaling.endpoint()
    scaling.endpoint("kept")
    scaling.register(MinCapacity=1, MaxCapacity=4)
    scaling.register("endpoint/kept/variant/AllTraffic", MinCapacity=1, MaxCapacity=4)
    scaling.put_policy()
    kept = scaling.put_policy(resource_id="endpoint/kept/variant/AllTraffic")
    scaling.store.endpoints.remove("orders")

    assert scaling.service.forget_gone_endpoints() == ["orders"]
    assert [t.resource_id for t in scaling.service.targets()] == [
        "endpoint/kept/variant/AllTraffic"
    ]
    assert set(scaling.alarm_names()) == {a.alarm_name for a in kept.alarms or []}
    assert scaling.service.forget_gone_endpoints() == []
