"""The autoscaler loop over a real SQLite store, the real scaling, endpoint and alarm services, a
real metrics store written as the router and the instance sampler write it, and a manual clock.

The controller is not running: where it would bring the endpoint back InService once the new
capacity is up, the test writes that status itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shipway.control import autoscaler as autoscaler_module
from shipway.control.autoscaler import Autoscaler
from shipway.domain.alarm import AlarmState, PutMetricAlarmInput
from shipway.domain.clock import ManualClock
from shipway.domain.deployment import UpdateEndpointInput
from shipway.domain.endpoint import (
    CreateEndpointInput,
    Endpoint,
    EndpointStatus,
    UpdateEndpointWeightsAndCapacitiesInput,
)
from shipway.domain.endpoint_config import CreateEndpointConfigInput
from shipway.domain.instance_types import InstanceTypeCatalog
from shipway.domain.model import CreateModelInput
from shipway.domain.names import Account
from shipway.domain.scaling import (
    DescribeScalingActivitiesInput,
    PutScalingPolicyInput,
    RegisterScalableTargetInput,
    ScalingActivity,
    ScalingActivityStatusCode,
    ServiceNamespace,
)
from shipway.domain.shape import parse
from shipway.monitor.instance_usage import INSTANCE_NAMESPACE
from shipway.monitor.metrics import MetricsStore
from shipway.service import EndpointConfigService, EndpointService, ModelService
from shipway.service.alarms import AlarmService
from shipway.service.scaling import ScalingService
from shipway.store.artifacts import ArtifactStore
from shipway.store.metadata import MetadataStore

ACCOUNT = Account()
INSTANCES = "sagemaker:variant:DesiredInstanceCount"
ENDPOINT = "orders"
VARIANT = "AllTraffic"
RESOURCE = f"endpoint/{ENDPOINT}/variant/{VARIANT}"
DIMENSIONS = {"EndpointName": ENDPOINT, "VariantName": VARIANT}
INTERVAL = 1.0


@dataclass
class World:
    store: MetadataStore
    metrics: MetricsStore
    alarms: AlarmService
    scaling: ScalingService
    endpoints: EndpointService
    configs: EndpointConfigService
    clock: ManualClock
    autoscaler: Autoscaler

    # --- endpoints, as the API and the controller leave them ----------------------------------

    def endpoint(self, name: str = ENDPOINT, count: int = 1) -> None:
        self.config(name, count)
        self.endpoints.create_endpoint(
            parse(CreateEndpointInput, {"EndpointName": name, "EndpointConfigName": name})
        )
        self.in_service(name)

    def config(self, name: str, count: int = 1) -> None:
        self.configs.create_endpoint_config(
            parse(
                CreateEndpointConfigInput,
                {
                    "EndpointConfigName": name,
                    "ProductionVariants": [
                        {
                            "VariantName": VARIANT,
                            "ModelName": "m",
                            "InstanceType": "ml.m5.large",
                            "InitialInstanceCount": count,
                        }
                    ],
                },
            )
        )

    def in_service(self, name: str = ENDPOINT) -> None:
        """What the controller writes once the instances are up (and a deployment is over)."""

        def change(endpoint: Endpoint) -> Endpoint:
            return endpoint.model_copy(
                update={"endpoint_status": EndpointStatus.IN_SERVICE, "deployment": None}
            )

        assert self.store.endpoints.update(name, change) is not None

    def status(self, name: str = ENDPOINT) -> EndpointStatus:
        endpoint = self.store.endpoints.get(name)
        assert endpoint is not None
        return endpoint.endpoint_status

    def desired(self, name: str = ENDPOINT) -> int:
        endpoint = self.store.endpoints.get(name)
        assert endpoint is not None
        return next(v.desired_instance_count for v in endpoint.variants)

    # --- scaling ------------------------------------------------------------------------------

    def register(self, low: int = 1, high: int = 4, name: str = ENDPOINT, **fields: Any) -> None:
        self.scaling.register_scalable_target(
            parse(
                RegisterScalableTargetInput,
                {
                    "ServiceNamespace": "sagemaker",
                    "ResourceId": f"endpoint/{name}/variant/{VARIANT}",
                    "ScalableDimension": INSTANCES,
                    "MinCapacity": low,
                    "MaxCapacity": high,
                    **fields,
                },
            )
        )

    def tracking(
        self, target: float = 100.0, name: str = "ipi", endpoint: str = ENDPOINT, **config: Any
    ) -> None:
        metric = config.pop(
            "metric",
            {
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                }
            },
        )
        self.policy(
            name,
            endpoint,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={"TargetValue": target, **metric, **config},
        )

    def policy(self, name: str, endpoint: str = ENDPOINT, **fields: Any) -> str:
        request = parse(
            PutScalingPolicyInput,
            {
                "PolicyName": name,
                "ServiceNamespace": "sagemaker",
                "ResourceId": f"endpoint/{endpoint}/variant/{VARIANT}",
                "ScalableDimension": INSTANCES,
                **fields,
            },
        )
        return self.scaling.put_scaling_policy(request).policy_arn

    def activities(self, include_not_scaled: bool = False) -> list[ScalingActivity]:
        request = DescribeScalingActivitiesInput(
            service_namespace=ServiceNamespace.SAGEMAKER,
            include_not_scaled_activities=include_not_scaled,
        )
        return self.scaling.describe_scaling_activities(request).scaling_activities

    # --- metrics, as the router writes them ---------------------------------------------------

    def traffic(
        self,
        per_second: int,
        seconds: int,
        routed: int = 1,
        endpoint: str = ENDPOINT,
    ) -> None:
        """``per_second`` requests each second for ``seconds`` seconds from now on, spread over
        ``routed`` instances in service; the clock moves past them."""
        dimensions = {"EndpointName": endpoint, "VariantName": VARIANT}
        for _ in range(seconds):
            now = self.clock.time()
            if per_second:
                self.metrics.put("Invocations", dimensions, 1.0, now, count=per_second)
                self.metrics.put(
                    "InvocationsPerInstance", dimensions, 1.0 / routed, now, count=per_second
                )
            self.clock.advance(1.0)

    def watch(self) -> None:
        """A first autoscaler pass: from now on it watches the target (windows start here)."""
        assert self.autoscaler.evaluate() == []

    def run(self, seconds: int, per_second: int = 0, routed: int = 1) -> list[ScalingActivity]:
        """Traffic and an autoscaler pass every second, for ``seconds`` seconds."""
        recorded = []
        for _ in range(seconds):
            self.traffic(per_second, 1, routed)
            recorded += self.autoscaler.evaluate()
        return recorded


@contextmanager
def built(tmp_path: Path, interval: float = INTERVAL, max_instances: int = 32) -> Iterator[World]:
    """The services on a fresh SQLite store, with model ``m`` and the autoscaler evaluating
    every ``interval`` seconds; the server allows ``max_instances`` instances."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.joblib").write_bytes(b"not read: no instance starts here")
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    clock = ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    metrics = MetricsStore()
    ModelService(store, ArtifactStore(tmp_path / "cache"), ACCOUNT, clock).create_model(
        parse(
            CreateModelInput,
            {
                "ModelName": "m",
                "PrimaryContainer": {"Image": "sklearn", "ModelDataUrl": str(model_dir)},
            },
        )
    )
    alarms = AlarmService(store, metrics, clock, ACCOUNT)
    scaling = ScalingService(
        store, alarms, clock, ACCOUNT, interval_seconds=interval, max_instances=max_instances
    )
    try:
        yield World(
            store=store,
            metrics=metrics,
            alarms=alarms,
            scaling=scaling,
            endpoints=EndpointService(
                store, ACCOUNT, clock, max_instances=max_instances, alarms=alarms
            ),
            configs=EndpointConfigService(store, InstanceTypeCatalog.load(), ACCOUNT, clock),
            clock=clock,
            autoscaler=Autoscaler(
                scaling, metrics, alarms, clock, interval, endpoints=store.endpoints.get
            ),
        )
    finally:
        store.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with built(tmp_path) as made:
        yield made


