"""Model: a name and one or more containers, each a runtime, a model artifact and an environment."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, StringConstraints, field_validator, model_validator

from shipway.domain.names import ENTITY_NAME_PATTERN, ModelName
from shipway.domain.shape import Shape

__all__ = [
    "ContainerDefinition",
    "ContainerMode",
    "CreateModelInput",
    "CreateModelOutput",
    "ExecutionMode",
    "InferenceExecutionConfig",
    "Model",
    "ModelSummary",
    "Tag",
]

S3_URI_PATTERN = r"^(https|s3)://([^/]+)/?(.*)$"
ROLE_ARN_PATTERN = r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$"
ExecutionRoleArn = Annotated[
    str, StringConstraints(min_length=20, max_length=2048, pattern=ROLE_ARN_PATTERN)
]
_ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_ENVIRONMENT_BYTES = 32 * 1024


class ContainerMode(StrEnum):
    SINGLE_MODEL = "SingleModel"
    MULTI_MODEL = "MultiModel"


class ExecutionMode(StrEnum):
    SERIAL = "Serial"
    DIRECT = "Direct"


class Tag(Shape):
    key: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    value: Annotated[str, StringConstraints(max_length=256)]


class ContainerDefinition(Shape):
    """One container of a model. ``image`` names the runtime that serves the artifact."""

    container_hostname: (
        Annotated[str, StringConstraints(max_length=63, pattern=ENTITY_NAME_PATTERN)] | None
    ) = None
    image: Annotated[str, StringConstraints(max_length=255, pattern=r"^[\S]+$")] | None = None
    image_config: ImageConfig | None = None
    mode: ContainerMode | None = None
    model_data_url: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """An S3 URI, as SageMaker takes; Shipway also takes local paths and any fsspec URL."""
    model_data_source: ModelDataSource | None = None
    additional_model_data_sources: Annotated[list[dict[str, Any]], Field(max_length=5)] | None = (
        None
    )
    environment: dict[str, str] | None = None
    model_package_name: str | None = None
    inference_specification_name: str | None = None
    multi_model_config: MultiModelConfig | None = None

    @field_validator("environment")
    @classmethod
    def _environment(cls, env: dict[str, str] | None) -> dict[str, str] | None:
        if env is None:
            return env
        if len(env) > 100:
            raise ValueError("Environment may hold at most 100 variables.")
        for key, value in env.items():
            if not _ENV_KEY.match(key) or len(key) > 1024:
                raise ValueError(
                    f"Environment variable name '{key}' must match [a-zA-Z_][a-zA-Z0-9_]* "
                    "and be at most 1024 characters."
                )
            if len(value) > 1024:
                raise ValueError(f"Environment variable '{key}' is longer than 1024 characters.")
        return env


class RepositoryAuthConfig(Shape):
    repository_credentials_provider_arn: Annotated[
        str, StringConstraints(min_length=1, max_length=2048)
    ]


class RepositoryAccessMode(StrEnum):
    PLATFORM = "Platform"
    VPC = "Vpc"


class ImageConfig(Shape):
    repository_access_mode: RepositoryAccessMode
    repository_auth_config: RepositoryAuthConfig | None = None


class S3DataType(StrEnum):
    S3_PREFIX = "S3Prefix"
    S3_OBJECT = "S3Object"


class CompressionType(StrEnum):
    NONE = "None"
    GZIP = "Gzip"


class S3DataSource(Shape):
    s3_uri: Annotated[str, StringConstraints(max_length=1024, pattern=S3_URI_PATTERN)]
    s3_data_type: S3DataType
    compression_type: CompressionType
    model_access_config: dict[str, Any] | None = None
    hub_access_config: dict[str, Any] | None = None
    manifest_s3_uri: str | None = None
    e_tag: str | None = Field(default=None, alias="ETag")
    manifest_etag: str | None = None


class ModelDataSource(Shape):
    s3_data_source: S3DataSource | None = None


class ModelCacheSetting(StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"


class MultiModelConfig(Shape):
    model_cache_setting: ModelCacheSetting | None = None


class VpcConfig(Shape):
    security_group_ids: Annotated[
        list[Annotated[str, StringConstraints(max_length=32, pattern=r"^[-0-9a-zA-Z]+$")]],
        Field(min_length=1, max_length=5),
    ]
    subnets: Annotated[
        list[Annotated[str, StringConstraints(max_length=32, pattern=r"^[-0-9a-zA-Z]+$")]],
        Field(min_length=1, max_length=16),
    ]


class InferenceExecutionConfig(Shape):
    mode: ExecutionMode


class CreateModelInput(Shape):
    model_name: ModelName
    primary_container: ContainerDefinition | None = None
    containers: Annotated[list[ContainerDefinition], Field(max_length=15)] | None = None
    inference_execution_config: InferenceExecutionConfig | None = None
    execution_role_arn: ExecutionRoleArn | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    vpc_config: VpcConfig | None = None
    enable_network_isolation: bool | None = None

    @model_validator(mode="after")
    def _containers(self) -> Self:
        if (self.primary_container is None) == (self.containers is None):
            raise ValueError("Specify exactly one of PrimaryContainer and Containers.")
        if self.containers is not None and not self.containers:
            raise ValueError("Containers must hold at least one container.")
        total = sum(
            len(k) + len(v) for c in self.all_containers() for k, v in (c.environment or {}).items()
        )
        if total > MAX_ENVIRONMENT_BYTES:
            raise ValueError("The environment variables of all containers together exceed 32 KB.")
        return self

    def all_containers(self) -> list[ContainerDefinition]:
        if self.primary_container is not None:
            return [self.primary_container]
        return list(self.containers or [])


class CreateModelOutput(Shape):
    model_arn: str


class Model(CreateModelInput):
    """A model as stored and described: the create request plus its ARN and creation time."""

    model_arn: str
    creation_time: datetime


class ModelSummary(Shape):
    model_name: str
    model_arn: str
    creation_time: datetime
