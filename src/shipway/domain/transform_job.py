"""Transform jobs (batch transform): score a dataset already in storage, one output per input
object, without an endpoint.

A job names a model, where its input objects are (every object under an ``S3Prefix``, or those a
``ManifestFile`` lists), how each object splits into records (``SplitType``) and records into
requests (``BatchStrategy``, ``MaxPayloadInMB``), and where outputs go
(``<S3OutputPath>/<key relative to the prefix>.out``). Its status moves
``InProgress`` → ``Completed`` | ``Failed`` (with a ``FailureReason``), or ``Stopping`` →
``Stopped`` when stopped.

The stored job (:class:`TransformJob`) also keeps a copy of its model, taken at creation (the
model may be deleted while the job runs), and its progress, which describe shows as a Shipway
extension (``Progress``; boto3 ignores members its model does not know).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator, model_validator

from shipway.domain.listing import ListInput
from shipway.domain.model import Model, Tag
from shipway.domain.names import ENTITY_NAME_PATTERN, ModelName
from shipway.domain.shape import Shape

__all__ = [
    "MAX_PAYLOAD_MB",
    "AssembleWith",
    "BatchStrategy",
    "CompressionType",
    "CreateTransformJobInput",
    "CreateTransformJobOutput",
    "DataProcessing",
    "DescribeTransformJobOutput",
    "JoinSource",
    "ListTransformJobsInput",
    "ModelClientConfig",
    "S3DataType",
    "SplitType",
    "TransformDataSource",
    "TransformInput",
    "TransformJob",
    "TransformJobProgress",
    "TransformJobStatus",
    "TransformJobSummary",
    "TransformOutput",
    "TransformResources",
    "TransformS3DataSource",
]

MAX_PAYLOAD_MB = 100
"""The largest MaxPayloadInMB, and the most MaxPayloadInMB times MaxConcurrentTransforms may be."""
DEFAULT_PAYLOAD_MB = 6
DEFAULT_INVOCATIONS_TIMEOUT_SECONDS = 600
DEFAULT_INVOCATIONS_MAX_RETRIES = 3
_ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,1023}$")

TransformJobName = Annotated[str, StringConstraints(max_length=63, pattern=ENTITY_NAME_PATTERN)]
Uri = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class TransformJobStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    @property
    def finished(self) -> bool:
        return self in (
            TransformJobStatus.COMPLETED,
            TransformJobStatus.FAILED,
            TransformJobStatus.STOPPED,
        )


class S3DataType(StrEnum):
    MANIFEST_FILE = "ManifestFile"
    S3_PREFIX = "S3Prefix"
    AUGMENTED_MANIFEST_FILE = "AugmentedManifestFile"
    CONVERSE = "Converse"


class CompressionType(StrEnum):
    NONE = "None"
    GZIP = "Gzip"


class SplitType(StrEnum):
    NONE = "None"
    LINE = "Line"
    RECORD_IO = "RecordIO"
    TF_RECORD = "TFRecord"


class BatchStrategy(StrEnum):
    MULTI_RECORD = "MultiRecord"
    SINGLE_RECORD = "SingleRecord"

    @property
    def environment_value(self) -> str:
        """``SAGEMAKER_BATCH_STRATEGY``'s spelling."""
        return "MULTI_RECORD" if self is BatchStrategy.MULTI_RECORD else "SINGLE_RECORD"


class AssembleWith(StrEnum):
    NONE = "None"
    LINE = "Line"


class JoinSource(StrEnum):
    INPUT = "Input"
    NONE = "None"


class TransformS3DataSource(Shape):
    s3_data_type: S3DataType = Field(alias="S3DataType")
    s3_uri: Uri = Field(alias="S3Uri")
    """An ``s3://`` URI as SageMaker takes; Shipway also takes local paths and any fsspec URL."""

    @field_validator("s3_data_type")
    @classmethod
    def _supported(cls, kind: S3DataType) -> S3DataType:
        if kind not in (S3DataType.S3_PREFIX, S3DataType.MANIFEST_FILE):
            raise ValueError(
                f"S3DataType {kind.value} is not supported; use S3Prefix or ManifestFile."
            )
        return kind


class TransformDataSource(Shape):
    s3_data_source: TransformS3DataSource = Field(alias="S3DataSource")


class TransformInput(Shape):
    data_source: TransformDataSource
    content_type: Annotated[str, StringConstraints(max_length=256)] | None = None
    compression_type: CompressionType | None = None
    split_type: SplitType | None = None


class TransformOutput(Shape):
    s3_output_path: Uri = Field(alias="S3OutputPath")
    accept: Annotated[str, StringConstraints(max_length=256)] | None = None
    assemble_with: AssembleWith | None = None
    kms_key_id: Annotated[str, StringConstraints(max_length=2048)] | None = None


class TransformResources(Shape):
    instance_type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    instance_count: Annotated[int, Field(ge=1, le=100)]
    volume_kms_key_id: Annotated[str, StringConstraints(max_length=2048)] | None = None
    transform_ami_version: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = (
        None
    )


class ModelClientConfig(Shape):
    invocations_timeout_in_seconds: Annotated[int, Field(ge=1, le=3600)] | None = None
    invocations_max_retries: Annotated[int, Field(ge=0, le=3)] | None = None


class DataProcessing(Shape):
    input_filter: Annotated[str, StringConstraints(max_length=63)] | None = None
    output_filter: Annotated[str, StringConstraints(max_length=63)] | None = None
    join_source: JoinSource | None = None


class DataCaptureConfig(Shape):
    destination_s3_uri: Uri = Field(alias="DestinationS3Uri")
    kms_key_id: Annotated[str, StringConstraints(max_length=2048)] | None = None
    generate_inference_id: bool | None = None


