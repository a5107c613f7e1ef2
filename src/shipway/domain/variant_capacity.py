"""A variant's capacity along a scalable dimension: which dimension fits it, what it is now,
a copy of the variant's desired state with another, and the bounds a scalable target may set.

Instance variants scale their instance count (``sagemaker:variant:DesiredInstanceCount``);
serverless variants that have a ProvisionedConcurrency scale it
(``sagemaker:variant:DesiredProvisionedConcurrency``), up to their MaxConcurrency. The desired
serverless configuration is the endpoint's (:class:`~shipway.domain.deployment.VariantState`),
else the variant's as configured.
"""

from __future__ import annotations

from shipway.domain.deployment import VariantState
from shipway.domain.endpoint import Endpoint
from shipway.domain.endpoint_config import ProductionVariant, ServerlessConfig
from shipway.domain.errors import ValidationError
from shipway.domain.scaling import ScalableDimension

__all__ = [
    "check_bounds",
    "check_dimension",
    "desired_capacity",
    "production_variant",
    "serverless_config",
    "with_capacity",
]


def production_variant(endpoint: Endpoint, name: str) -> ProductionVariant | None:
    """The production variant ``name`` of the endpoint's current configuration (shadow
    variants are not scalable)."""
    return next((v for v in endpoint.config.production_variants if v.variant_name == name), None)


def serverless_config(endpoint: Endpoint, variant: ProductionVariant) -> ServerlessConfig | None:
    """The serverless configuration the endpoint wants of the variant now."""
    state = next((s for s in endpoint.variants if s.variant_name == variant.variant_name), None)
    if state is not None and state.desired_serverless_config is not None:
        return state.desired_serverless_config
    return variant.serverless_config


def desired_capacity(
    endpoint: Endpoint, variant: ProductionVariant, dimension: ScalableDimension
) -> int | None:
    """The capacity the endpoint wants of the variant along ``dimension`` (None when the
    variant has none there: no provisioned concurrency, or no desired state)."""
    if dimension is ScalableDimension.PROVISIONED_CONCURRENCY:
        serverless = serverless_config(endpoint, variant)
        return None if serverless is None else serverless.provisioned_concurrency
    state = next((s for s in endpoint.variants if s.variant_name == variant.variant_name), None)
    return None if state is None else state.desired_instance_count


def with_capacity(
    endpoint: Endpoint, state: VariantState, dimension: ScalableDimension, capacity: int
) -> VariantState:
    """A copy of the variant's desired state with ``capacity`` along ``dimension``."""
    if dimension is ScalableDimension.INSTANCE_COUNT:
        return state.model_copy(update={"desired_instance_count": capacity})
    variant = production_variant(endpoint, state.variant_name)
    serverless = None if variant is None else serverless_config(endpoint, variant)
    if serverless is None:
        return state
    return state.model_copy(
        update={
            "desired_serverless_config": serverless.model_copy(
                update={"provisioned_concurrency": capacity}
            )
        }
    )


def check_dimension(
    endpoint: Endpoint, variant: ProductionVariant, dimension: ScalableDimension
) -> None:
    """ValidationError unless the variant scales along ``dimension``."""
    where = f"Variant {variant.variant_name} of endpoint {endpoint.endpoint_name}"
    if variant.serverless_config is not None:
        if dimension is ScalableDimension.INSTANCE_COUNT:
            raise ValidationError(
                f"{where} is serverless: it scales along "
                f"{ScalableDimension.PROVISIONED_CONCURRENCY.value}, not {dimension.value}."
            )
        serverless = serverless_config(endpoint, variant)
        if serverless is None or serverless.provisioned_concurrency is None:
            raise ValidationError(
                f"{where} has no ProvisionedConcurrency to scale: give its ServerlessConfig a "
                "ProvisionedConcurrency first."
            )
    elif dimension is ScalableDimension.PROVISIONED_CONCURRENCY:
        raise ValidationError(
            f"{where} runs on instances: it scales along "
            f"{ScalableDimension.INSTANCE_COUNT.value}, not {dimension.value} (serverless "
            "variants only)."
        )


def check_bounds(
    endpoint: Endpoint,
    variant: ProductionVariant,
    dimension: ScalableDimension,
    low: int,
    high: int,
) -> None:
    """ValidationError unless [``low``, ``high``] is a range the variant may scale in: Min <=
    Max; at least 1 instance for a real-time variant (0 for an asynchronous endpoint, whose
    queue waits); provisioned concurrency from 1 to the variant's MaxConcurrency."""
    if low > high:
        raise ValidationError(
            f"MinCapacity ({low}) must be less than or equal to MaxCapacity ({high})."
        )
    if dimension is ScalableDimension.PROVISIONED_CONCURRENCY:
        serverless = serverless_config(endpoint, variant)
        limit = serverless.max_concurrency if serverless is not None else None
        if low < 1:
            raise ValidationError(f"MinCapacity ({low}) of provisioned concurrency must be >= 1.")
        if limit is not None and high > limit:
            raise ValidationError(
                f"MaxCapacity ({high}) must not exceed the variant's MaxConcurrency ({limit})."
            )
        return
    if low < 1 and endpoint.config.async_inference_config is None:
        raise ValidationError(
            f"MinCapacity ({low}) must be >= 1 for a real-time variant (0 is for asynchronous "
            "inference endpoints)."
        )
