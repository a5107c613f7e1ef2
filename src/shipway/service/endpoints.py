"""Endpoint operations: create, describe, list, delete.

These only write desired state (an :class:`Endpoint` record with its status) and wake the
controller, which starts and stops instances and moves the status on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shipway.domain.clock import Clock
from shipway.domain.endpoint import (
    CreateEndpointInput,
    CreateEndpointOutput,
    DeployedImage,
    DescribeEndpointOutput,
    Endpoint,
    EndpointStatus,
    EndpointSummary,
    ProductionVariantSummary,
    UpdateEndpointWeightsAndCapacitiesInput,
    VariantState,
)
from shipway.domain.errors import InvalidState, NotFound, ResourceLimitExceeded, ValidationError
from shipway.domain.instance import Instance, InstanceStatus
from shipway.domain.listing import ListEndpointsInput
from shipway.domain.names import Account
from shipway.store.metadata import MetadataStore

__all__ = ["EndpointService"]

KIND = "endpoint"


class EndpointService:
    def __init__(
        self,
        store: MetadataStore,
        account: Account,
        clock: Clock,
        on_change: Callable[[str], None] = lambda _name: None,
        max_instances: int | None = None,
    ) -> None:
        self._max_instances = max_instances
        self._store = store
        self._account = account
        self._clock = clock
        self._on_change = on_change

    def arn(self, name: str) -> str:
        return self._account.arn(KIND, name)

    def create_endpoint(self, request: CreateEndpointInput) -> CreateEndpointOutput:
        if request.deployment_config is not None:
            raise ValidationError("DeploymentConfig is not supported yet.")
        config = self._store.endpoint_configs.get(request.endpoint_config_name)
        if config is None:
            raise NotFound(
                "endpoint configuration",
                request.endpoint_config_name,
                self._account.arn("endpoint-config", request.endpoint_config_name),
            )
        for variant in config.production_variants:
            model_name = variant.model_name or ""
            if self._store.models.get(model_name) is None:
                raise NotFound("model", model_name, self._account.arn("model", model_name))
        self._check_quota(sum(v.initial_instance_count or 0 for v in config.production_variants))
        now = self._clock.now()
        arn = self.arn(request.endpoint_name)
        endpoint = Endpoint(
            endpoint_name=request.endpoint_name,
            endpoint_arn=arn,
            endpoint_config_name=config.endpoint_config_name,
            endpoint_status=EndpointStatus.CREATING,
            creation_time=now,
            last_modified_time=now,
            config=config,
            variants=[
                VariantState(
                    variant_name=v.variant_name,
                    desired_weight=v.weight,
                    desired_instance_count=v.initial_instance_count or 0,
                )
                for v in config.production_variants
            ],
            tags=request.tags,
        )
        self._store.endpoints.add(endpoint, KIND, arn)
        self._on_change(endpoint.endpoint_name)
        return CreateEndpointOutput(endpoint_arn=arn)

    def update_endpoint_weights_and_capacities(
        self, request: UpdateEndpointWeightsAndCapacitiesInput
    ) -> CreateEndpointOutput:
        """Change variants' weights and instance counts in place (SageMaker §5.5).

        The endpoint is ``Updating`` until the controller has every variant at its new count;
        new weights route at once. Variants not named keep what they have.
        """
        endpoint = self.get(request.endpoint_name)
        if endpoint.endpoint_status is not EndpointStatus.IN_SERVICE:
            raise InvalidState(
                f'Cannot update endpoint "{endpoint.endpoint_arn}" while it is '
                f"{endpoint.endpoint_status.value}; it must be InService."
            )
        changes = {c.variant_name: c for c in request.desired_weights_and_capacities}
        known = {v.variant_name for v in endpoint.variants}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValidationError(
                f"Endpoint {endpoint.endpoint_name} has no variant {', '.join(unknown)}; its "
                f"variants are {', '.join(sorted(known))}."
            )
        if any(c.serverless_update_config is not None for c in changes.values()):
            raise ValidationError("ServerlessUpdateConfig is not supported yet.")
        variants = [
            v.model_copy(
                update={
                    "desired_weight": _given(
                        changes, v.variant_name, "desired_weight", v.desired_weight
                    ),
                    "desired_instance_count": _given(
                        changes, v.variant_name, "desired_instance_count", v.desired_instance_count
                    ),
                }
            )
            for v in endpoint.variants
        ]
        if not any(v.desired_weight > 0 and v.desired_instance_count > 0 for v in variants):
            raise ValidationError(
                "At least one variant must keep a weight above 0 and at least one instance."
            )
        growth = sum(v.desired_instance_count for v in variants) - sum(
            v.desired_instance_count for v in endpoint.variants
        )
        self._check_quota(max(0, growth))
        now = self._clock.now()

        def updating(current: Endpoint) -> Endpoint:
            if current.endpoint_status is not EndpointStatus.IN_SERVICE:
                raise InvalidState(
                    f'Cannot update endpoint "{current.endpoint_arn}" while it is '
                    f"{current.endpoint_status.value}; it must be InService."
                )
            return current.model_copy(
                update={
                    "variants": variants,
                    "endpoint_status": EndpointStatus.UPDATING,
                    "last_modified_time": now,
                }
            )

        self._store.endpoints.update(endpoint.endpoint_name, updating)
        self._on_change(endpoint.endpoint_name)
        return CreateEndpointOutput(endpoint_arn=endpoint.endpoint_arn)

    def _check_quota(self, more: int) -> None:
        if self._max_instances is None:
            return
        asked = sum(
            v.desired_instance_count
            for e in self._store.endpoints.all()
            if e.endpoint_status is not EndpointStatus.DELETING
            for v in e.variants
        )
        if asked + more > self._max_instances:
            raise ResourceLimitExceeded(
                f"The endpoints would need {asked + more} instances; this server allows "
                f"{self._max_instances} (SHIPWAY_MAX_INSTANCES). Delete endpoints or raise the "
                "limit."
            )

    def get(self, name: str) -> Endpoint:
        endpoint = self._store.endpoints.get(name)
        if endpoint is None:
            raise NotFound(KIND, name, self.arn(name))
        return endpoint

    def describe_endpoint(self, name: str) -> DescribeEndpointOutput:
        endpoint = self.get(name)
        instances = self._store.instances.for_endpoint(endpoint.endpoint_name)
        serving = endpoint.endpoint_status in (EndpointStatus.IN_SERVICE, EndpointStatus.UPDATING)
        summaries = []
        for variant, state in zip(
            endpoint.config.production_variants, endpoint.variants, strict=True
        ):
            model = self._store.models.get(variant.model_name or "")
            image = model.all_containers()[0].image if model is not None else None
            in_service = sum(
                1
                for i in instances
                if i.variant_name == variant.variant_name
                and i.status is InstanceStatus.IN_SERVICE
                and i.generation == endpoint.generation
            )
            summaries.append(
                ProductionVariantSummary(
                    variant_name=variant.variant_name,
                    deployed_images=[
                        DeployedImage(
                            specified_image=image,
                            resolved_image=image,
                            resolution_time=endpoint.creation_time,
                        )
                    ],
                    current_weight=state.desired_weight if serving else None,
                    desired_weight=state.desired_weight,
                    current_instance_count=in_service,
                    desired_instance_count=state.desired_instance_count,
                    routing_config=variant.routing_config,
                )
            )
        return DescribeEndpointOutput(
            endpoint_name=endpoint.endpoint_name,
            endpoint_arn=endpoint.endpoint_arn,
            endpoint_config_name=endpoint.endpoint_config_name,
            production_variants=summaries,
            endpoint_status=endpoint.endpoint_status,
            failure_reason=endpoint.failure_reason,
            creation_time=endpoint.creation_time,
            last_modified_time=endpoint.last_modified_time,
        )

    def list_instances(self, name: str) -> list[Instance]:
        """The instances running for an endpoint, as the controller last recorded them."""
        endpoint = self.get(name)
        return self._store.instances.for_endpoint(endpoint.endpoint_name)

    def list_endpoints(self, query: ListEndpointsInput) -> tuple[list[EndpointSummary], str | None]:
        endpoints, token = self._store.endpoints.page(query)
        return [
            EndpointSummary(
                endpoint_name=e.endpoint_name,
                endpoint_arn=e.endpoint_arn,
                creation_time=e.creation_time,
                last_modified_time=e.last_modified_time,
                endpoint_status=e.endpoint_status,
            )
            for e in endpoints
        ], token

    def delete_endpoint(self, name: str) -> None:
        endpoint = self.get(name)
        if endpoint.endpoint_status is EndpointStatus.DELETING:
            return
        now = self._clock.now()

        def deleting(current: Endpoint) -> Endpoint:
            if current.endpoint_status in (EndpointStatus.UPDATING, EndpointStatus.ROLLING_BACK):
                raise InvalidState(
                    f'Cannot delete endpoint "{current.endpoint_arn}" while it is '
                    f"{current.endpoint_status.value}."
                )
            if current.endpoint_status is EndpointStatus.DELETING:
                return current
            return current.model_copy(
                update={"endpoint_status": EndpointStatus.DELETING, "last_modified_time": now}
            )

        if self._store.endpoints.update(endpoint.endpoint_name, deleting) is None:
            raise NotFound(KIND, name, self.arn(name))
        self._on_change(endpoint.endpoint_name)


def _given(changes: dict[str, Any], variant: str, field: str, current: Any) -> Any:
    """The new value of a variant's field if the request gives one, else the current one."""
    change = changes.get(variant)
    value = getattr(change, field, None) if change is not None else None
    return current if value is None else value
