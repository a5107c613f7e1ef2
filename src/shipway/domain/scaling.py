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

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from shipway.domain.errors import NotFound, ValidationError
from shipway.domain.shape import Shape

__all__ = [
    "AdjustmentType",
    "Alarm",
    "CustomizedMetricSpecification",
    "DeleteScalingPolicyInput",
    "DeregisterScalableTargetInput",
    "DescribeScalableTargetsInput",
    "DescribeScalableTargetsOutput",
    "DescribeScalingActivitiesInput",
    "DescribeScalingActivitiesOutput",
    "DescribeScalingPoliciesInput",
    "DescribeScalingPoliciesOutput",
    "MetricAggregationType",
    "MetricDimension",
    "MetricStatistic",
    "NotScaledReason",
    "ObjectNotFound",
    "PolicyType",
    "PredefinedMetricSpecification",
    "PredefinedMetricType",
    "PutScalingPolicyInput",
    "PutScalingPolicyOutput",
    "RegisterScalableTargetInput",
    "RegisterScalableTargetOutput",
    "ScalableDimension",
    "ScalableTarget",
    "ScalingActivity",
    "ScalingActivityStatusCode",
    "ScalingPolicy",
    "ServiceNamespace",
    "StepAdjustment",
    "StepScalingPolicyConfiguration",
    "SuspendedState",
    "TargetTrackingScalingPolicyConfiguration",
    "VariantId",
    "parse_resource_id",
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
    """A scalable target or scaling policy that is not there (``ObjectNotFoundException``)."""

    code = "ObjectNotFoundException"


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


class StepAdjustment(Shape):
    metric_interval_lower_bound: float | None = None
    metric_interval_upper_bound: float | None = None
    scaling_adjustment: int


class StepScalingPolicyConfiguration(Shape):
    adjustment_type: AdjustmentType | None = None
    step_adjustments: list[StepAdjustment] | None = None
    min_adjustment_magnitude: int | None = None
    cooldown: Cooldown | None = None
    metric_aggregation_type: MetricAggregationType | None = None

    @property
    def cooldown_seconds(self) -> int:
        return DEFAULT_COOLDOWN_SECONDS if self.cooldown is None else self.cooldown


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
    max_results: Annotated[int, Field(ge=1, le=50)] | None = None
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
