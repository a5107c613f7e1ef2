"""Asynchronous inference: an endpoint's AsyncInferenceConfig, and the requests it queues.

An endpoint whose configuration has an :class:`AsyncInferenceConfig` takes only
InvokeEndpointAsync: the caller names an input object (``InputLocation``) or sends a small body
inline; the request is queued (:class:`AsyncInvocation`, durable) and answered 202 at once with
where its output will be. A dispatcher later sends the payload to the model server's normal
``/invocations`` and writes the answer to ``<S3OutputPath>/<InferenceId>.out``, or the reason it
failed to ``<S3FailurePath>/<InferenceId>-error.out``, and publishes the outcome to the SNS
topics of ``NotificationConfig``.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from shipway.domain.shape import Shape

__all__ = [
    "DEFAULT_INVOCATION_TIMEOUT_SECONDS",
    "DEFAULT_REQUEST_TTL_SECONDS",
    "INLINE_BODY_BYTES",
    "MAX_INPUT_BYTES",
    "MAX_INVOCATION_TIMEOUT_SECONDS",
    "AsyncClientConfig",
    "AsyncInferenceConfig",
    "AsyncInvocation",
    "AsyncInvocationStatus",
    "AsyncNotificationConfig",
    "AsyncOutputConfig",
    "InvokeEndpointAsyncInput",
    "NotificationTopicKind",
    "QueueSummary",
    "output_key",
]

MAX_INPUT_BYTES = 1024**3
"""The largest input object an asynchronous request may name (SageMaker: 1 GB)."""
INLINE_BODY_BYTES = 128_000
"""The largest payload sent inline, in the request's body, instead of by InputLocation."""
DEFAULT_REQUEST_TTL_SECONDS = 21_600
DEFAULT_INVOCATION_TIMEOUT_SECONDS = 900
MAX_INVOCATION_TIMEOUT_SECONDS = 3600

_OUTPUT_PATH_EXTENSION = re.compile(r"^(?!s3:|https:)[a-zA-Z0-9!_.*'()/-]+$")
_FILENAME = re.compile(r"^(?!.*\..*\.)[a-zA-Z0-9][a-zA-Z0-9-_\.]*$")
_TOPIC_ARN = r"^arn:aws[a-z\-]*:sns:[a-z0-9\-]*:[0-9]{12}:[a-zA-Z0-9_.\-]{1,256}$"


class NotificationTopicKind(StrEnum):
    SUCCESS_NOTIFICATION_TOPIC = "SUCCESS_NOTIFICATION_TOPIC"
    ERROR_NOTIFICATION_TOPIC = "ERROR_NOTIFICATION_TOPIC"


class AsyncClientConfig(Shape):
    max_concurrent_invocations_per_instance: Annotated[int, Field(ge=1, le=1000)] | None = None


class AsyncNotificationConfig(Shape):
    success_topic: Annotated[str, StringConstraints(pattern=_TOPIC_ARN)] | None = None
    error_topic: Annotated[str, StringConstraints(pattern=_TOPIC_ARN)] | None = None
    include_inference_response_in: (
        Annotated[list[NotificationTopicKind], Field(min_length=0, max_length=2)] | None
    ) = None


class AsyncOutputConfig(Shape):
    kms_key_id: Annotated[str, StringConstraints(max_length=2048)] | None = None
    s3_output_path: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        default=None, alias="S3OutputPath"
    )
    notification_config: AsyncNotificationConfig | None = None
    s3_failure_path: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        default=None, alias="S3FailurePath"
    )

    @model_validator(mode="after")
    def _somewhere(self) -> Self:
        if self.s3_output_path is None:
            raise ValueError("AsyncInferenceConfig.OutputConfig needs an S3OutputPath.")
        return self

    @property
    def output_path(self) -> str:
        assert self.s3_output_path is not None  # the validator holds it
        return self.s3_output_path

    @property
    def failure_path(self) -> str:
        """Where failures go: S3FailurePath, or S3OutputPath without one."""
        return self.s3_failure_path or self.output_path