class ExperimentConfig(Shape):
    experiment_name: Annotated[str, StringConstraints(max_length=120)] | None = None
    trial_name: Annotated[str, StringConstraints(max_length=120)] | None = None
    trial_component_display_name: Annotated[str, StringConstraints(max_length=120)] | None = None
    run_name: Annotated[str, StringConstraints(max_length=120)] | None = None


class CreateTransformJobInput(Shape):
    transform_job_name: TransformJobName
    model_name: ModelName
    max_concurrent_transforms: Annotated[int, Field(ge=0)] | None = None
    model_client_config: ModelClientConfig | None = None
    max_payload_in_mb: Annotated[int, Field(ge=0)] | None = Field(
        default=None, alias="MaxPayloadInMB"
    )
    batch_strategy: BatchStrategy | None = None
    environment: dict[str, Annotated[str, StringConstraints(max_length=10240)]] | None = None
    transform_input: TransformInput
    transform_output: TransformOutput
    data_capture_config: DataCaptureConfig | None = None
    transform_resources: TransformResources
    data_processing: DataProcessing | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    experiment_config: ExperimentConfig | None = None

    @field_validator("environment")
    @classmethod
    def _environment(cls, env: dict[str, str] | None) -> dict[str, str] | None:
        if env is None:
            return None
        if len(env) > 16:
            raise ValueError("Environment may hold at most 16 variables.")
        for key in env:
            if not _ENV_KEY.match(key):
                raise ValueError(f"Environment key '{key}' is not a valid variable name.")
        return env

    @model_validator(mode="after")
    def _payload(self) -> CreateTransformJobInput:
        payload = self.max_payload_in_mb
        if payload is not None and payload > MAX_PAYLOAD_MB:
            raise ValueError(f"MaxPayloadInMB {payload} is over the limit of {MAX_PAYLOAD_MB} MB.")
        concurrent = self.max_concurrent_transforms or 1
        if payload is not None and payload * concurrent > MAX_PAYLOAD_MB:
            raise ValueError(
                f"MaxPayloadInMB times MaxConcurrentTransforms ({payload} x {concurrent}) is over "
                f"{MAX_PAYLOAD_MB} MB."
            )
        return self

    @property
    def split_type(self) -> SplitType:
        return self.transform_input.split_type or SplitType.NONE

    @property
    def strategy(self) -> BatchStrategy:
        """The batch strategy in effect: SingleRecord unless MultiRecord was asked for (as
        SageMaker's default)."""
        return self.batch_strategy or BatchStrategy.SINGLE_RECORD

    @property
    def payload_limit(self) -> int | None:
        """Bytes a request may carry; None for ``MaxPayloadInMB`` 0 (unlimited)."""
        megabytes = DEFAULT_PAYLOAD_MB if self.max_payload_in_mb is None else self.max_payload_in_mb
        return megabytes * 1024 * 1024 if megabytes else None

    @property
    def invocations_timeout(self) -> int:
        config = self.model_client_config
        timeout = config.invocations_timeout_in_seconds if config else None
        return timeout or DEFAULT_INVOCATIONS_TIMEOUT_SECONDS

    @property
    def invocations_max_retries(self) -> int:
        config = self.model_client_config
        retries = config.invocations_max_retries if config else None
        return DEFAULT_INVOCATIONS_MAX_RETRIES if retries is None else retries


class CreateTransformJobOutput(Shape):
    transform_job_arn: str


class TransformJobProgress(Shape):
    """How far a job has come (a Shipway extension of DescribeTransformJob)."""

    objects_total: int = 0
    """Input objects, once the job has listed them."""
    objects_completed: int = 0
    objects_failed: int = 0
    shards_total: int = 0
    shards_completed: int = 0
    records_processed: int = 0
    bytes_total: int = 0
    """Bytes of input (compressed objects count their stored size)."""
    bytes_processed: int = 0
    records_per_second: float | None = None
    bytes_per_second: float | None = None
    estimated_seconds_remaining: float | None = None


class TransformJob(CreateTransformJobInput):
    """A transform job as stored."""

    transform_job_arn: str
    transform_job_status: TransformJobStatus
    failure_reason: str | None = None
    creation_time: datetime
    last_modified_time: datetime
    transform_start_time: datetime | None = None
    transform_end_time: datetime | None = None
    model: Model
    """The job's copy of its model, taken at creation."""
    progress: TransformJobProgress = Field(default_factory=TransformJobProgress)


class DescribeTransformJobOutput(CreateTransformJobInput):
    transform_job_arn: str
    transform_job_status: TransformJobStatus
    failure_reason: str | None = None
    creation_time: datetime
    last_modified_time: datetime | None = None
    transform_start_time: datetime | None = None
    transform_end_time: datetime | None = None
    progress: TransformJobProgress | None = None
    """A Shipway extension."""

    @classmethod
    def of(cls, job: TransformJob) -> DescribeTransformJobOutput:
        return cls(**job.model_dump(exclude={"model", "tags"}))


class TransformJobSummary(Shape):
    transform_job_name: str
    transform_job_arn: str
    creation_time: datetime
    transform_end_time: datetime | None = None
    last_modified_time: datetime | None = None
    transform_job_status: TransformJobStatus
    failure_reason: str | None = None

    @classmethod
    def of(cls, job: TransformJob) -> TransformJobSummary:
        return cls(**job.model_dump(include=set(cls.model_fields)))


class ListTransformJobsInput(ListInput):
    last_modified_time_before: datetime | None = None
    last_modified_time_after: datetime | None = None
    status_equals: TransformJobStatus | None = None