# --- target tracking -------------------------------------------------------------------------


def test_a_load_step_scales_out_after_three_intervals_above_the_target(world: World) -> None:
    world.endpoint()
    world.register(1, 8)
    world.tracking(100.0, ScaleOutCooldown=0)
    world.watch()
    # 1 request a second is 60 a minute: under the target, nothing happens
    assert world.run(20, per_second=1) == []
    assert world.desired() == 1
    # 5 a second is 300 per instance per minute: after three intervals above 100, 3 instances
    assert world.run(2, per_second=5) == []
    (activity,) = world.run(1, per_second=5)
    assert activity.status_code is ScalingActivityStatusCode.SUCCESSFUL
    assert activity.description == "Setting desired instance count to 3."
    assert activity.cause.startswith(f"monitor alarm TargetTracking-{RESOURCE}-AlarmHigh-"), (
        activity.cause
    )
    assert "in state ALARM triggered policy ipi" in activity.cause
    assert "SageMakerVariantInvocationsPerInstance 300 above the target 100" in activity.cause
    assert world.desired() == 3
    assert world.status() is EndpointStatus.UPDATING


def test_scale_out_is_sized_on_the_instances_that_took_the_load(world: World) -> None:
    """Instances still starting take no share: the next decision does not overshoot."""
    world.endpoint()
    world.register(1, 20)
    world.tracking(100.0, ScaleOutCooldown=0)
    world.watch()
    (activity,) = world.run(3, per_second=6)  # 360 a minute on one instance: 4 instances
    assert world.desired() == 4
    world.in_service()
    # the router still routes to the one instance in service: 360 per instance per minute
    assert world.run(10, per_second=6, routed=1) == []
    assert world.desired() == 4
    # once all four take the load the metric is 90 each: still nothing to do
    assert world.run(10, per_second=6, routed=4) == []
    # the load doubles: 8 instances
    (activity,) = world.run(3, per_second=12, routed=4)
    assert world.desired() == 8
    assert activity.status_code is ScalingActivityStatusCode.SUCCESSFUL


