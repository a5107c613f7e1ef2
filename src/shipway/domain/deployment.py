"""Deployment: how an endpoint moves to a new configuration, and where such a move stands.

The request side is SageMaker's ``DeploymentConfig`` (blue/green with all-at-once, canary or
linear traffic shifting, or rolling batches; optional alarms that roll it back). The persisted
side is :class:`Deployment`: the new fleet, the plan of :class:`Step`\\ s worked out when the
update was accepted, and the step and phase the controller has reached. It is stored with the
endpoint, so a restarted server picks the deployment up where it stood.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from shipway.domain.endpoint_config import EndpointConfig, ServerlessConfig
from shipway.domain.model import Model
from shipway.domain.names import EntityName
from shipway.domain.shape import Shape

__all__ = [
    "AlarmRef",
    "AutoRollbackConfig",
    "BlueGreenUpdatePolicy",
    "CapacitySize",
    "CapacitySizeType",
    "Deployment",
    "DeploymentConfig",
    "DeploymentPhase",
    "RollingUpdatePolicy",
    "Step",
    "TrafficRoutingConfig",
    "TrafficRoutingType",
    "UpdateEndpointInput",
    "VariantProperty",
    "VariantState",
]

DEFAULT_MAXIMUM_EXECUTION_TIMEOUT = 28800
"""SageMaker's upper bound for MaximumExecutionTimeoutInSeconds, used when none is given."""


class CapacitySizeType(StrEnum):
    INSTANCE_COUNT = "INSTANCE_COUNT"
    CAPACITY_PERCENT = "CAPACITY_PERCENT"


class CapacitySize(Shape):
    type: CapacitySizeType
    value: Annotated[int, Field(ge=1)]

    def describe(self) -> str:
        if self.type is CapacitySizeType.CAPACITY_PERCENT:
            return f"{self.value}%"
        return f"{self.value} instance{'s' if self.value != 1 else ''}"


class TrafficRoutingType(StrEnum):
    ALL_AT_ONCE = "ALL_AT_ONCE"
    CANARY = "CANARY"
    LINEAR = "LINEAR"


class TrafficRoutingConfig(Shape):
    type: TrafficRoutingType
    wait_interval_in_seconds: Annotated[int, Field(ge=0, le=3600)]
    canary_size: CapacitySize | None = None
    linear_step_size: CapacitySize | None = None

    @model_validator(mode="after")
    def _sizes(self) -> Self:
        if self.type is TrafficRoutingType.CANARY and self.canary_size is None:
            raise ValueError("TrafficRoutingConfiguration of Type CANARY needs a CanarySize.")
        if self.type is TrafficRoutingType.LINEAR and self.linear_step_size is None:
            raise ValueError("TrafficRoutingConfiguration of Type LINEAR needs a LinearStepSize.")
        if self.type is not TrafficRoutingType.CANARY and self.canary_size is not None:
            raise ValueError(f"CanarySize applies only to Type CANARY, not {self.type.value}.")
        if self.type is not TrafficRoutingType.LINEAR and self.linear_step_size is not None:
            raise ValueError(f"LinearStepSize applies only to Type LINEAR, not {self.type.value}.")
        return self


class BlueGreenUpdatePolicy(Shape):
    traffic_routing_configuration: TrafficRoutingConfig
    termination_wait_in_seconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    maximum_execution_timeout_in_seconds: Annotated[int, Field(ge=600, le=28800)] | None = None


class RollingUpdatePolicy(Shape):
    maximum_batch_size: CapacitySize
    wait_interval_in_seconds: Annotated[int, Field(ge=0, le=3600)]
    maximum_execution_timeout_in_seconds: Annotated[int, Field(ge=600, le=28800)] | None = None
    rollback_maximum_batch_size: CapacitySize | None = None


class AlarmRef(Shape):
    alarm_name: Annotated[str, StringConstraints(min_length=1, max_length=255)]


class AutoRollbackConfig(Shape):
    alarms: Annotated[list[AlarmRef], Field(min_length=1, max_length=10)] | None = None

    @property
    def alarm_names(self) -> list[str]:
        return [a.alarm_name for a in self.alarms or []]


