"""Endpoint configuration operations: create, describe, list, delete."""

from __future__ import annotations

from collections.abc import Callable

from shipway.domain.async_inference import AsyncInferenceConfig
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
from shipway.store.locations import Locations
from shipway.store.metadata import MetadataStore
from shipway.store.sources import SourcePolicy

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
        *,
        locations: Locations | None = None,
        topic_exists: Callable[[str], bool] = lambda _arn: True,
    ) -> None:
        """``locations`` checks an async configuration's output paths (default: the allowed
        schemes, any local path), ``topic_exists`` its notification topics."""
        self._locations = locations or Locations(SourcePolicy())
        self._topic_exists = topic_exists
        self._store = store
        self._catalog = catalog
        self._account = account
        self._clock = clock

    def arn(self, name: str) -> str:
        return self._account.arn(ARN_KIND, name)

    def create_endpoint_config(
        self, request: CreateEndpointConfigInput
    ) -> CreateEndpointConfigOutput:
        if request.data_capture_config is not None:
            raise ValidationError("DataCaptureConfig is not supported yet.")
        if request.async_inference_config is not None:
            self._check_async(request.async_inference_config)
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

    def _check_async(self, config: AsyncInferenceConfig) -> None:
        """The output paths are where the server may write; the topics exist."""
        output = config.output_config
        self._locations.check(output.output_path, "S3OutputPath")
        if output.s3_failure_path is not None:
            self._locations.check(output.s3_failure_path, "S3FailurePath")
        notifications = output.notification_config
        for field, topic in (
            ("SuccessTopic", notifications.success_topic if notifications else None),
            ("ErrorTopic", notifications.error_topic if notifications else None),
        ):
            if topic is not None and not self._topic_exists(topic):
                raise ValidationError(f"{field} {topic} is not a topic of this server.")

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