def test_scale_in_waits_for_fifteen_quiet_intervals_and_its_cooldown(world: World) -> None:
    world.endpoint(count=4)
    world.register(1, 8)
    world.tracking(100.0, ScaleInCooldown=30)
    world.watch()
    # 1 request a second over 4 instances: 15 per instance per minute
    assert world.run(14, per_second=1, routed=4) == []
    (activity,) = world.run(1, per_second=1, routed=4)
    # ceil(60 a minute / 90): one instance keeps under 90 % of the target
    assert activity.description == "Setting desired instance count to 1."
    assert f"TargetTracking-{RESOURCE}-AlarmLow-" in activity.cause
    assert world.desired() == 1
    world.in_service()
    # more load, a scale-out at once (a scale-in cooldown does not hold a scale-out)
    (activity,) = world.run(3, per_second=5)
    assert world.desired() == 3
    world.in_service()
    # the load goes: the scale-in waits 30 s after that scale-out, not 15 intervals only
    assert world.run(29, per_second=1, routed=3) == []
    (activity,) = world.run(2, per_second=1, routed=3)
    assert world.desired() == 1


def test_at_max_capacity_one_not_scaled_activity_not_one_per_interval(world: World) -> None:
    world.endpoint()
    world.register(1, 2)
    world.tracking(100.0, ScaleOutCooldown=0)
    world.watch()
    world.run(3, per_second=10)
    assert world.desired() == 2
    world.in_service()
    quiet = []
    for second in range(30):  # the capacity asked for varies with the load: 6, 7, 8...
        quiet += world.run(1, per_second=10 + second % 3, routed=2)
    assert len(quiet) == 1
    (not_scaled,) = quiet
    assert not_scaled.not_scaled_reasons is not None
    (reason,) = not_scaled.not_scaled_reasons
    assert (reason.code, reason.max_capacity, reason.current_capacity) == (
        "AlreadyAtMaxCapacity",
        2,
        2,
    )
    assert not_scaled.description in {f"Setting desired instance count to {n}." for n in (6, 7, 8)}
    assert len(world.activities()) == 1  # not scaled ones are shown only when asked for
    assert len(world.activities(include_not_scaled=True)) == 2


def test_no_data_no_change(world: World) -> None:
    world.endpoint(count=3)
    world.register(1, 8)
    world.tracking(100.0, ScaleInCooldown=0, ScaleOutCooldown=0)
    assert world.run(60) == []
    assert world.desired() == 3
    assert world.activities(include_not_scaled=True) == []


def test_disable_scale_in(world: World) -> None:
    world.endpoint(count=3)
    world.register(1, 8)
    world.tracking(100.0, ScaleInCooldown=0, DisableScaleIn=True)
    assert world.run(60, per_second=1, routed=3) == []
    assert world.desired() == 3


@pytest.mark.parametrize(
    ("suspended", "per_second", "expected"),
    [
        ({}, 10, 4),
        ({}, 1, 1),
        ({"DynamicScalingOutSuspended": True}, 10, 2),
        ({"DynamicScalingOutSuspended": True}, 1, 1),
        ({"DynamicScalingInSuspended": True}, 1, 2),
        ({"DynamicScalingInSuspended": True}, 10, 4),
    ],
)
def test_suspended_state(
    world: World, suspended: dict[str, bool], per_second: int, expected: int
) -> None:
    world.endpoint(count=2)
    world.register(1, 4, SuspendedState=suspended)
    world.tracking(100.0, ScaleInCooldown=0, ScaleOutCooldown=0)
    world.watch()
    world.run(20, per_second=per_second, routed=2)
    assert world.desired() == expected