class DeploymentConfig(Shape):
    blue_green_update_policy: BlueGreenUpdatePolicy | None = None
    rolling_update_policy: RollingUpdatePolicy | None = None
    auto_rollback_configuration: AutoRollbackConfig | None = None

    @model_validator(mode="after")
    def _one_policy(self) -> Self:
        if self.blue_green_update_policy is not None and self.rolling_update_policy is not None:
            raise ValueError(
                "DeploymentConfig takes either BlueGreenUpdatePolicy or RollingUpdatePolicy, "
                "not both."
            )
        return self

    @property
    def alarm_names(self) -> list[str]:
        config = self.auto_rollback_configuration
        return config.alarm_names if config is not None else []

    @property
    def guarded(self) -> bool:
        """Whether the caller chose a policy (guardrails), rather than the default."""
        return self.blue_green_update_policy is not None or self.rolling_update_policy is not None


class VariantProperty(StrEnum):
    DESIRED_INSTANCE_COUNT = "DesiredInstanceCount"
    DESIRED_WEIGHT = "DesiredWeight"
    DATA_CAPTURE_CONFIG = "DataCaptureConfig"


class VariantPropertyRef(Shape):
    variant_property_type: VariantProperty


class UpdateEndpointInput(Shape):
    endpoint_name: EntityName
    endpoint_config_name: EntityName
    retain_all_variant_properties: bool | None = None
    exclude_retained_variant_properties: (
        Annotated[list[VariantPropertyRef], Field(max_length=3)] | None
    ) = None
    deployment_config: DeploymentConfig | None = None
    retain_deployment_config: bool | None = None


class DeploymentPhase(StrEnum):
    PROVISIONING = "Provisioning"
    """Starting the new instances the current step needs; traffic as before."""
    BAKING = "Baking"
    """The step's share of traffic is on the new fleet; watching the alarms."""
    TERMINATION_WAIT = "TerminationWait"
    """All traffic on the new fleet; the old one kept for a fast rollback, then removed."""
    DELETING_OLD_FLEET = "DeletingOldFleet"
    """All traffic on the new fleet for good: the old fleet drains and stops."""
    ROLLING_BACK = "RollingBack"
    """An alarm fired or a step failed: traffic goes back to the old fleet."""


class Step(Shape):
    """One traffic shift: the new fleet's share of traffic once its instances are up."""

    share: float
    """The fraction of production traffic the new fleet takes in this step (0..1)."""
    new_counts: dict[str, int]
    """Instances of the new fleet, per variant, needed before the shift."""
    old_counts: dict[str, int]
    """Instances of the old fleet, per variant, kept after this step's bake."""


class VariantState(Shape):
    """What an endpoint wants of one production variant: its weight and instance count, or for
    a serverless variant its serverless configuration (memory, concurrency limit, provisioned
    concurrency), which UpdateEndpointWeightsAndCapacities and the autoscaler change."""

    variant_name: str
    desired_weight: float
    desired_instance_count: int
    desired_serverless_config: ServerlessConfig | None = None


class Deployment(Shape):
    """An UpdateEndpoint in progress, as stored with the endpoint."""

    endpoint_config_name: str
    config: EndpointConfig
    """A private copy of the new configuration."""
    models: list[Model] = Field(default_factory=list)
    """Private copies of the models the new configuration names (see ``Endpoint.models``)."""
    variants: list[VariantState]
    """The new fleet's production variants, weights and counts (after retained properties)."""
    generation: int
    """The generation the new fleet's instances carry."""
    deployment_config: DeploymentConfig
    """The policy in effect (the default blue/green all-at-once when none was given)."""
    steps: list[Step]
    bake_seconds: float
    termination_wait_seconds: float = 0.0
    maximum_execution_seconds: float = DEFAULT_MAXIMUM_EXECUTION_TIMEOUT
    rollback_batch: dict[str, int] | None = None
    """Old instances brought back per rollback batch, per variant (rolling); None: all at once."""
    started: datetime
    step: int = 0
    phase: DeploymentPhase = DeploymentPhase.PROVISIONING
    phase_started: datetime
    share: float = 0.0
    """The new fleet's current share of traffic: what the router uses now."""
    new_counts: dict[str, int]
    """Instances the new fleet should have now, per variant."""
    old_counts: dict[str, int]
    """Instances the old fleet should have now, per variant."""
    old_full_counts: dict[str, int]
    """The old fleet as it was when the deployment began (what a rollback restores)."""
    old_production: list[str] = Field(default_factory=list)
    """The old fleet's production variants (the others in the counts are shadows)."""
    reason: str | None = None
    """Why it is rolling back."""

    @property
    def current_step(self) -> Step:
        return self.steps[min(self.step, len(self.steps) - 1)]
