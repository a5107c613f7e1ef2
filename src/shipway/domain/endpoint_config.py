"""Endpoint configuration: the production variants an endpoint serves, and how."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, StringConstraints, model_validator

from shipway.domain.async_inference import AsyncInferenceConfig
from shipway.domain.model import ExecutionRoleArn, Tag, VpcConfig
from shipway.domain.names import EntityName, ModelName
from shipway.domain.shape import Shape

__all__ = [
    "MAX_VARIANTS",
    "MAX_VARIANT_WEIGHT",
    "CreateEndpointConfigInput",
    "CreateEndpointConfigOutput",
    "EndpointConfig",
    "EndpointConfigSummary",
    "ProductionVariant",
    "RoutingConfig",
    "RoutingStrategy",
    "ServerlessConfig",
    "VariantWeight",
]

MAX_VARIANTS = 10
MAX_VARIANT_WEIGHT = 1e307
"""The largest variant weight: ten of them (two fleets' during a deployment, each scaled by its
share of traffic) still add up to a finite number, so the traffic split never sees infinity."""

VariantWeight = Annotated[float, Field(ge=0, le=MAX_VARIANT_WEIGHT, allow_inf_nan=False)]
"""A variant's weight (InitialVariantWeight, DesiredWeight): finite, 0 to 1e307."""


class RoutingStrategy(StrEnum):
    LEAST_OUTSTANDING_REQUESTS = "LEAST_OUTSTANDING_REQUESTS"
    RANDOM = "RANDOM"


class RoutingConfig(Shape):
    routing_strategy: RoutingStrategy


class ServerlessConfig(Shape):
    memory_size_in_mb: Annotated[int, Field(ge=1024, le=6144, alias="MemorySizeInMB")]
    max_concurrency: Annotated[int, Field(ge=1, le=200)]
    provisioned_concurrency: Annotated[int, Field(ge=1, le=200)] | None = None

    @model_validator(mode="after")
    def _sizes(self) -> Self:
        if self.memory_size_in_mb % 1024:
            raise ValueError(
                f"MemorySizeInMB {self.memory_size_in_mb} must be one of 1024, 2048, 3072, 4096, "
                "5120 or 6144."
            )
        if self.provisioned_concurrency and self.provisioned_concurrency > self.max_concurrency:
            raise ValueError(
                f"ProvisionedConcurrency {self.provisioned_concurrency} must not exceed "
                f"MaxConcurrency {self.max_concurrency}."
            )
        return self


class ProductionVariant(Shape):
    variant_name: EntityName
    model_name: ModelName | None = None
    initial_instance_count: Annotated[int, Field(ge=1)] | None = None
    instance_type: Annotated[str, StringConstraints(max_length=64)] | None = None
    initial_variant_weight: VariantWeight | None = None
    accelerator_type: str | None = None
    core_dump_config: dict[str, Any] | None = None
    serverless_config: ServerlessConfig | None = None
    volume_size_in_gb: Annotated[int, Field(ge=1, le=512)] | None = Field(
        default=None, alias="VolumeSizeInGB"
    )
    model_data_download_timeout_in_seconds: Annotated[int, Field(ge=60, le=3600)] | None = None
    container_startup_health_check_timeout_in_seconds: (
        Annotated[int, Field(ge=60, le=3600)] | None
    ) = None
    enable_ssm_access: bool | None = Field(default=None, alias="EnableSSMAccess")
    managed_instance_scaling: dict[str, Any] | None = None
    routing_config: RoutingConfig | None = None
    inference_ami_version: str | None = None
    capacity_reservation_config: dict[str, Any] | None = None
    instance_pools: list[dict[str, Any]] | None = None
    variant_instance_provision_timeout_in_seconds: int | None = None

    @property
    def weight(self) -> float:
        return 1.0 if self.initial_variant_weight is None else self.initial_variant_weight

    @property
    def routing_strategy(self) -> RoutingStrategy:
        if self.routing_config is None:
            return RoutingStrategy.LEAST_OUTSTANDING_REQUESTS
        return self.routing_config.routing_strategy


class CreateEndpointConfigInput(Shape):
    endpoint_config_name: EntityName
    production_variants: Annotated[
        list[ProductionVariant], Field(min_length=1, max_length=MAX_VARIANTS)
    ]
    shadow_production_variants: (
        Annotated[list[ProductionVariant], Field(min_length=1, max_length=MAX_VARIANTS)] | None
    ) = None
    data_capture_config: dict[str, Any] | None = None
    async_inference_config: AsyncInferenceConfig | None = None
    kms_key_id: Annotated[str, StringConstraints(max_length=2048)] | None = None
    execution_role_arn: ExecutionRoleArn | None = None
    vpc_config: VpcConfig | None = None
    enable_network_isolation: bool | None = None
    explainer_config: dict[str, Any] | None = None
    metrics_config: dict[str, Any] | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None

    @model_validator(mode="after")
    def _variants(self) -> Self:
        seen: set[str] = set()
        for variant in self.all_variants():
            key = variant.variant_name.lower()
            if key in seen:
                raise ValueError(
                    f"Variant name '{variant.variant_name}' is used more than once; "
                    "variant names must be unique within an endpoint configuration."
                )
            seen.add(key)
            if variant.model_name is None:
                raise ValueError(f"Variant '{variant.variant_name}' must name a ModelName.")
            serverless = variant.serverless_config is not None
            instances = variant.instance_type is not None or variant.initial_instance_count
            if serverless and instances:
                raise ValueError(
                    f"Variant '{variant.variant_name}' cannot have both ServerlessConfig and "
                    "InstanceType/InitialInstanceCount."
                )
            if not serverless and (
                variant.instance_type is None or variant.initial_instance_count is None
            ):
                raise ValueError(
                    f"Variant '{variant.variant_name}' needs InstanceType and "
                    "InitialInstanceCount (or a ServerlessConfig)."
                )
        shadows = self.shadow_production_variants
        if shadows is not None and (len(shadows) != 1 or len(self.production_variants) != 1):
            raise ValueError(
                "An endpoint configuration with ShadowProductionVariants must have exactly one "
                "production variant and one shadow variant; it has "
                f"{len(self.production_variants)} and {len(shadows)}."
            )
        serverless = any(v.serverless_config is not None for v in self.all_variants())
        if shadows and serverless:
            raise ValueError("Shadow variants cannot be used with serverless variants.")
        if serverless and len(self.production_variants) != 1:
            raise ValueError(
                "A serverless endpoint configuration must have exactly one production variant; "
                f"it has {len(self.production_variants)}."
            )
        if serverless and self.data_capture_config is not None:
            raise ValueError("DataCaptureConfig cannot be used with serverless variants.")
        if serverless and self.async_inference_config is not None:
            raise ValueError("AsyncInferenceConfig cannot be used with serverless variants.")
        if shadows and self.async_inference_config is not None:
            raise ValueError("Shadow variants cannot be used with AsyncInferenceConfig.")
        if self.production_variants and all(v.weight == 0 for v in self.production_variants):
            raise ValueError(
                "At least one production variant must have an InitialVariantWeight above 0."
            )
        return self

    def all_variants(self) -> list[ProductionVariant]:
        return [*self.production_variants, *(self.shadow_production_variants or [])]


class CreateEndpointConfigOutput(Shape):
    endpoint_config_arn: str


class EndpointConfig(CreateEndpointConfigInput):
    endpoint_config_arn: str
    creation_time: datetime


class EndpointConfigSummary(Shape):
    endpoint_config_name: str
    endpoint_config_arn: str
    creation_time: datetime