def test_a_customized_cpu_metric_of_the_instance_sampler(world: World) -> None:
    world.endpoint(count=2)
    world.register(1, 8)
    world.tracking(
        50.0,
        name="cpu",
        ScaleOutCooldown=0,
        metric={
            "CustomizedMetricSpecification": {
                "MetricName": "CPUUtilization",
                "Namespace": INSTANCE_NAMESPACE,
                "Dimensions": [
                    {"Name": "EndpointName", "Value": ENDPOINT},
                    {"Name": "VariantName", "Value": VARIANT},
                ],
                "Statistic": "Average",
                "Unit": "Percent",
            }
        },
    )
    world.watch()
    recorded = []
    for _ in range(3):
        for cpu in (150.0, 170.0):  # two instances, 160 % on average
            world.metrics.put(
                "CPUUtilization",
                DIMENSIONS,
                cpu,
                world.clock.time(),
                unit="Percent",
                namespace=INSTANCE_NAMESPACE,
            )
        world.clock.advance(1.0)
        recorded += world.autoscaler.evaluate()
    (activity,) = recorded
    assert world.desired() == 7  # ceil(2 x 160 / 50)
    assert "CPUUtilization (Average) 160 above the target 50" in activity.cause


def test_sums_keep_their_per_minute_meaning_at_any_interval(tmp_path: Path) -> None:
    """The same traffic read in 2-second intervals decides the same."""
    with built(tmp_path, interval=2.0) as world:
        world.endpoint()
        world.register(1, 8)
        world.tracking(100.0, ScaleOutCooldown=0)
        world.watch()
        recorded = []
        for _ in range(4):  # 5 a second, 300 a minute
            world.traffic(5, 2)
            recorded += world.autoscaler.evaluate()
        assert [a.description for a in recorded] == ["Setting desired instance count to 3."]


# --- what else changes the capacity ----------------------------------------------------------


def test_a_deployment_suspends_scaling_with_one_not_scaled_activity(world: World) -> None:
    world.endpoint()
    world.register(1, 8)
    world.tracking(100.0, ScaleOutCooldown=0)
    world.config("orders-v2")
    world.endpoints.update_endpoint(
        parse(UpdateEndpointInput, {"EndpointName": ENDPOINT, "EndpointConfigName": "orders-v2"})
    )
    assert world.status() is EndpointStatus.UPDATING
    recorded = world.run(20, per_second=10)
    (suspended,) = recorded
    assert suspended.not_scaled_reasons is not None
    assert suspended.not_scaled_reasons[0].code == "TargetServicePutResourceAsUnscalable"
    assert "deployment to endpoint configuration orders-v2" in suspended.cause
    assert world.desired() == 1
    # the deployment ends: scaling resumes, on what is measured from then on
    world.in_service()
    assert world.run(2, per_second=10) == []
    (activity,) = world.run(1, per_second=10)
    assert activity.description == "Setting desired instance count to 6."


def test_a_capacity_changed_by_hand_starts_the_windows_again(world: World) -> None:
    world.endpoint(count=4)
    world.register(1, 8)
    world.tracking(100.0, ScaleInCooldown=0)
    world.watch()
    assert world.run(10, per_second=1, routed=4) == []
    world.endpoints.update_endpoint_weights_and_capacities(
        parse(
            UpdateEndpointWeightsAndCapacitiesInput,
            {
                "EndpointName": ENDPOINT,
                "DesiredWeightsAndCapacities": [
                    {"VariantName": VARIANT, "DesiredInstanceCount": 5}
                ],
            },
        )
    )
    world.in_service()
    # without the change, the 15 intervals would have been complete after 5 more
    assert world.run(15, per_second=1, routed=5) == []
    (_activity,) = world.run(1, per_second=1, routed=5)
    assert world.desired() == 1


