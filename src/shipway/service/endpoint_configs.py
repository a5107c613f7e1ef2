"""Endpoint configuration operations: create, describe, list, delete."""

from __future__ import annotations

from shipway.domain.clock import Clock
from shipway.domain.endpoint_config import (
    CreateEndpointConfigInput,
    CreateEndpointConfigOutput,
    EndpointConfig,
    EndpointConfigSummary,
)
from shipway.domain.errors import NotFound, ValidationError
from shipway.domain.instance_types import InstanceTypeCatalog
from shipway.domain.listing import ListInput
from shipway.domain.names import Account
from shipway.store.metadata import MetadataStore

__all__ = ["EndpointConfigService"]

KIND = "endpoint configuration"
ARN_KIND = "endpoint-config"


class EndpointConfigService:
    def __init__(
        self,
        store: MetadataStore,
        catalog: InstanceTypeCatalog,
        account: Account,
        clock: Clock,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._account = account
        self._clock = clock

    def arn(self, name: str) -> str:
        return self._account.arn(ARN_KIND, name)

    def create_endpoint_config(
        self, request: CreateEndpointConfigInput
    ) -> CreateEndpointConfigOutput:
        unsupported = {
            "DataCaptureConfig": request.data_capture_config,
            "AsyncInferenceConfig": request.async_inference_config,
        }
        for field, value in unsupported.items():
            if value is not None:
                raise ValidationError(f"{field} is not supported yet.")
        for variant in request.all_variants():
            if variant.instance_type is not None:
                self._catalog.get(variant.instance_type)
            model_name = variant.model_name or ""
            if self._store.models.get(model_name) is None:
                raise NotFound("model", model_name, self._account.arn("model", model_name))
        arn = self.arn(request.endpoint_config_name)
        config = EndpointConfig(
            **request.model_dump(), endpoint_config_arn=arn, creation_time=self._clock.now()
        )
        self._store.endpoint_configs.add(config, KIND, arn)
        return CreateEndpointConfigOutput(endpoint_config_arn=arn)

    def describe_endpoint_config(self, name: str) -> EndpointConfig:
        config = self._store.endpoint_configs.get(name)
        if config is None:
            raise NotFound(KIND, name, self.arn(name))
        return config

    def list_endpoint_configs(
        self, query: ListInput
    ) -> tuple[list[EndpointConfigSummary], str | None]:
        configs, token = self._store.endpoint_configs.page(query)
        return [
            EndpointConfigSummary(
                endpoint_config_name=c.endpoint_config_name,
                endpoint_config_arn=c.endpoint_config_arn,
                creation_time=c.creation_time,
            )
            for c in configs
        ], token

    def delete_endpoint_config(self, name: str) -> None:
        """Delete the configuration, even while endpoints use it (as SageMaker does): an
        endpoint keeps its own copy (``Endpoint.config``) and still names it in
        DescribeEndpoint. The name can be used again at once."""
        self.describe_endpoint_config(name)
        self._store.endpoint_configs.remove(name)
