"""Endpoint operations: create, describe, list, delete.

These only write desired state (an :class:`Endpoint` record with its status) and wake the
controller, which starts and stops instances and moves the status on.
"""

from __future__ import annotations

from collections.abc import Callable

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