def test_a_restarted_autoscaler_keeps_the_cooldown_of_the_last_activity(world: World) -> None:
    world.endpoint()
    world.register(1, 8)
    world.tracking(100.0, ScaleOutCooldown=0, ScaleInCooldown=120)
    world.watch()
    world.run(3, per_second=5)
    assert world.desired() == 3
    world.in_service()
    restarted = Autoscaler(
        world.scaling, world.metrics, world.alarms, world.clock, INTERVAL,
        endpoints=world.store.endpoints.get,
    )  # fmt: skip
    world.autoscaler = restarted
    assert world.run(100, per_second=1, routed=3) == []
    assert world.desired() == 3
    world.run(25, per_second=1, routed=3)
    assert world.desired() == 1


def test_a_used_up_instance_quota_is_tried_again_a_minute_later(tmp_path: Path) -> None:
    with built(tmp_path, max_instances=2) as world:
        world.endpoint()
        world.register(1, 8)
        world.tracking(100.0, ScaleOutCooldown=0)
        world.watch()
        (grown,) = world.run(3, per_second=10)
        assert grown.status_code is ScalingActivityStatusCode.SUCCESSFUL
        assert "the server allows 2 instances" in (grown.status_message or "")
        assert world.desired() == 2
        world.in_service()
        (refused,) = world.run(3, per_second=10, routed=2)
        assert refused.status_code is ScalingActivityStatusCode.FAILED
        assert "quota" in (refused.status_message or "")
        assert world.run(59, per_second=10, routed=2) == []
        (again,) = world.run(1, per_second=10, routed=2)
        assert again.status_code is ScalingActivityStatusCode.FAILED
        assert world.desired() == 2


# --- step scaling ----------------------------------------------------------------------------


def step_alarm(world: World, policy_arn: str, threshold: float = 50.0, **fields: Any) -> str:
    world.alarms.put_metric_alarm(
        parse(
            PutMetricAlarmInput,
            {
                "AlarmName": "latency-high",
                "MetricName": "ModelLatency",
                "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": k, "Value": v} for k, v in DIMENSIONS.items()],
                "Statistic": "Average",
                "Period": 10,
                "EvaluationPeriods": 1,
                "Threshold": threshold,
                "ComparisonOperator": "GreaterThanThreshold",
                "AlarmActions": [policy_arn],
                **fields,
            },
        )
    )
    return "latency-high"


def latency(world: World, value: float, seconds: int) -> list[ScalingActivity]:
    """ModelLatency datapoints each second, alarms evaluated and an autoscaler pass."""
    recorded = []
    for _ in range(seconds):
        world.metrics.put("ModelLatency", DIMENSIONS, value, world.clock.time())
        world.clock.advance(1.0)
        world.alarms.evaluate()
        recorded += world.autoscaler.evaluate()
    return recorded


