"""``ShipwayClient``: a small typed SDK over Shipway's REST API (``/api/...``, invocations).

Requests and answers use the domain shapes (:mod:`shipway.domain`), PascalCase on the wire.
Every failure is a :class:`ClientError`; lower-layer errors (HTTP, pydantic) are translated here:

    ClientError              base; ``exit_code`` is what a command line exits with (1)
    ├── ApiError             the server answered an error: ``code``, ``message``, ``status``
    │                        (a ModelError also has ``original_status``, ``original_message``
    │                        and ``log_stream``, where the model's log is)
    ├── ServerUnreachable    nothing answers at the URL
    ├── EndpointFailed       an endpoint being waited for ended Failed
    └── WaitTimeout          an endpoint did not settle in time
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import quote

from shipway.cli import transport

# The domain shapes (pydantic) are imported where they are used, so a command pays only for
# those it touches, and ``shipway invoke`` for none (the CLI starts in under 0.3 s).
if TYPE_CHECKING:
    from shipway.domain.alarm import (
        AlarmHistoryItem,
        AlarmState,
        HistoryItemType,
        MetricAlarm,
        PutMetricAlarmInput,
    )
    from shipway.domain.async_inference import (
        AsyncInvocation,
        AsyncInvocationStatus,
        QueueSummary,
    )
    from shipway.domain.deployment import UpdateEndpointInput
    from shipway.domain.endpoint import (
        CreateEndpointInput,
        DescribeEndpointOutput,
        EndpointStatus,
        EndpointSummary,
    )
    from shipway.domain.endpoint_config import (
        CreateEndpointConfigInput,
        EndpointConfig,
        EndpointConfigSummary,
    )
    from shipway.domain.instance_types import InstanceType
    from shipway.domain.model import CreateModelInput, Model, ModelSummary
    from shipway.domain.notification import SubscriptionDescription, TopicDescription
    from shipway.domain.scaling import (
        EndpointScaling,
        ScalableTarget,
        ScalableTargetUpdate,
        ScalingActivity,
        ScalingPolicy,
        ScalingPolicyDefinition,
    )
    from shipway.domain.shape import Shape
    from shipway.domain.sorting import SortBy, SortOrder
    from shipway.domain.transform_job import (
        CreateTransformJobInput,
        DescribeTransformJobOutput,
        TransformJobStatus,
        TransformJobSummary,
    )
    from shipway.monitor.shadow_report import ShadowReport

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "ClientError",
    "EndpointFailed",
    "InvocationResult",
    "QueuedInvocation",
    "ServerUnreachable",
    "ShipwayClient",
    "WaitTimeout",
]

DEFAULT_URL = "http://127.0.0.1:8080"

TRANSITIONAL = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
"""Statuses an endpoint leaves on its own: :meth:`ShipwayClient.wait_for_endpoint` waits."""

PAGE_SIZE = 100
"""The largest page the REST API serves."""

S = TypeVar("S", bound="Shape")


class ClientError(Exception):
    """Base of every error the client raises."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint: str | None = None
        """What the user might do about it, when the command that failed can tell."""


