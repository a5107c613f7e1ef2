"""InvokeEndpointAsync, and the requests it queued: validate, place the payload, queue.

A request is checked whole before anything is queued: the endpoint exists and is asynchronous,
exactly one of InputLocation and an inline body is given, the input object exists, is at most
1 GB and lies where the server may read, and the answer's locations are where it may write.
The answer (202) says where the output and a failure will be.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from shipway.domain.async_inference import (
    DEFAULT_INVOCATION_TIMEOUT_SECONDS,
    DEFAULT_REQUEST_TTL_SECONDS,
    INLINE_BODY_BYTES,
    MAX_INPUT_BYTES,
    AsyncInferenceConfig,
    AsyncInvocation,
    InvokeEndpointAsyncInput,
    QueueSummary,
    output_key,
)
from shipway.domain.clock import Clock
from shipway.domain.endpoint import SERVING
from shipway.domain.errors import NotFound, ValidationError
from shipway.domain.names import Account
from shipway.store.invocation_queue import Backlog, InvocationQuery, InvocationQueue
from shipway.store.locations import InputMissing, Locations
from shipway.store.metadata import MetadataStore

__all__ = ["AsyncInvocationService"]


class AsyncInvocationService:
    def __init__(
        self,
        store: MetadataStore,
        queue: InvocationQueue,
        locations: Locations,
        clock: Clock,
        account: Account,
        *,
        inline_dir: Path,
        on_queued: Callable[[str], None] = lambda _name: None,
        routed: Callable[[str], AsyncInferenceConfig | None] = lambda _name: None,
    ) -> None:
        """``inline_dir`` keeps inline bodies until their requests are done; ``on_queued``
        wakes the dispatcher (it is called from a worker thread)."""
        self._store = store
        self._queue = queue
        self._locations = locations
        self._clock = clock
        self._account = account
        self._inline_dir = inline_dir
        self._on_queued = on_queued
        self._routed = routed

    def invoke(self, request: InvokeEndpointAsyncInput, body: bytes = b"") -> AsyncInvocation:
        """Queue a request (blocking: it reads the input's size and writes the queue)."""
        name, config = self._target(request.endpoint_name)
        if (request.input_location is None) == (not body):
            raise ValidationError(
                "Provide exactly one of InputLocation and an inline Body "
                f"({'both were' if body else 'neither was'} given)."
            )
        request_id = uuid.uuid4().hex
        inference_id = request.inference_id or str(uuid.uuid4())
        output = config.output_config
        extension = request.s3_output_path_extension or ""
        output_location = self._locations.join(
            output.output_path, extension, output_key(inference_id, request.filename, failure=False)
        )
        failure_location = self._locations.join(
            output.failure_path, extension, output_key(inference_id, request.filename, failure=True)
        )
        self._locations.check(output_location, "S3OutputPath")
        self._locations.check(failure_location, "S3FailurePath")
        if request.input_location is not None:
            input_location = request.input_location
            self._locations.check(input_location, "InputLocation")
            try:
                size = self._locations.size(input_location)
            except InputMissing as exc:
                raise ValidationError(exc.message) from None
            if size > MAX_INPUT_BYTES:
                raise ValidationError(
                    f"The input object {input_location} is {size} bytes; an asynchronous "
                    f"request takes at most {MAX_INPUT_BYTES} bytes (1 GB)."
                )
        else:
            if len(body) > INLINE_BODY_BYTES:
                raise ValidationError(
                    f"An inline Body takes at most {INLINE_BODY_BYTES} bytes; this one has "
                    f"{len(body)}. Upload larger payloads and pass their InputLocation."
                )
            input_location = str(self._keep_inline(request_id, body))
            size = len(body)
        notifications = output.notification_config
        invocation = AsyncInvocation(
            request_id=request_id,
            inference_id=inference_id,
            endpoint_name=name,
            input_location=input_location,
            inline_input=request.input_location is None,
            input_size=size,
            content_type=request.content_type,
            accept=request.accept,
            custom_attributes=request.custom_attributes,
            output_location=output_location,
            failure_location=failure_location,
            request_ttl_seconds=request.request_ttl_seconds or DEFAULT_REQUEST_TTL_SECONDS,
            invocation_timeout_seconds=(
                request.invocation_timeout_seconds or DEFAULT_INVOCATION_TIMEOUT_SECONDS
            ),
            success_topic=notifications.success_topic if notifications else None,
            error_topic=notifications.error_topic if notifications else None,
            include_response_in=(
                list(notifications.include_inference_response_in or []) if notifications else []
            ),
            enqueued_time=self._clock.now(),
        )
        self._queue.put(invocation)
        self._on_queued(name)
        return invocation

    def _target(self, name: str) -> tuple[str, AsyncInferenceConfig]:
        """The endpoint's name and AsyncInferenceConfig: from the routing table when it routes
        the endpoint (it is then serving), else from the store, to say what is wrong."""
        routed = self._routed(name)
        if routed is not None:
            return name, routed
        endpoint = self._store.endpoints.get(name)
        if endpoint is None:
            raise ValidationError(
                f"Endpoint {name} of account {self._account.account_id} not found."
            )
        config = endpoint.config.async_inference_config
        if config is None:
            raise ValidationError(
                f"Endpoint {endpoint.endpoint_name} is not an asynchronous endpoint (its "
                "configuration has no AsyncInferenceConfig): call InvokeEndpoint."
            )
        if endpoint.endpoint_status not in SERVING:
            raise ValidationError(
                f"Endpoint {endpoint.endpoint_name} is {endpoint.endpoint_status.value}; it takes "
                "invocations once it is InService."
            )
        return endpoint.endpoint_name, config

    def _keep_inline(self, request_id: str, body: bytes) -> Path:
        self._inline_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._inline_dir / request_id
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(body)
        return path

    def describe(self, inference_id: str, endpoint_name: str | None = None) -> AsyncInvocation:
        invocation = self._queue.get(inference_id, endpoint_name)
        if invocation is None:
            raise NotFound("asynchronous request", inference_id)
        return invocation

    def backlog(self, endpoint_name: str) -> QueueSummary:
        """An asynchronous endpoint's requests queued and under way, and the oldest's age."""
        endpoint = self._store.endpoints.get(endpoint_name)
        if endpoint is None:
            raise NotFound("endpoint", endpoint_name, self._account.arn("endpoint", endpoint_name))
        if endpoint.config.async_inference_config is None:
            raise ValidationError(f"Endpoint {endpoint.endpoint_name} is not asynchronous.")
        backlog = self._queue.backlogs().get(endpoint.endpoint_name, Backlog())
        oldest = backlog.oldest_enqueued
        return QueueSummary(
            endpoint_name=endpoint.endpoint_name,
            approximate_backlog_size=backlog.size,
            in_progress=backlog.in_progress,
            approximate_age_of_oldest_request=(
                0.0 if oldest is None else max(0.0, self._clock.time() - oldest)
            ),
        )

    def list(self, query: InvocationQuery) -> tuple[list[AsyncInvocation], str | None]:
        return self._queue.page(query)