STEPS = {
    "AdjustmentType": "ChangeInCapacity",
    "StepAdjustments": [
        {"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 20.0, "ScalingAdjustment": 1},
        {"MetricIntervalLowerBound": 20.0, "ScalingAdjustment": 3},
    ],
}


def test_a_step_policy_acts_once_per_alarm_period_while_its_alarm_is_in_alarm(
    world: World,
) -> None:
    world.endpoint()
    world.register(1, 10)
    arn = world.policy(
        "burst", PolicyType="StepScaling", StepScalingPolicyConfiguration={**STEPS, "Cooldown": 0}
    )
    step_alarm(world, arn)
    assert latency(world, 30.0, 12) == []  # under the threshold
    recorded = latency(world, 60.0, 10)  # the alarm goes to ALARM on the period's datapoint
    assert world.alarms.describe_alarm("latency-high").state_value is AlarmState.ALARM
    (activity,) = recorded
    assert activity.cause.startswith(
        "monitor alarm latency-high in state ALARM triggered policy burst"
    )
    assert world.desired() == 2  # a breach of 10: +1
    world.in_service()
    # still in ALARM a period later: the action runs again, on the latest datapoint (+3)
    recorded = latency(world, 90.0, 10)
    assert [a.description for a in recorded] == ["Setting desired instance count to 5."]


def test_a_step_policy_in_its_cooldown_adds_only_what_a_larger_step_asks_more(
    world: World,
) -> None:
    world.endpoint()
    world.register(1, 10)
    arn = world.policy(
        "burst", PolicyType="StepScaling", StepScalingPolicyConfiguration={**STEPS, "Cooldown": 300}
    )
    step_alarm(world, arn)
    latency(world, 30.0, 10)
    latency(world, 60.0, 10)
    assert world.desired() == 2
    world.in_service()
    latency(world, 60.0, 20)  # the same step again within the cooldown: nothing
    assert world.desired() == 2
    latency(world, 90.0, 10)  # the +3 step: 1 + 3, not 2 + 3
    assert world.desired() == 4


def test_an_alarm_with_actions_disabled_does_not_scale(world: World) -> None:
    world.endpoint()
    world.register(1, 10)
    arn = world.policy(
        "burst", PolicyType="StepScaling", StepScalingPolicyConfiguration={**STEPS, "Cooldown": 0}
    )
    step_alarm(world, arn, ActionsEnabled=False)
    latency(world, 30.0, 10)
    assert latency(world, 90.0, 30) == []
    assert world.desired() == 1


# --- the loop ----------------------------------------------------------------------------------


def test_one_broken_target_does_not_stop_the_others(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.endpoint()
    world.endpoint("broken")
    world.register(1, 8)
    world.register(1, 8, name="broken")
    world.tracking(100.0, ScaleOutCooldown=0)
    world.tracking(100.0, endpoint="broken", ScaleOutCooldown=0)

    def endpoints(name: str) -> Endpoint | None:
        if name == "broken":
            raise RuntimeError("a store that failed for this endpoint")
        return world.store.endpoints.get(name)

    world.autoscaler = Autoscaler(
        world.scaling, world.metrics, world.alarms, world.clock, INTERVAL, endpoints=endpoints
    )
    world.autoscaler.evaluate()
    with caplog.at_level(logging.ERROR, logger="shipway.control.autoscaler"):
        world.run(3, per_second=5)
    assert world.desired() == 3
    assert "autoscaling endpoint/broken/variant/AllTraffic failed" in caplog.text


def test_the_loop_evaluates_every_interval_until_closed(world: World) -> None:
    world.endpoint()
    world.register(1, 8)
    world.tracking(100.0, ScaleOutCooldown=0)
    autoscaler = Autoscaler(
        world.scaling, world.metrics, world.alarms, world.clock, 0.01,
        endpoints=world.store.endpoints.get,
    )  # fmt: skip

    async def main() -> None:
        await autoscaler.start()
        for _ in range(500):  # a second of traffic every 20 ms: 300 a minute
            if world.desired() != 1:
                break
            world.traffic(5, 1)
            await asyncio.sleep(0.02)
        await autoscaler.close()
        await autoscaler.close()  # a second close is harmless

    asyncio.run(main())
    assert world.desired() == 3


def test_exports() -> None:
    assert autoscaler_module.__all__ == ["Autoscaler"]


def test_a_serverless_variant_scales_its_provisioned_concurrency(world: World) -> None:
    world.configs.create_endpoint_config(
        parse(
            CreateEndpointConfigInput,
            {
                "EndpointConfigName": "spiky",
                "ProductionVariants": [
                    {
                        "VariantName": VARIANT,
                        "ModelName": "m",
                        "ServerlessConfig": {
                            "MemorySizeInMB": 2048,
                            "MaxConcurrency": 10,
                            "ProvisionedConcurrency": 2,
                        },
                    }
                ],
            },
        )
    )
    world.endpoints.create_endpoint(
        parse(CreateEndpointInput, {"EndpointName": "spiky", "EndpointConfigName": "spiky"})
    )
    world.in_service("spiky")
    resource = f"endpoint/spiky/variant/{VARIANT}"
    concurrency = "sagemaker:variant:DesiredProvisionedConcurrency"
    world.scaling.register_scalable_target(
        parse(
            RegisterScalableTargetInput,
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource,
                "ScalableDimension": concurrency,
                "MinCapacity": 1,
                "MaxCapacity": 8,
            },
        )
    )
    world.scaling.put_scaling_policy(
        parse(
            PutScalingPolicyInput,
            {
                "PolicyName": "warm",
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource,
                "ScalableDimension": concurrency,
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": 0.5,
                    "ScaleOutCooldown": 0,
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantProvisionedConcurrencyUtilization"
                    },
                },
            },
        )
    )
    world.watch()
    recorded = []
    for _ in range(3):
        world.metrics.put(
            "ServerlessProvisionedConcurrencyUtilization",
            {"EndpointName": "spiky", "VariantName": VARIANT},
            0.9,
            world.clock.time(),
        )
        world.clock.advance(1.0)
        recorded += world.autoscaler.evaluate()
    (activity,) = recorded
    assert activity.description == "Setting desired provisioned concurrency to 4."  # 2 x 0.9 / 0.5
    endpoint = world.store.endpoints.get("spiky")
    assert endpoint is not None
    (variant,) = endpoint.variants
    assert variant.desired_serverless_config is not None
    assert variant.desired_serverless_config.provisioned_concurrency == 4
