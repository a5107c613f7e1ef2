"""Scaling: Application Auto Scaling's shapes for SageMaker variants.

A *scalable target* says a variant may be scaled, between ``MinCapacity`` and ``MaxCapacity``,
along one dimension: its instance count (``sagemaker:variant:DesiredInstanceCount``) or, for a
serverless variant, its provisioned concurrency
(``sagemaker:variant:DesiredProvisionedConcurrency``).
*Scaling policies* attached to a target say how: target tracking (hold a metric near a value) or
step scaling (adjust by steps while an alarm is in ALARM). Each change the autoscaler makes, or
decides not to make, is a *scaling activity*.

Members and errors follow ``boto3.client("application-autoscaling")``: the JSON 1.1 wire with
``X-Amz-Target: AnyScaleFrontendService.<Operation>``. ``ResourceId`` names a variant as
``endpoint/<EndpointName>/variant/<VariantName>``.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from shipway.domain.errors import InvalidState, NotFound, ShipwayError, ValidationError
from shipway.domain.shape import Shape

__all__ = [
    "DEFAULT_COOLDOWN_SECONDS",
    "PREDEFINED_DIMENSIONS",
    "AdjustmentType",
    "Alarm",
    "AlarmStateSummary",
    "ConcurrentUpdate",
    "CustomizedMetricSpecification",
    "DeleteScalingPolicyInput",
    "DeregisterScalableTargetInput",
    "DescribeScalableTargetsInput",
    "DescribeScalableTargetsOutput",
    "DescribeScalingActivitiesInput",
    "DescribeScalingActivitiesOutput",
    "DescribeScalingPoliciesInput",
    "DescribeScalingPoliciesOutput",
    "EndpointScaling",
    "MetricAggregationType",
    "MetricDimension",
    "MetricStatistic",
    "NotScaledReason",
    "NotScaledReasonCode",
    "ObjectNotFound",
    "PolicyName",
    "PolicyType",
    "PredefinedMetricSpecification",
    "PredefinedMetricType",
    "PutScalingPolicyInput",
    "PutScalingPolicyOutput",
    "RegisterScalableTargetInput",
    "RegisterScalableTargetOutput",
    "ScalableDimension",
    "ScalableTarget",
    "ScalableTargetUpdate",
    "ScalingActivity",
    "ScalingActivityStatusCode",
    "ScalingPolicy",
    "ScalingPolicyDefinition",
    "ServiceNamespace",
    "StepAdjustment",
    "StepScalingPolicyConfiguration",
    "SuspendedState",
    "TargetTrackingScalingPolicyConfiguration",
    "TrackedMetric",
    "VariantId",
    "VariantScaling",
    "parse_resource_id",
    "tracked_metric",
]

DEFAULT_COOLDOWN_SECONDS = 300
"""SageMaker's default ScaleOutCooldown and ScaleInCooldown, and StepScaling's Cooldown."""

_RESOURCE_ID = re.compile(r"^endpoint/([^/]+)/variant/([^/]+)$")


class ServiceNamespace(StrEnum):
    SAGEMAKER = "sagemaker"


class ScalableDimension(StrEnum):
    INSTANCE_COUNT = "sagemaker:variant:DesiredInstanceCount"
    PROVISIONED_CONCURRENCY = "sagemaker:variant:DesiredProvisionedConcurrency"


class PolicyType(StrEnum):
    STEP_SCALING = "StepScaling"
    TARGET_TRACKING = "TargetTrackingScaling"
    PREDICTIVE_SCALING = "PredictiveScaling"


class PredefinedMetricType(StrEnum):
    INVOCATIONS_PER_INSTANCE = "SageMakerVariantInvocationsPerInstance"
    PROVISIONED_CONCURRENCY_UTILIZATION = "SageMakerVariantProvisionedConcurrencyUtilization"
    CONCURRENT_REQUESTS_PER_MODEL = "SageMakerVariantConcurrentRequestsPerModelHighResolution"


class MetricStatistic(StrEnum):
    AVERAGE = "Average"
    MINIMUM = "Minimum"
    MAXIMUM = "Maximum"
    SAMPLE_COUNT = "SampleCount"
    SUM = "Sum"


class AdjustmentType(StrEnum):
    CHANGE_IN_CAPACITY = "ChangeInCapacity"
    PERCENT_CHANGE_IN_CAPACITY = "PercentChangeInCapacity"
    EXACT_CAPACITY = "ExactCapacity"


class MetricAggregationType(StrEnum):
    AVERAGE = "Average"
    MINIMUM = "Minimum"
    MAXIMUM = "Maximum"


class NotScaledReasonCode(StrEnum):
    """Why a scaling activity did not scale (``NotScaledReasons[].Code``)."""

    ANTICIPATED_FLAPPING = "AutoScalingAnticipatedFlapping"
    PUT_RESOURCE_AS_UNSCALABLE = "TargetServicePutResourceAsUnscalable"
    ALREADY_AT_MAX_CAPACITY = "AlreadyAtMaxCapacity"
    ALREADY_AT_MIN_CAPACITY = "AlreadyAtMinCapacity"
    ALREADY_AT_DESIRED_CAPACITY = "AlreadyAtDesiredCapacity"


class ScalingActivityStatusCode(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCESSFUL = "Successful"
    OVERRIDDEN = "Overridden"
    UNFULFILLED = "Unfulfilled"
    FAILED = "Failed"


ResourceId = Annotated[str, StringConstraints(min_length=1, max_length=1600)]
PolicyName = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Capacity = Annotated[int, Field(ge=0)]
Cooldown = Annotated[int, Field(ge=0, le=86400)]


class VariantId(Shape):
    """The variant a ResourceId names."""

    endpoint_name: str
    variant_name: str

    @property
    def resource_id(self) -> str:
        return f"endpoint/{self.endpoint_name}/variant/{self.variant_name}"


def parse_resource_id(resource_id: str) -> VariantId:
    """``endpoint/<EndpointName>/variant/<VariantName>``, or a ValidationError saying so."""
    match = _RESOURCE_ID.match(resource_id)
    if match is None:
        raise ValidationError(
            f"Unsupported resource ID {resource_id!r}: a SageMaker variant is "
            "'endpoint/<EndpointName>/variant/<VariantName>'."
        )
    return VariantId(endpoint_name=match.group(1), variant_name=match.group(2))


class ObjectNotFound(NotFound):
    """A scalable target or scaling policy that is not there (``ObjectNotFoundException``),
    worded as Application Auto Scaling words it."""

    code = "ObjectNotFoundException"

    def __init__(self, message: str) -> None:
        ShipwayError.__init__(self, message)
        self.kind = "scalable target"
        self.name = message
        self.arn = None


class ConcurrentUpdate(InvalidState):
    """Another request changed the same target or policy at the same moment
    (``ConcurrentUpdateException``): try again."""

    code = "ConcurrentUpdateException"


class SuspendedState(Shape):
    dynamic_scaling_in_suspended: bool | None = None
    dynamic_scaling_out_suspended: bool | None = None
    scheduled_scaling_suspended: bool | None = None


class _TargetIdentity(Shape):
    service_namespace: ServiceNamespace
    resource_id: ResourceId
    scalable_dimension: ScalableDimension


class RegisterScalableTargetInput(_TargetIdentity):
    min_capacity: Capacity | None = None
    max_capacity: Capacity | None = None
    role_arn: Annotated[str, StringConstraints(min_length=1, max_length=1600)] | None = Field(
        default=None, alias="RoleARN"
    )
    suspended_state: SuspendedState | None = None
    tags: dict[str, str] | None = None


class RegisterScalableTargetOutput(Shape):
    scalable_target_arn: str | None = Field(default=None, alias="ScalableTargetARN")


class ScalableTarget(_TargetIdentity):
    min_capacity: Capacity
    max_capacity: Capacity
    role_arn: str = Field(alias="RoleARN")
    creation_time: datetime
    suspended_state: SuspendedState | None = None
    scalable_target_arn: str | None = Field(default=None, alias="ScalableTargetARN")


class DescribeScalableTargetsInput(Shape):
    service_namespace: ServiceNamespace
    resource_ids: Annotated[list[ResourceId], Field(max_length=50)] | None = None
    scalable_dimension: ScalableDimension | None = None
    max_results: Annotated[int, Field(ge=1, le=50)] | None = None
    next_token: str | None = None


class DescribeScalableTargetsOutput(Shape):
    scalable_targets: list[ScalableTarget]
    next_token: str | None = None


class DeregisterScalableTargetInput(_TargetIdentity):
    pass


class PredefinedMetricSpecification(Shape):
    predefined_metric_type: PredefinedMetricType
    resource_label: Annotated[str, StringConstraints(min_length=1, max_length=1023)] | None = None


class MetricDimension(Shape):
    name: str
    value: str


class CustomizedMetricSpecification(Shape):
    metric_name: str | None = None
    namespace: str | None = None
    dimensions: list[MetricDimension] | None = None
    statistic: MetricStatistic | None = None
    unit: str | None = None
    metrics: list[dict[str, object]] | None = None

    @model_validator(mode="after")
    def _single_metric(self) -> Self:
        if self.metrics is not None:
            raise ValueError(
                "CustomizedMetricSpecification.Metrics (metric math) is not supported: name one "
                "metric with MetricName, Namespace, Dimensions and Statistic."
            )
        missing = [
            name
            for name, value in (
                ("MetricName", self.metric_name),
                ("Namespace", self.namespace),
                ("Statistic", self.statistic),
            )
            if value is None
        ]
        if missing:
            raise ValueError(f"CustomizedMetricSpecification needs {', '.join(missing)}.")
        return self

    @property
    def dimension_map(self) -> dict[str, str]:
        return {d.name: d.value for d in self.dimensions or []}


class TargetTrackingScalingPolicyConfiguration(Shape):
    target_value: Annotated[float, Field(allow_inf_nan=False)]
    predefined_metric_specification: PredefinedMetricSpecification | None = None
    customized_metric_specification: CustomizedMetricSpecification | None = None
    scale_out_cooldown: Cooldown | None = None
    scale_in_cooldown: Cooldown | None = None
    disable_scale_in: bool | None = None

    @model_validator(mode="after")
    def _one_metric(self) -> Self:
        given = (self.predefined_metric_specification is not None) + (
            self.customized_metric_specification is not None
        )
        if given != 1:
            raise ValueError(
                "A target tracking policy needs exactly one of PredefinedMetricSpecification and "
                "CustomizedMetricSpecification."
            )
        if self.target_value <= 0:
            raise ValueError(f"TargetValue ({self.target_value}) must be greater than 0.")
        return self

    @property
    def scale_out_cooldown_seconds(self) -> int:
        if self.scale_out_cooldown is None:
            return DEFAULT_COOLDOWN_SECONDS
        return self.scale_out_cooldown

    @property
    def scale_in_cooldown_seconds(self) -> int:
        if self.scale_in_cooldown is None:
            return DEFAULT_COOLDOWN_SECONDS
        return self.scale_in_cooldown


PREDEFINED_DIMENSIONS: dict[PredefinedMetricType, ScalableDimension] = {
    PredefinedMetricType.INVOCATIONS_PER_INSTANCE: ScalableDimension.INSTANCE_COUNT,
    PredefinedMetricType.CONCURRENT_REQUESTS_PER_MODEL: ScalableDimension.INSTANCE_COUNT,
    PredefinedMetricType.PROVISIONED_CONCURRENCY_UTILIZATION: (
        ScalableDimension.PROVISIONED_CONCURRENCY
    ),
}
"""The scalable dimension each predefined metric scales."""

HIGH_RESOLUTION_PERIOD = 10
"""CloudWatch's shortest alarm period (a high-resolution metric's)."""
STANDARD_PERIOD = 60


@dataclass(frozen=True)
class TrackedMetric:
    """The metric a target tracking policy holds near its TargetValue, in the metrics store.

    ``per_minute``: the metric is a count summed over a period while TargetValue is per minute
    (InvocationsPerInstance), so over a period of P seconds the target is TargetValue x P / 60.
    ``high_resolution``: the metric is evaluated over 10-second periods whatever the interval.
    """

    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: MetricStatistic
    per_minute: bool = False
    high_resolution: bool = False

    @property
    def dimension_map(self) -> dict[str, str]:
        return dict(self.dimensions)

    def period(self, interval_seconds: float) -> int:
        """The alarm period: 60 s when policies are evaluated every minute or less often (as
        on AWS), 10 s (CloudWatch's shortest) when they are evaluated more often, and always
        10 s for a high-resolution metric."""
        if self.high_resolution or interval_seconds < STANDARD_PERIOD:
            return HIGH_RESOLUTION_PERIOD
        return STANDARD_PERIOD

    def threshold(self, target_value: float, period: float) -> float:
        """TargetValue in the metric's own terms over ``period`` seconds."""
        return target_value * period / 60.0 if self.per_minute else target_value


_SAGEMAKER_NAMESPACE = "AWS/SageMaker"
_PREDEFINED_METRICS: dict[PredefinedMetricType, tuple[str, MetricStatistic, bool, bool]] = {
    # type: (metric name, statistic, per minute, high resolution)
    PredefinedMetricType.INVOCATIONS_PER_INSTANCE: (
        "InvocationsPerInstance",
        MetricStatistic.SUM,
        True,
        False,
    ),
    PredefinedMetricType.PROVISIONED_CONCURRENCY_UTILIZATION: (
        "ServerlessProvisionedConcurrencyUtilization",
        MetricStatistic.AVERAGE,
        False,
        False,
    ),
    PredefinedMetricType.CONCURRENT_REQUESTS_PER_MODEL: (
        "ConcurrentRequestsPerModel",
        MetricStatistic.AVERAGE,
        False,
        True,
    ),
}


def tracked_metric(
    configuration: TargetTrackingScalingPolicyConfiguration, variant: VariantId
) -> TrackedMetric:
    """The metric a target tracking policy on ``variant`` tracks: a predefined metric's
    ``AWS/SageMaker`` series of the variant, or the customized metric as given."""
    predefined = configuration.predefined_metric_specification
    if predefined is not None:
        name, statistic, per_minute, high_resolution = _PREDEFINED_METRICS[
            predefined.predefined_metric_type
        ]
        return TrackedMetric(
            namespace=_SAGEMAKER_NAMESPACE,
            metric_name=name,
            dimensions=(
                ("EndpointName", variant.endpoint_name),
                ("VariantName", variant.variant_name),
            ),
            statistic=statistic,
            per_minute=per_minute,
            high_resolution=high_resolution,
        )
    custom = configuration.customized_metric_specification
    assert custom is not None  # the configuration's validator: exactly one of the two
    assert custom.metric_name is not None
    assert custom.namespace is not None
    assert custom.statistic is not None
    return TrackedMetric(
        namespace=custom.namespace,
        metric_name=custom.metric_name,
        dimensions=tuple((d.name, d.value) for d in custom.dimensions or []),
        statistic=custom.statistic,
    )


class StepAdjustment(Shape):
    metric_interval_lower_bound: float | None = None
    metric_interval_upper_bound: float | None = None
    scaling_adjustment: int


class StepScalingPolicyConfiguration(Shape):
    """Adjust the capacity by steps while an alarm naming the policy is in ALARM.

    Each step's bounds are relative to the alarm's threshold: the breach (metric value minus
    threshold) falls in ``[MetricIntervalLowerBound, MetricIntervalUpperBound)``, a missing
    bound being infinity. AWS's rules hold: the steps cover one range without gaps or overlaps,
    at most one step has no lower bound and one no upper bound, no step lacks both, and a range
    reaching below 0 (above 0) must be open to negative (positive) infinity.
    """

    adjustment_type: AdjustmentType | None = None
    step_adjustments: list[StepAdjustment] | None = None
    min_adjustment_magnitude: Annotated[int, Field(ge=1)] | None = None
    cooldown: Cooldown | None = None
    metric_aggregation_type: MetricAggregationType | None = None

    @property
    def cooldown_seconds(self) -> int:
        return DEFAULT_COOLDOWN_SECONDS if self.cooldown is None else self.cooldown

    @property
    def aggregation(self) -> MetricAggregationType:
        return self.metric_aggregation_type or MetricAggregationType.AVERAGE

    @model_validator(mode="after")
    def _steps(self) -> Self:
        if self.adjustment_type is None:
            raise ValueError("A step scaling policy needs an AdjustmentType.")
        if not self.step_adjustments:
            raise ValueError("A step scaling policy needs at least one StepAdjustment.")
        if self.min_adjustment_magnitude is not None and (
            self.adjustment_type is not AdjustmentType.PERCENT_CHANGE_IN_CAPACITY
        ):
            raise ValueError(
                "MinAdjustmentMagnitude applies only to AdjustmentType PercentChangeInCapacity."
            )
        if self.adjustment_type is AdjustmentType.EXACT_CAPACITY and any(
            s.scaling_adjustment < 0 for s in self.step_adjustments
        ):
            raise ValueError("With AdjustmentType ExactCapacity, ScalingAdjustment must be >= 0.")
        _check_intervals(self.step_adjustments)
        return self


def _check_intervals(steps: list[StepAdjustment]) -> None:
    """AWS's rules for the metric intervals of step adjustments (ValueError naming the rule)."""
    lower = [s.metric_interval_lower_bound for s in steps]
    upper = [s.metric_interval_upper_bound for s in steps]
    if lower.count(None) > 1:
        raise ValueError("At most one step adjustment may have no MetricIntervalLowerBound.")
    if upper.count(None) > 1:
        raise ValueError("At most one step adjustment may have no MetricIntervalUpperBound.")
    ranges = []
    for step in steps:
        low = (
            -math.inf
            if step.metric_interval_lower_bound is None
            else step.metric_interval_lower_bound
        )
        high = (
            math.inf
            if step.metric_interval_upper_bound is None
            else step.metric_interval_upper_bound
        )
        if math.isinf(low) and math.isinf(high):
            raise ValueError(
                "A step adjustment cannot lack both MetricIntervalLowerBound and "
                "MetricIntervalUpperBound."
            )
        if not low < high:
            raise ValueError(
                f"A step adjustment's MetricIntervalLowerBound ({low:g}) must be less than its "
                f"MetricIntervalUpperBound ({high:g})."
            )
        ranges.append((low, high))
    ranges.sort()
    for (_, high), (low, _) in itertools.pairwise(ranges):
        if high > low:
            raise ValueError(
                f"Step adjustments overlap at {low:g}: their intervals must not overlap."
            )
        if high < low:
            raise ValueError(
                f"Step adjustments leave a gap between {high:g} and {low:g}: their intervals "
                "must cover one range without gaps."
            )
    if ranges[0][0] < 0 and not math.isinf(ranges[0][0]):
        raise ValueError(
            "A step adjustment has a negative MetricIntervalLowerBound, so one must have no "
            "MetricIntervalLowerBound (negative infinity)."
        )
    if ranges[-1][1] > 0 and not math.isinf(ranges[-1][1]):
        raise ValueError(
            "A step adjustment has a positive MetricIntervalUpperBound, so one must have no "
            "MetricIntervalUpperBound (positive infinity)."
        )


class PutScalingPolicyInput(_TargetIdentity):
    policy_name: PolicyName
    policy_type: PolicyType | None = None
    step_scaling_policy_configuration: StepScalingPolicyConfiguration | None = None
    target_tracking_scaling_policy_configuration: (
        TargetTrackingScalingPolicyConfiguration | None
    ) = None
    predictive_scaling_policy_configuration: dict[str, object] | None = None


class Alarm(Shape):
    alarm_name: str
    alarm_arn: str = Field(alias="AlarmARN")


class PutScalingPolicyOutput(Shape):
    policy_arn: str = Field(alias="PolicyARN")
    alarms: list[Alarm] | None = None


class ScalingPolicy(_TargetIdentity):
    policy_arn: str = Field(alias="PolicyARN")
    policy_name: str
    policy_type: PolicyType
    step_scaling_policy_configuration: StepScalingPolicyConfiguration | None = None
    target_tracking_scaling_policy_configuration: (
        TargetTrackingScalingPolicyConfiguration | None
    ) = None
    alarms: list[Alarm] | None = None
    creation_time: datetime


class DescribeScalingPoliciesInput(Shape):
    service_namespace: ServiceNamespace
    policy_names: Annotated[list[PolicyName], Field(max_length=50)] | None = None
    resource_id: ResourceId | None = None
    scalable_dimension: ScalableDimension | None = None
    max_results: Annotated[int, Field(ge=1, le=10)] | None = None
    next_token: str | None = None


class DescribeScalingPoliciesOutput(Shape):
    scaling_policies: list[ScalingPolicy]
    next_token: str | None = None


class DeleteScalingPolicyInput(_TargetIdentity):
    policy_name: PolicyName


class NotScaledReason(Shape):
    code: str
    max_capacity: int | None = None
    min_capacity: int | None = None
    current_capacity: int | None = None


class ScalingActivity(_TargetIdentity):
    activity_id: str
    description: str
    cause: str
    start_time: datetime
    end_time: datetime | None = None
    status_code: ScalingActivityStatusCode
    status_message: str | None = None
    details: str | None = None
    not_scaled_reasons: list[NotScaledReason] | None = None

    @property
    def not_scaled(self) -> bool:
        """A not scaled activity (shown with IncludeNotScaledActivities only)."""
        return bool(self.not_scaled_reasons)


class DescribeScalingActivitiesInput(Shape):
    service_namespace: ServiceNamespace
    resource_id: ResourceId | None = None
    scalable_dimension: ScalableDimension | None = None
    max_results: Annotated[int, Field(ge=1, le=50)] | None = None
    next_token: str | None = None
    include_not_scaled_activities: bool | None = None


class DescribeScalingActivitiesOutput(Shape):
    scaling_activities: list[ScalingActivity]
    next_token: str | None = None


# --- Shipway's REST API: a variant's scaling, named by its path ---------------------------------


class ScalableTargetUpdate(Shape):
    """RegisterScalableTarget's settings, for a variant the path names."""

    min_capacity: Capacity | None = None
    max_capacity: Capacity | None = None
    role_arn: Annotated[str, StringConstraints(min_length=1, max_length=1600)] | None = Field(
        default=None, alias="RoleARN"
    )
    suspended_state: SuspendedState | None = None


class ScalingPolicyDefinition(Shape):
    """PutScalingPolicy's definition, for a policy and variant the path names."""

    policy_type: PolicyType | None = None
    step_scaling_policy_configuration: StepScalingPolicyConfiguration | None = None
    target_tracking_scaling_policy_configuration: (
        TargetTrackingScalingPolicyConfiguration | None
    ) = None


class AlarmStateSummary(Shape):
    alarm_name: str
    state_value: str
    """OK, ALARM, INSUFFICIENT_DATA, or MISSING when the alarm was deleted."""


class VariantScaling(Shape):
    """One scalable target at a glance: its bounds, the variant's desired capacity now, its
    policies and the states of their alarms."""

    variant_name: str
    scalable_target: ScalableTarget
    desired_capacity: int | None = None
    scaling_policies: list[ScalingPolicy]
    alarms: list[AlarmStateSummary]


class EndpointScaling(Shape):
    endpoint_name: str
    variants: list[VariantScaling]