class ApiError(ClientError):
    """The server answered with an error status; ``code`` is SageMaker's error code."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int,
        *,
        original_status: int | None = None,
        original_message: str | None = None,
        log_stream: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.original_status = original_status
        self.original_message = original_message
        self.log_stream = log_stream
        """A ModelError's ``LogStreamArn``: where the model's log is (a file on the server)."""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ServerUnreachable(ClientError):
    """No Shipway server answers at ``url``."""

    def __init__(self, url: str) -> None:
        super().__init__(f"cannot reach Shipway at {url}: is 'shipway server' running?")
        self.url = url


class EndpointFailed(ClientError):
    """An endpoint that was waited for ended ``Failed``; ``endpoint`` is its description."""

    def __init__(self, endpoint: DescribeEndpointOutput) -> None:
        reason = endpoint.failure_reason or "no failure reason was given"
        super().__init__(f"endpoint {endpoint.endpoint_name} failed: {reason}")
        self.endpoint = endpoint


class WaitTimeout(ClientError):
    """An endpoint was still in a transitional status when the wait ran out."""

    def __init__(self, name: str, status: str, timeout: float) -> None:
        super().__init__(f"endpoint {name} is still {status} after {timeout:g} s")
        self.name = name
        self.status = status
        self.timeout = timeout


@dataclass(frozen=True)
class InvocationResult:
    """What an endpoint answered: the body as is, its media type and the variant that served it."""

    body: bytes
    content_type: str
    variant: str | None


@dataclass(frozen=True)
class QueuedInvocation:
    """What InvokeEndpointAsync answered: the request's InferenceId, and where its answer (or
    the reason it failed) will be written."""

    inference_id: str
    output_location: str
    failure_location: str


class ShipwayClient:
    """The REST API of one Shipway server.

    ``url`` defaults to :data:`DEFAULT_URL`; a URL without a scheme gets ``http://``.
    ``timeout`` bounds each request (connecting: 5 s at most); ``page_size`` is how many items
    each list request asks for. Each request has a connection of its own
    (:mod:`shipway.cli.transport`): there is nothing to close, but the client is a context
    manager all the same.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float = 60.0,
        page_size: int = PAGE_SIZE,
        token: str | None = None,
    ) -> None:
        url = (url or DEFAULT_URL).rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url if "://" in url else f"http://{url}"
        self.page_size = page_size
        self._timeout = timeout

    def close(self) -> None:
        """Nothing to release: no connection outlives its request."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- models -------------------------------------------------------------------------------

    def create_model(self, request: CreateModelInput) -> str:
        """Create a model; returns its ARN."""
        return str(self._document("POST", "/api/models", json=_wire(request)).get("ModelArn"))

    def describe_model(self, name: str) -> Model:
        from shipway.domain.model import Model

        return _shape(Model, self._document("GET", f"/api/models/{_name(name)}"))

    def list_models(
        self,
        *,
        name_contains: str | None = None,
        sort_by: SortBy | None = None,
        sort_order: SortOrder | None = None,
        max_results: int | None = None,
    ) -> list[ModelSummary]:
        """Models, following pages until ``max_results`` (or all of them when None); newest
        first unless ``sort_by``/``sort_order`` say otherwise."""
        from shipway.domain.model import ModelSummary

        params = _filters(name_contains, sort_by, sort_order)
        items = self._list("/api/models", "Models", params, max_results)
        return [_shape(ModelSummary, item) for item in items]

    def delete_model(self, name: str) -> None:
        self._request("DELETE", f"/api/models/{_name(name)}")

    # --- endpoint configurations --------------------------------------------------------------

    def create_endpoint_config(self, request: CreateEndpointConfigInput) -> str:
        """Create an endpoint configuration; returns its ARN."""
        answer = self._document("POST", "/api/endpoint-configs", json=_wire(request))
        return str(answer.get("EndpointConfigArn"))

    def describe_endpoint_config(self, name: str) -> EndpointConfig:
        from shipway.domain.endpoint_config import EndpointConfig

        answer = self._document("GET", f"/api/endpoint-configs/{_name(name)}")
        return _shape(EndpointConfig, answer)

    def list_endpoint_configs(
        self,
        *,
        name_contains: str | None = None,
        sort_by: SortBy | None = None,
        sort_order: SortOrder | None = None,
        max_results: int | None = None,
    ) -> list[EndpointConfigSummary]:
        from shipway.domain.endpoint_config import EndpointConfigSummary

        params = _filters(name_contains, sort_by, sort_order)
        items = self._list("/api/endpoint-configs", "EndpointConfigs", params, max_results)
        return [_shape(EndpointConfigSummary, item) for item in items]

    def delete_endpoint_config(self, name: str) -> None:
        self._request("DELETE", f"/api/endpoint-configs/{_name(name)}")

    # --- endpoints ----------------------------------------------------------------------------

    def create_endpoint(self, request: CreateEndpointInput) -> str:
        """Start creating an endpoint (status Creating); returns its ARN."""
        answer = self._document("POST", "/api/endpoints", json=_wire(request))
        return str(answer.get("EndpointArn"))

    def describe_endpoint(self, name: str) -> DescribeEndpointOutput:
        from shipway.domain.endpoint import DescribeEndpointOutput

        answer = self._document("GET", f"/api/endpoints/{_name(name)}")
        return _shape(DescribeEndpointOutput, answer)

    def list_endpoints(
        self,
        *,
        name_contains: str | None = None,
        status: EndpointStatus | None = None,
        sort_by: SortBy | None = None,
        sort_order: SortOrder | None = None,
        max_results: int | None = None,
    ) -> list[EndpointSummary]:
        from shipway.domain.endpoint import EndpointStatus, EndpointSummary

        params = _filters(name_contains, sort_by, sort_order)
        if status is not None:
            params["status_equals"] = EndpointStatus(status).value
        items = self._list("/api/endpoints", "Endpoints", params, max_results)
        return [_shape(EndpointSummary, item) for item in items]

    def delete_endpoint(self, name: str) -> None:
        """Start deleting an endpoint (status Deleting, then gone)."""
        self._request("DELETE", f"/api/endpoints/{_name(name)}")

    def update_endpoint(self, request: UpdateEndpointInput) -> str:
        """Start deploying a new configuration to an endpoint (status Updating)."""
        body = {k: v for k, v in _wire(request).items() if k != "EndpointName"}
        answer = self._document("PUT", f"/api/endpoints/{_name(request.endpoint_name)}", json=body)
        return str(answer.get("EndpointArn"))

    def deployment(self, name: str) -> dict[str, Any] | None:
        """The deployment in progress on an endpoint (the live view's data), or None."""
        try:
            return self._document("GET", f"/api/endpoints/{_name(name)}/deployment")
        except ApiError as exc:
            if exc.status == 404 and exc.message.startswith("Could not find deployment"):
                return None
            raise

    def wait_for_endpoint(
        self,
        name: str,
        timeout: float = 600.0,
        *,
        poll: float = 0.25,
        on_poll: Callable[[DescribeEndpointOutput], None] | None = None,
    ) -> DescribeEndpointOutput:
        """Poll until the endpoint leaves Creating/Updating/Deleting and the like.

        Returns the settled description; raises :class:`EndpointFailed` when it settles Failed,
        :class:`WaitTimeout` when ``timeout`` seconds pass first, and :class:`ApiError`
        (ResourceNotFound) when it is gone, as a deleted endpoint is. ``on_poll`` sees each
        description.
        """
        deadline = time.monotonic() + timeout
        while True:
            endpoint = self.describe_endpoint(name)
            if on_poll is not None:
                on_poll(endpoint)
            if endpoint.endpoint_status.value not in TRANSITIONAL:
                break
            if time.monotonic() >= deadline:
                raise WaitTimeout(name, endpoint.endpoint_status.value, timeout)
            time.sleep(poll)
        if endpoint.endpoint_status == "Failed":
            raise EndpointFailed(endpoint)
        return endpoint

    def wait_for_endpoint_deleted(
        self,
        name: str,
        timeout: float = 600.0,
        *,
        poll: float = 0.25,
        on_poll: Callable[[DescribeEndpointOutput], None] | None = None,
    ) -> None:
        """Poll until the endpoint is gone; :class:`WaitTimeout` if it outlives ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                endpoint = self.describe_endpoint(name)
            except ApiError as exc:
                if exc.status == 404:
                    return
                raise
            if on_poll is not None:
                on_poll(endpoint)
            if time.monotonic() >= deadline:
                raise WaitTimeout(name, endpoint.endpoint_status.value, timeout)
            time.sleep(poll)

    def shadow_report(self, name: str, *, tolerance: float = 0.0) -> ShadowReport:
        """How the endpoint's shadow variant compares with production; outputs within
        ``tolerance`` of each other agree. ApiError ResourceNotFound when it has no shadow."""
        from shipway.monitor.shadow_report import ShadowReport

        answer = self._document(
            "GET",
            f"/api/endpoints/{_name(name)}/shadow-report",
            params={"tolerance": repr(float(tolerance))},
        )
        return _shape(ShadowReport, answer)

    # --- transform jobs -----------------------------------------------------------------------

    def create_transform_job(self, request: CreateTransformJobInput) -> str:
        """Start a transform job (status InProgress); returns its ARN."""
        answer = self._document("POST", "/api/transform-jobs", json=_wire(request))
        return str(answer.get("TransformJobArn"))

    def describe_transform_job(self, name: str) -> DescribeTransformJobOutput:
        """A transform job, with its progress (Shipway's ``Progress``)."""
        from shipway.domain.transform_job import DescribeTransformJobOutput

        answer = self._document("GET", f"/api/transform-jobs/{_name(name)}")
        return _shape(DescribeTransformJobOutput, answer)

    def list_transform_jobs(
        self,
        *,
        name_contains: str | None = None,
        status: TransformJobStatus | None = None,
        sort_by: SortBy | None = None,
        sort_order: SortOrder | None = None,
        max_results: int | None = None,
    ) -> list[TransformJobSummary]:
        """Transform jobs, newest first unless told otherwise, following pages until
        ``max_results`` (or all of them when None)."""
        from shipway.domain.transform_job import TransformJobStatus, TransformJobSummary

        params = _filters(name_contains, sort_by, sort_order)
        if status is not None:
            params["status_equals"] = TransformJobStatus(status).value
        items = self._list("/api/transform-jobs", "TransformJobSummaries", params, max_results)
        return [_shape(TransformJobSummary, item) for item in items]

    def stop_transform_job(self, name: str) -> None:
        """Ask a job in progress to stop (status Stopping, then Stopped)."""
        self._request("POST", f"/api/transform-jobs/{_name(name)}/stop")

    # --- alarms -------------------------------------------------------------------------------

    def put_alarm(self, request: PutMetricAlarmInput) -> MetricAlarm:
        """Create or replace an alarm (PutMetricAlarm); returns it as stored."""
        from shipway.domain.alarm import MetricAlarm

        return _shape(MetricAlarm, self._document("POST", "/api/alarms", json=_wire(request)))

    def describe_alarm(self, name: str) -> MetricAlarm:
        from shipway.domain.alarm import MetricAlarm

        return _shape(MetricAlarm, self._document("GET", f"/api/alarms/{_name(name)}"))

    def list_alarms(
        self,
        *,
        prefix: str | None = None,
        state: AlarmState | None = None,
        max_results: int | None = None,
    ) -> list[MetricAlarm]:
        """Alarms by name, following pages until ``max_results`` (or all of them)."""
        from shipway.domain.alarm import AlarmState, MetricAlarm

        params = {}
        if prefix is not None:
            params["prefix"] = prefix
        if state is not None:
            params["state"] = AlarmState(state).value
        items = self._list("/api/alarms", "MetricAlarms", params, max_results)
        return [_shape(MetricAlarm, item) for item in items]

    def delete_alarm(self, name: str) -> None:
        self._request("DELETE", f"/api/alarms/{_name(name)}")

    def set_alarm_state(
        self, name: str, state: AlarmState, reason: str, reason_data: str | None = None
    ) -> MetricAlarm:
        """Set an alarm's state by hand until its next evaluation (SetAlarmState)."""
        from shipway.domain.alarm import AlarmState, MetricAlarm

        body = {"StateValue": AlarmState(state).value, "StateReason": reason}
        if reason_data is not None:
            body["StateReasonData"] = reason_data
        answer = self._document("PUT", f"/api/alarms/{_name(name)}/state", json=body)
        return _shape(MetricAlarm, answer)

    def alarm_history(
        self,
        name: str,
        *,
        item_type: HistoryItemType | None = None,
        max_results: int | None = None,
    ) -> list[AlarmHistoryItem]:
        """The alarm's history, newest first."""
        from shipway.domain.alarm import AlarmHistoryItem, HistoryItemType

        params = {} if item_type is None else {"item_type": HistoryItemType(item_type).value}
        path = f"/api/alarms/{_name(name)}/history"
        items = self._list(path, "AlarmHistoryItems", params, max_results)
        return [_shape(AlarmHistoryItem, item) for item in items]

    # --- topics (SNS's) ------------------------------------------------------------------------

    def list_topics(self) -> list[TopicDescription]:
        """Every SNS topic, by name, with its attributes."""
        from shipway.domain.notification import TopicDescription

        topics = self._document("GET", "/api/topics").get("Topics", [])
        return [_shape(TopicDescription, topic) for topic in topics]

    def describe_topic(self, name: str) -> TopicDescription:
        from shipway.domain.notification import TopicDescription

        return _shape(TopicDescription, self._document("GET", f"/api/topics/{_name(name)}"))

    def topic_subscriptions(self, name: str) -> list[SubscriptionDescription]:
        """The topic's subscriptions, with how the deliveries to each are going."""
        from shipway.domain.notification import SubscriptionDescription

        answer = self._document("GET", f"/api/topics/{_name(name)}/subscriptions")
        return [_shape(SubscriptionDescription, s) for s in answer.get("Subscriptions", [])]

    # --- autoscaling ----------------------------------------------------------------------------

    def endpoint_scaling(self, endpoint: str) -> EndpointScaling:
        """The endpoint's scalable variants: bounds, desired capacity, policies, alarm states."""
        from shipway.domain.scaling import EndpointScaling

        answer = self._document("GET", f"/api/endpoints/{_name(endpoint)}/scaling")
        return _shape(EndpointScaling, answer)

    def register_scalable_target(
        self, endpoint: str, variant: str, update: ScalableTargetUpdate
    ) -> ScalableTarget:
        """Register a variant as a scalable target, or update it (RegisterScalableTarget)."""
        from shipway.domain.scaling import ScalableTarget

        answer = self._document("PUT", _scaling(endpoint, variant), json=_wire(update))
        return _shape(ScalableTarget, answer)

    def deregister_scalable_target(self, endpoint: str, variant: str) -> None:
        self._request("DELETE", _scaling(endpoint, variant))

    def put_scaling_policy(
        self, endpoint: str, variant: str, name: str, definition: ScalingPolicyDefinition
    ) -> ScalingPolicy:
        """Create or replace a scaling policy of a registered variant (PutScalingPolicy)."""
        from shipway.domain.scaling import ScalingPolicy

        path = f"{_scaling(endpoint, variant)}/policies/{_name(name)}"
        return _shape(ScalingPolicy, self._document("PUT", path, json=_wire(definition)))

    def delete_scaling_policy(self, endpoint: str, variant: str, name: str) -> None:
        self._request("DELETE", f"{_scaling(endpoint, variant)}/policies/{_name(name)}")

    def scaling_activities(
        self,
        endpoint: str,
        *,
        variant: str | None = None,
        include_not_scaled: bool = False,
        max_results: int | None = None,
    ) -> list[ScalingActivity]:
        """The endpoint's (or one variant's) scaling activities, newest first."""
        from shipway.domain.scaling import ScalingActivity

        params = {"include_not_scaled": "true" if include_not_scaled else "false"}
        if variant is not None:
            params["variant"] = variant
        path = f"/api/endpoints/{_name(endpoint)}/scaling/activities"
        items = self._list(path, "ScalingActivities", params, max_results)
        return [_shape(ScalingActivity, item) for item in items]

    # --- invocations and the catalog ----------------------------------------------------------

    def invoke(
        self,
        endpoint: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        accept: str | None = None,
        target_variant: str | None = None,
        custom_attributes: str | None = None,
    ) -> InvocationResult:
        """Send ``body`` to the endpoint as is (SageMaker's InvokeEndpoint)."""
        headers = {"Content-Type": content_type}
        if accept is not None:
            headers["Accept"] = accept
        if target_variant is not None:
            headers["X-Amzn-SageMaker-Target-Variant"] = target_variant
        if custom_attributes is not None:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
        response = self._request(
            "POST", f"/endpoints/{_name(endpoint)}/invocations", content=body, headers=headers
        )
        return InvocationResult(
            body=response.content,
            content_type=response.headers.get("content-type", ""),
            variant=response.headers.get("x-amzn-invoked-production-variant"),
        )

    def invoke_async(
        self,
        endpoint: str,
        body: bytes | None = None,
        *,
        input_location: str | None = None,
        content_type: str | None = None,
        accept: str | None = None,
        custom_attributes: str | None = None,
        inference_id: str | None = None,
        output_path_extension: str | None = None,
        filename: str | None = None,
        request_ttl_seconds: int | None = None,
        invocation_timeout_seconds: int | None = None,
    ) -> QueuedInvocation:
        """Queue a request (SageMaker's InvokeEndpointAsync): the input object at
        ``input_location``, or ``body`` sent inline (at most 128,000 bytes). The parameters
        travel as the runtime's ``X-Amzn-SageMaker-*`` headers; the server checks them."""
        members = {
            "InputLocation": input_location,
            "Content-Type": content_type,
            "Accept": accept,
            "Custom-Attributes": custom_attributes,
            "Inference-Id": inference_id,
            "S3OutputPathExtension": output_path_extension,
            "Filename": filename,
            "RequestTTLSeconds": request_ttl_seconds,
            "InvocationTimeoutSeconds": invocation_timeout_seconds,
        }
        headers = {}
        for member, value in members.items():
            if value is None:
                continue
            text = str(value)
            if not text.isascii() or not text.isprintable():
                raise ClientError(
                    f"{member} {text!r} is not printable ASCII: it is sent as a header"
                )
            headers[f"X-Amzn-SageMaker-{member}"] = text
        response = self._request(
            "POST",
            f"/endpoints/{_name(endpoint)}/async-invocations",
            content=body or None,
            headers=headers,
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "InferenceId" not in answer:
            raise ClientError(f"{self.url} did not answer InvokeEndpointAsync with an InferenceId")
        return QueuedInvocation(
            inference_id=str(answer["InferenceId"]),
            output_location=response.headers.get("x-amzn-sagemaker-outputlocation", ""),
            failure_location=response.headers.get("x-amzn-sagemaker-failurelocation", ""),
        )

    def describe_async_invocation(
        self, inference_id: str, *, endpoint: str | None = None
    ) -> AsyncInvocation:
        """One asynchronous request: the newest with this InferenceId (of ``endpoint``)."""
        from shipway.domain.async_inference import AsyncInvocation

        params = {} if endpoint is None else {"endpoint": endpoint}
        path = f"/api/async-invocations/{_name(inference_id)}"
        return _shape(AsyncInvocation, self._document("GET", path, params=params))

    def list_async_invocations(
        self,
        *,
        endpoint: str | None = None,
        status: AsyncInvocationStatus | None = None,
        max_results: int | None = None,
    ) -> list[AsyncInvocation]:
        """Asynchronous requests, newest first, following pages until ``max_results`` (or
        all of them when None)."""
        from shipway.domain.async_inference import AsyncInvocation, AsyncInvocationStatus

        params = {}
        if endpoint is not None:
            params["endpoint"] = endpoint
        if status is not None:
            params["status"] = AsyncInvocationStatus(status).value
        items = self._list("/api/async-invocations", "AsyncInvocations", params, max_results)
        return [_shape(AsyncInvocation, item) for item in items]

    def endpoint_queue(self, endpoint: str) -> QueueSummary:
        """An asynchronous endpoint's backlog: requests queued and under way, the oldest's
        age. ApiError ValidationException for an endpoint that is not asynchronous."""
        from shipway.domain.async_inference import QueueSummary

        answer = self._document("GET", f"/api/endpoints/{_name(endpoint)}/queue")
        return _shape(QueueSummary, answer)

    def instance_types(self) -> list[InstanceType]:
        """The instance type catalog, by name."""
        from shipway.domain.instance_types import InstanceType

        rows = self._document("GET", "/api/instance-types").get("InstanceTypes", [])
        try:
            return [InstanceType.from_wire(row) for row in rows]
        except TypeError as exc:
            raise ClientError(
                f"{self.url} answered an instance type this client does not know: {exc}"
            ) from exc

    # --- plumbing -----------------------------------------------------------------------------

    def _list(
        self, path: str, key: str, params: dict[str, str], max_results: int | None
    ) -> list[Any]:
        """Every item of a listing, page after page (at most ``max_results`` when given)."""
        items: list[Any] = []
        token: str | None = None
        while max_results is None or len(items) < max_results:
            size = self.page_size if max_results is None else max_results - len(items)
            query = {**params, "max_results": str(min(self.page_size, size))}
            if token is not None:
                query["next_token"] = token
            page = self._document("GET", path, params=query)
            found = page.get(key, [])
            items.extend(found)
            token = page.get("NextToken")
            if not token or not found:
                break
        return items

    def _document(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The JSON object the server answered."""
        response = self._request(method, path, **kwargs)
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise ClientError(
                f"{method} {self.url}{path} did not answer a JSON object: is that a Shipway server?"
            )
        return document

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> transport.Response:
        try:
            response = transport.request(
                self.url,
                method,
                path,
                params=params,
                json=json,
                content=content,
                headers={**self._auth, **(headers or {})},
                timeout=self._timeout,
                connect_timeout=min(self._timeout, 5.0),
            )
        except transport.ConnectFailed as exc:
            raise ServerUnreachable(self.url) from exc
        except transport.InvalidURL as exc:
            raise ClientError(f"{self.url} is not a valid Shipway URL: {exc}") from exc
        except (OSError, HTTPException) as exc:
            reason = str(exc) or type(exc).__name__
            raise ClientError(f"{method} {self.url}{path} failed: {reason}") from exc
        if response.is_error:
            raise _api_error(response)
        return response


def _name(name: str) -> str:
    return quote(name, safe="")


def _scaling(endpoint: str, variant: str) -> str:
    return f"/api/endpoints/{_name(endpoint)}/variants/{_name(variant)}/scaling"


def _filters(
    name_contains: str | None, sort_by: SortBy | None, sort_order: SortOrder | None
) -> dict[str, str]:
    """A listing's query: newest first unless told otherwise."""
    from shipway.domain.sorting import SortBy, SortOrder

    params = {
        "sort_by": SortBy(sort_by or SortBy.CREATION_TIME).value,
        "sort_order": SortOrder(sort_order or SortOrder.DESCENDING).value,
    }
    if name_contains is not None:
        params["name_contains"] = name_contains
    return params


def _wire(request: Shape) -> dict[str, Any]:
    from shipway.domain.shape import dump

    return dump(request)


def _shape(shape: type[S], data: Any) -> S:
    import pydantic

    try:
        return shape.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ClientError(
            f"the server answered a {shape.__name__} this client does not understand: {exc}"
        ) from exc


def _api_error(response: transport.Response) -> ApiError:
    """The REST API's ``{"code", "message"}``, or the runtime's ``x-amzn-ErrorType`` + body."""
    status = response.status
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        text = response.text.strip()[:500] or response.reason
        return ApiError(f"HTTP{status}", text, status)
    header = response.headers.get("x-amzn-errortype", "")
    code = str(document.get("code") or header.split(":")[0] or f"HTTP{status}")
    message = str(document.get("message") or document.get("Message") or response.reason)
    original = document.get("OriginalStatusCode")
    return ApiError(
        code,
        message,
        status,
        original_status=original if isinstance(original, int) else None,
        original_message=(
            str(document["OriginalMessage"]) if "OriginalMessage" in document else None
        ),
        log_stream=str(document["LogStreamArn"]) if "LogStreamArn" in document else None,
    )