class AsyncInferenceConfig(Shape):
    client_config: AsyncClientConfig | None = None
    output_config: AsyncOutputConfig

    def concurrency_per_instance(self, default: int) -> int:
        client = self.client_config
        if client is None or client.max_concurrent_invocations_per_instance is None:
            return default
        return client.max_concurrent_invocations_per_instance


class InvokeEndpointAsyncInput(Shape):
    """InvokeEndpointAsync's parameters (the runtime wire carries them as headers)."""

    endpoint_name: str
    input_location: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    content_type: Annotated[str, StringConstraints(max_length=1024)] | None = None
    accept: Annotated[str, StringConstraints(max_length=1024)] | None = None
    custom_attributes: Annotated[str, StringConstraints(max_length=1024)] | None = None
    inference_id: (
        Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^\S.*$")] | None
    ) = None
    s3_output_path_extension: (
        Annotated[
            str, StringConstraints(min_length=1, max_length=512, pattern=_OUTPUT_PATH_EXTENSION)
        ]
        | None
    ) = Field(default=None, alias="S3OutputPathExtension")
    filename: (
        Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=_FILENAME)] | None
    ) = None
    request_ttl_seconds: Annotated[int, Field(ge=60, le=21_600)] | None = Field(
        default=None, alias="RequestTTLSeconds"
    )
    invocation_timeout_seconds: (
        Annotated[int, Field(ge=1, le=MAX_INVOCATION_TIMEOUT_SECONDS)] | None
    ) = None

    @model_validator(mode="after")
    def _within_output_path(self) -> Self:
        extension = self.s3_output_path_extension
        if extension is not None and ".." in extension.split("/"):
            raise ValueError(
                f"S3OutputPathExtension {extension} climbs out of the output path with '..'; "
                "name a folder under it."
            )
        return self


class AsyncInvocationStatus(StrEnum):
    IN_QUEUE = "InQueue"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (AsyncInvocationStatus.COMPLETED, AsyncInvocationStatus.FAILED)


class AsyncInvocation(Shape):
    """One queued request, as the queue keeps it (a Shipway resource; not a SageMaker shape).

    Everything the dispatcher needs travels with it, taken from the endpoint's configuration when
    it was queued: where its output and failure go, and which topics hear of it. A change of the
    endpoint's configuration meanwhile does not move an answer from where the caller was told
    it would be.
    """

    request_id: str
    """Unique per request (the queue's key): a caller may reuse an InferenceId."""
    inference_id: str
    endpoint_name: str
    input_location: str
    """Where the payload is: the caller's InputLocation, or a copy of an inline body."""
    inline_input: bool = False
    """The input is the server's copy of an inline body (removed once the request is done)."""
    input_size: int = 0
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    output_location: str
    failure_location: str
    request_ttl_seconds: int = DEFAULT_REQUEST_TTL_SECONDS
    invocation_timeout_seconds: int = DEFAULT_INVOCATION_TIMEOUT_SECONDS
    success_topic: str | None = None
    error_topic: str | None = None
    include_response_in: list[NotificationTopicKind] = Field(default_factory=list)
    status: AsyncInvocationStatus = AsyncInvocationStatus.IN_QUEUE
    enqueued_time: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    attempts: int = 0
    """Times a dispatcher has taken it (more than one: a server stopped while it ran)."""
    failure_reason: str | None = None
    invoked_production_variant: str | None = None
    response_content_type: str | None = None

    def expires(self) -> float:
        """When it expires unless started, in epoch seconds."""
        return self.enqueued_time.timestamp() + self.request_ttl_seconds


class QueueSummary(Shape):
    """An asynchronous endpoint's backlog now (what its backlog metrics sample)."""

    endpoint_name: str
    approximate_backlog_size: int
    """Requests queued or under way."""
    in_progress: int
    approximate_age_of_oldest_request: float
    """Seconds since the oldest of them was queued (0 with none)."""


def output_key(inference_id: str, filename: str | None, *, failure: bool) -> str:
    """The object name of a request's answer (``<InferenceId>.out``, ``...-error.out``), or
    the caller's ``Filename`` (kept for both: they go to different paths)."""
    if filename is not None:
        return filename
    return f"{inference_id}-error.out" if failure else f"{inference_id}.out"
