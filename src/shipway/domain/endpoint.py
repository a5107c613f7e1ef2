"""Endpoint: a stable name routing to the variants of its current configuration."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from shipway.domain.async_inference import AsyncInferenceConfig
from shipway.domain.deployment import Deployment, DeploymentConfig, VariantState
from shipway.domain.endpoint_config import (
    MAX_VARIANTS,
    EndpointConfig,
    RoutingConfig,
    ServerlessConfig,
    VariantWeight,
)
from shipway.domain.model import Model, Tag
from shipway.domain.names import EntityName
from shipway.domain.shape import Shape

__all__ = [
    "SERVING",
    "CreateEndpointInput",
    "CreateEndpointOutput",
    "DeployedImage",
    "DescribeEndpointOutput",
    "DesiredWeightAndCapacity",
    "Endpoint",
    "EndpointStatus",
    "EndpointSummary",
    "InstanceFailure",
    "PendingDeploymentSummary",
    "PendingProductionVariantSummary",
    "ProductionVariantStatus",
    "ProductionVariantSummary",
    "ServerlessUpdateConfig",
    "UpdateEndpointWeightsAndCapacitiesInput",
    "VariantState",
    "VariantStatusValue",
    "find_model",
]


class EndpointStatus(StrEnum):
    OUT_OF_SERVICE = "OutOfService"
    CREATING = "Creating"
    UPDATING = "Updating"
    SYSTEM_UPDATING = "SystemUpdating"
    ROLLING_BACK = "RollingBack"
    IN_SERVICE = "InService"
    DELETING = "Deleting"
    FAILED = "Failed"
    UPDATE_ROLLBACK_FAILED = "UpdateRollbackFailed"


SERVING = frozenset(
    {
        EndpointStatus.IN_SERVICE,
        EndpointStatus.UPDATING,
        EndpointStatus.ROLLING_BACK,
        EndpointStatus.UPDATE_ROLLBACK_FAILED,
    }
)
"""The statuses in which an endpoint takes invocations."""


class CreateEndpointInput(Shape):
    endpoint_name: EntityName
    endpoint_config_name: EntityName
    deployment_config: DeploymentConfig | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None


class CreateEndpointOutput(Shape):
    endpoint_arn: str


class DeployedImage(Shape):
    specified_image: str | None = None
    resolved_image: str | None = None
    resolution_time: datetime | None = None


class VariantStatusValue(StrEnum):
    CREATING = "Creating"
    UPDATING = "Updating"
    DELETING = "Deleting"
    ACTIVATING_TRAFFIC = "ActivatingTraffic"
    BAKING = "Baking"


class ProductionVariantStatus(Shape):
    status: VariantStatusValue
    status_message: str | None = None
    start_time: datetime | None = None


class InstanceFailure(Shape):
    """Why an instance of a variant last failed and was replaced (a Shipway extension of
    DescribeEndpoint: SageMaker replaces instances without saying why)."""

    instance_id: str
    reason: str
    time: datetime | None = None


class ProductionVariantSummary(Shape):
    variant_name: str
    deployed_images: list[DeployedImage] | None = None
    current_weight: float | None = None
    desired_weight: float | None = None
    current_instance_count: int | None = None
    desired_instance_count: int | None = None
    variant_status: list[ProductionVariantStatus] | None = None
    current_serverless_config: ServerlessConfig | None = None
    desired_serverless_config: ServerlessConfig | None = None
    routing_config: RoutingConfig | None = None
    last_instance_failure: InstanceFailure | None = None


class PendingProductionVariantSummary(ProductionVariantSummary):
    instance_type: str | None = None
    accelerator_type: str | None = None


class PendingDeploymentSummary(Shape):
    endpoint_config_name: str
    production_variants: list[PendingProductionVariantSummary] | None = None
    shadow_production_variants: list[PendingProductionVariantSummary] | None = None
    start_time: datetime | None = None


class Endpoint(Shape):
    """An endpoint as stored: its desired state and the status the controller reports."""

    endpoint_name: str
    endpoint_arn: str
    endpoint_config_name: str
    endpoint_status: EndpointStatus
    failure_reason: Annotated[str, StringConstraints(max_length=1024)] | None = None
    creation_time: datetime
    last_modified_time: datetime
    config: EndpointConfig
    """A private copy of the configuration: deleting the named config does not change this."""
    models: list[Model] = Field(default_factory=list)
    """Private copies of the models ``config`` names, taken when it was deployed: instances
    start from these, so deleting a model (or re-creating one of the same name) changes nothing
    the endpoint runs, as on SageMaker. Empty in rows stored before copies were kept (the
    controller then reads the model itself)."""
    variants: list[VariantState]
    generation: int = 1
    """Bumped by each change of configuration; instances carry the generation they serve."""
    deployment_config: DeploymentConfig | None = None
    """The DeploymentConfig of the last UpdateEndpoint (or CreateEndpoint): LastDeploymentConfig."""
    deployment: Deployment | None = None
    """The deployment in progress, if one is."""
    latest_generation: int = 1
    """The highest generation handed out, so a new fleet never shares one with an old fleet."""
    tags: list[Tag] | None = None

    def instances_asked(self) -> int:
        """The instances it counts against the server's quota: none once Deleting; during a
        deployment both fleets, the new one at its largest step."""
        if self.endpoint_status is EndpointStatus.DELETING:
            return 0
        if self.deployment is not None:
            return sum(self.deployment.old_full_counts.values()) + max(
                sum(s.new_counts.values()) for s in self.deployment.steps
            )
        return sum(v.desired_instance_count for v in self.variants)

    def models_in_use(self) -> list[Model]:
        """The model copies its fleets run (all it keeps, whatever its status: instances may
        still be stopping): its own and, during a deployment, the new configuration's."""
        return [*self.models, *(self.deployment.models if self.deployment is not None else [])]


def find_model(models: list[Model], name: str) -> Model | None:
    """The copy of model ``name`` among an endpoint's (names are case-insensitive)."""
    return next((m for m in models if m.model_name.lower() == name.lower()), None)


class EndpointSummary(Shape):
    endpoint_name: str
    endpoint_arn: str
    creation_time: datetime
    last_modified_time: datetime
    endpoint_status: EndpointStatus


class DescribeEndpointOutput(Shape):
    endpoint_name: str
    endpoint_arn: str
    endpoint_config_name: str | None = None
    production_variants: list[ProductionVariantSummary] | None = None
    shadow_production_variants: list[ProductionVariantSummary] | None = None
    data_capture_config: dict[str, Any] | None = None
    endpoint_status: EndpointStatus
    failure_reason: str | None = None
    creation_time: datetime
    last_modified_time: datetime
    last_deployment_config: DeploymentConfig | None = None
    async_inference_config: AsyncInferenceConfig | None = None
    pending_deployment_summary: PendingDeploymentSummary | None = None


class ServerlessUpdateConfig(Shape):
    max_concurrency: Annotated[int, Field(ge=1, le=200)] | None = None
    provisioned_concurrency: Annotated[int, Field(ge=1, le=200)] | None = None


class DesiredWeightAndCapacity(Shape):
    variant_name: EntityName
    desired_weight: VariantWeight | None = None
    desired_instance_count: Annotated[int, Field(ge=0)] | None = None
    serverless_update_config: ServerlessUpdateConfig | None = None


class UpdateEndpointWeightsAndCapacitiesInput(Shape):
    endpoint_name: EntityName
    desired_weights_and_capacities: Annotated[
        list[DesiredWeightAndCapacity], Field(min_length=1, max_length=MAX_VARIANTS)
    ]
