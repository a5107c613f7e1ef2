"""Shipway's own REST API (FastAPI; OpenAPI at ``/openapi.json``, shown at ``/docs``, offline).

Resources under ``/api``: models, endpoint configurations, endpoints, instance types, metrics,
alarms, autoscaling (a variant's scalable target, its policies and activities) and SNS topics
with their subscriptions (read-only: topics are made with boto3's ``sns`` client).
Bodies use the same shapes as the SageMaker API, with its PascalCase member names. Invocations go
to ``POST /endpoints/{name}/invocations``, the same path boto3's runtime client uses.

Errors answer ``{"code": ..., "message": ...}`` with a status that says what happened: 400 bad
input, 404 not found, 409 name taken or resource in use, 413 too large, 424 model error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import Scope

from shipway import __version__
from shipway.api.docs import add_docs
from shipway.api.openapi import (
    DocumentedAPI,
    async_invocation_request,
    async_invocation_responses,
    invocation_request,
    invocation_responses,
    raises,
    status_of,
)
from shipway.api.runtime import runtime_error
from shipway.domain.alarm import (
    AlarmState,
    DescribeAlarmHistoryInput,
    DescribeAlarmsInput,
    HistoryItemType,
    MetricAlarm,
    PutMetricAlarmInput,
    SetAlarmStateInput,
)
from shipway.domain.async_inference import AsyncInvocationStatus
from shipway.domain.deployment import UpdateEndpointInput
from shipway.domain.endpoint import (
    CreateEndpointInput,
    CreateEndpointOutput,
    DescribeEndpointOutput,
    DesiredWeightAndCapacity,
    EndpointStatus,
    UpdateEndpointWeightsAndCapacitiesInput,
)
from shipway.domain.endpoint_config import (
    CreateEndpointConfigInput,
    CreateEndpointConfigOutput,
    EndpointConfig,
)
from shipway.domain.errors import (
    AlreadyExists,
    InvalidState,
    NotFound,
    ResourceLimitExceeded,
    ShipwayError,
    ValidationError,
)
from shipway.domain.listing import ListEndpointsInput, ListInput, SortBy, SortOrder
from shipway.domain.model import CreateModelInput, CreateModelOutput, Model
from shipway.domain.notification import SubscriptionDescription, TopicDescription
from shipway.domain.scaling import (
    DeleteScalingPolicyInput,
    DeregisterScalableTargetInput,
    EndpointScaling,
    PolicyName,
    PutScalingPolicyInput,
    RegisterScalableTargetInput,
    ScalableTarget,
    ScalableTargetUpdate,
    ScalingPolicy,
    ScalingPolicyDefinition,
)
from shipway.domain.shape import describe_errors, dump, parse
from shipway.domain.transform_job import (
    CreateTransformJobInput,
    CreateTransformJobOutput,
    DescribeTransformJobOutput,
    ListTransformJobsInput,
    TransformJobStatus,
)
from shipway.monitor.shadow_report import ShadowReport, ShadowReportNotFound
from shipway.router.router import Invocation
from shipway.service.endpoint_metrics import endpoint_datapoints
from shipway.store.invocation_queue import InvocationQuery

if TYPE_CHECKING:
    from shipway.platform import Platform

__all__ = ["create_rest_app"]


def _iso(value: object) -> object:
    """Query times are ISO 8601 (RFC 3339) or epoch seconds (what ``date +%s`` prints)."""
    if not isinstance(value, str):
        return value
    try:
        seconds = float(value)
    except ValueError:
        return datetime.fromisoformat(value)
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"{value} is not a time in epoch seconds") from exc


def _utc(value: datetime) -> datetime:
    """A time without an offset is UTC (as CloudWatch and SageMaker read them), not local time:
    local time may not exist, and years 1 and 9999 overflow once converted."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Time = Annotated[
    datetime,
    BeforeValidator(_iso),
    AfterValidator(_utc),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}),
]
"""A date-time query parameter: RFC 3339 (ISO 8601 without an offset: UTC), or epoch seconds."""


def _list_query(
    sort_by: Annotated[SortBy, Query(description="Name or CreationTime (Status: endpoints)")] = (
        SortBy.CREATION_TIME
    ),
    sort_order: SortOrder = SortOrder.DESCENDING,
    max_results: Annotated[int, Query(ge=1, le=100)] = 10,
    next_token: str | None = None,
    name_contains: str | None = None,
    creation_time_before: Time | None = None,
    creation_time_after: Time | None = None,
) -> ListInput:
    """The filters, sort order and page every list takes."""
    return parse(
        ListInput,
        {
            "SortBy": sort_by,
            "SortOrder": sort_order,
            "MaxResults": max_results,
            "NextToken": next_token,
            "NameContains": name_contains,
            "CreationTimeBefore": creation_time_before,
            "CreationTimeAfter": creation_time_after,
        },
    )


ListQuery = Annotated[ListInput, Depends(_list_query)]


def _page(key: str, items: list[Any], token: str | None) -> dict[str, Any]:
    page: dict[str, Any] = {key: [dump(i) for i in items]}
    if token:
        page["NextToken"] = token
    return page


def create_rest_app(platform: Platform) -> FastAPI:
    app = DocumentedAPI(
        title="Shipway",
        version=__version__,
        description="Deploy machine-learning models the way SageMaker does, on your own machines.",
        docs_url=None,  # served offline by add_docs
        redoc_url=None,
    )
    add_docs(app)
    services = platform

    @app.exception_handler(ShipwayError)
    async def _shipway_error(request: Request, exc: ShipwayError) -> JSONResponse:
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        broken = [e for e in errors if e["type"] == "json_invalid"]
        if broken:
            reason = broken[0].get("ctx", {}).get("error", "")
            message = f"The request body is not valid JSON: {reason}".rstrip(": ")
        else:
            message = describe_errors(errors, skip=1)
        return JSONResponse({"code": "ValidationException", "message": message}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NotFound", 405: "MethodNotAllowed"}
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette names only the methods of the first route matching the path
            headers = {**(headers or {}), "Allow": ", ".join(_allowed(app, request.scope))}
        return JSONResponse(
            {"code": codes.get(exc.status_code, f"HTTP{exc.status_code}"), "message": exc.detail},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.get("/healthz", tags=["server"], summary="Liveness of the server")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    # --- models -------------------------------------------------------------------------------

    @app.post(
        "/api/models",
        tags=["models"],
        status_code=201,
        response_model_exclude_none=True,
        responses=raises(ValidationError, AlreadyExists),
    )
    def create_model(request: CreateModelInput) -> CreateModelOutput:
        return services.models.create_model(request)

    @app.get("/api/models", tags=["models"])
    def list_models(query: ListQuery) -> dict[str, Any]:
        return _page("Models", *services.models.list_models(query))

    @app.get(
        "/api/models/{name}",
        tags=["models"],
        response_model_exclude_none=True,
        responses=raises(NotFound),
    )
    def describe_model(name: str) -> Model:
        return services.models.describe_model(name)

    @app.delete(
        "/api/models/{name}",
        tags=["models"],
        status_code=204,
        responses=raises(NotFound),
    )
    def delete_model(name: str) -> Response:
        services.models.delete_model(name)
        return Response(status_code=204)

    # --- endpoint configurations --------------------------------------------------------------

    @app.post(
        "/api/endpoint-configs",
        tags=["endpoint configurations"],
        status_code=201,
        response_model_exclude_none=True,
        responses=raises(ValidationError, NotFound, AlreadyExists),
    )
    def create_endpoint_config(request: CreateEndpointConfigInput) -> CreateEndpointConfigOutput:
        return services.endpoint_configs.create_endpoint_config(request)

    @app.get("/api/endpoint-configs", tags=["endpoint configurations"])
    def list_endpoint_configs(query: ListQuery) -> dict[str, Any]:
        return _page("EndpointConfigs", *services.endpoint_configs.list_endpoint_configs(query))

    @app.get(
        "/api/endpoint-configs/{name}",
        tags=["endpoint configurations"],
        response_model_exclude_none=True,
        responses=raises(NotFound),
    )
    def describe_endpoint_config(name: str) -> EndpointConfig:
        return services.endpoint_configs.describe_endpoint_config(name)

    @app.delete(
        "/api/endpoint-configs/{name}",
        tags=["endpoint configurations"],
        status_code=204,
        responses=raises(NotFound),
    )
    def delete_endpoint_config(name: str) -> Response:
        services.endpoint_configs.delete_endpoint_config(name)
        return Response(status_code=204)

    # --- endpoints ----------------------------------------------------------------------------

    @app.post(
        "/api/endpoints",
        tags=["endpoints"],
        status_code=201,
        response_model_exclude_none=True,
        responses=raises(ValidationError, NotFound, AlreadyExists, ResourceLimitExceeded),
    )
    def create_endpoint(request: CreateEndpointInput) -> CreateEndpointOutput:
        return services.endpoints.create_endpoint(request)

    @app.get("/api/endpoints", tags=["endpoints"])
    def list_endpoints(
        query: ListQuery, status_equals: EndpointStatus | None = None
    ) -> dict[str, Any]:
        filters = ListEndpointsInput(**query.model_dump(), status_equals=status_equals)
        return _page("Endpoints", *services.endpoints.list_endpoints(filters))

    @app.get(
        "/api/endpoints/{name}",
        tags=["endpoints"],
        response_model_exclude_none=True,
        responses=raises(NotFound),
    )
    def describe_endpoint(name: str) -> DescribeEndpointOutput:
        return services.endpoints.describe_endpoint(name)

    @app.post(
        "/api/endpoints/{name}/weights-and-capacities",
        tags=["endpoints"],
        response_model_exclude_none=True,
        responses=raises(ValidationError, NotFound, InvalidState, ResourceLimitExceeded),
    )
    def update_weights_and_capacities(
        name: str, changes: list[DesiredWeightAndCapacity]
    ) -> CreateEndpointOutput:
        """Change variants' weights and instance counts in place (the endpoint is Updating
        until every variant has its new count)."""
        request = parse(
            UpdateEndpointWeightsAndCapacitiesInput,
            {"EndpointName": name, "DesiredWeightsAndCapacities": [dump(c) for c in changes]},
        )
        return services.endpoints.update_endpoint_weights_and_capacities(request)

    @app.put(
        "/api/endpoints/{name}",
        tags=["endpoints"],
        response_model_exclude_none=True,
        responses=raises(ValidationError, NotFound, InvalidState, ResourceLimitExceeded),
    )
    def update_endpoint(name: str, body: dict[str, Any]) -> CreateEndpointOutput:
        """Deploy a new endpoint configuration (UpdateEndpoint): blue/green with all-at-once,
        canary or linear traffic shifting, or rolling, with alarms that roll it back. The body
        is UpdateEndpoint's, without EndpointName."""
        request = parse(UpdateEndpointInput, {**body, "EndpointName": name})
        return services.endpoints.update_endpoint(request)

    @app.get("/api/endpoints/{name}/deployment", tags=["endpoints"], responses=raises(NotFound))
    def deployment(name: str) -> dict[str, Any]:
        """The deployment in progress, step by step, with its alarms' states (404 when none)."""
        endpoint = services.endpoints.get(name)
        if endpoint.deployment is None:
            raise NotFound("deployment of endpoint", name, endpoint.endpoint_arn)
        return services.endpoints.deployment_view(endpoint)

    @app.get(
        "/api/endpoints/{name}/shadow-report",
        tags=["endpoints"],
        responses=raises(NotFound),
    )
    async def shadow_report(
        name: str,
        tolerance: Annotated[
            float, Query(ge=0, description="Outputs within this absolute difference agree")
        ] = 0.0,
    ) -> ShadowReport:
        """How the shadow variant's answers compare with production's: counts, agreement,
        latency percentiles and recent disagreements. (On the event loop, where the router
        updates the report.)"""
        report = services.router.shadow_report(name, tolerance)
        if report is None:
            raise ShadowReportNotFound(name)
        return report

    @app.get("/api/endpoints/{name}/instances", tags=["endpoints"], responses=raises(NotFound))
    def list_instances(name: str) -> dict[str, Any]:
        """The endpoint's instances: id, variant, generation (which deployment's fleet),
        status, process id and address."""
        return {
            "Instances": [
                {
                    "InstanceId": i.instance_id,
                    "VariantName": i.variant_name,
                    "InstanceType": i.instance_type,
                    "ModelName": i.model_name,
                    "Generation": i.generation,
                    "Status": i.status.value,
                    "Address": i.address,
                    "Pid": i.pid,
                    "StartedAt": i.started_at,
                    "FailureReason": i.failure_reason,
                }
                for i in services.endpoints.list_instances(name)
            ]
        }

    @app.delete(
        "/api/endpoints/{name}",
        tags=["endpoints"],
        status_code=204,
        responses=raises(NotFound, InvalidState),
    )
    def delete_endpoint(name: str) -> Response:
        services.endpoints.delete_endpoint(name)
        return Response(status_code=204)

    @app.post(
        "/api/transform-jobs",
        tags=["transform jobs"],
        status_code=201,
        response_model_exclude_none=True,
        responses=raises(ValidationError, NotFound, AlreadyExists),
    )
    def create_transform_job(request: CreateTransformJobInput) -> CreateTransformJobOutput:
        return services.transform_jobs.create_transform_job(request)

    @app.get("/api/transform-jobs", tags=["transform jobs"])
    def list_transform_jobs(
        query: ListQuery,
        status_equals: TransformJobStatus | None = None,
        last_modified_time_before: Time | None = None,
        last_modified_time_after: Time | None = None,
    ) -> dict[str, Any]:
        filters = ListTransformJobsInput(
            **query.model_dump(),
            status_equals=status_equals,
            last_modified_time_before=last_modified_time_before,
            last_modified_time_after=last_modified_time_after,
        )
        return _page("TransformJobSummaries", *services.transform_jobs.list_transform_jobs(filters))

    @app.get(
        "/api/transform-jobs/{name}",
        tags=["transform jobs"],
        response_model_exclude_none=True,
        responses=raises(NotFound),
        summary="Describe a transform job, with its progress",
    )
    def describe_transform_job(name: str) -> DescribeTransformJobOutput:
        return services.transform_jobs.describe_transform_job(name)

    @app.post(
        "/api/transform-jobs/{name}/stop",
        tags=["transform jobs"],
        status_code=204,
        responses=raises(NotFound, InvalidState),
        summary="Stop a transform job (objects not yet written get no output)",
    )
    def stop_transform_job(name: str) -> Response:
        services.transform_jobs.stop_transform_job(name)
        return Response(status_code=204)

    @app.post(
        "/endpoints/{name}/invocations",
        tags=["invocations"],
        summary="Invoke an endpoint (the SageMaker runtime's InvokeEndpoint)",
        response_class=Response,
        responses=invocation_responses(),
        openapi_extra=invocation_request(),
    )
    async def invoke(name: str, request: Request) -> Response:
        """The body is the model's input as is; ``Content-Type`` says how to read it and
        ``Accept`` how to answer. ``X-Amzn-SageMaker-Target-Variant`` pins a variant. (The
        server answers this path before this handler; it is here for the API's description.)"""
        headers = request.headers
        try:
            result = await services.router.invoke(
                Invocation(
                    endpoint_name=name,
                    body=await request.body(),
                    content_type=_raw(headers.get("content-type")),
                    accept=_raw(headers.get("accept")),
                    custom_attributes=_raw(headers.get("x-amzn-sagemaker-custom-attributes")),
                    inference_id=_raw(headers.get("x-amzn-sagemaker-inference-id")),
                    target_variant=headers.get("x-amzn-sagemaker-target-variant"),
                )
            )
        except Exception as exc:
            status, code, document = runtime_error(exc, services.settings.account_id)
            return JSONResponse(document, status_code=status, headers={"x-amzn-ErrorType": code})
        return Response(
            result.body,
            media_type=result.content_type.decode("latin-1"),
            headers={"x-amzn-invoked-production-variant": result.variant_name},
        )

    @app.post(
        "/endpoints/{name}/async-invocations",
        tags=["invocations"],
        summary="Queue an asynchronous request (the SageMaker runtime's InvokeEndpointAsync)",
        status_code=202,
        response_class=Response,
        responses=async_invocation_responses(),
        openapi_extra=async_invocation_request(),
    )
    async def invoke_async(name: str, request: Request) -> Response:
        """The request's parameters are headers, as on the SageMaker runtime:
        ``X-Amzn-SageMaker-InputLocation`` (the input object's URL; or send a body of at most
        128,000 bytes instead), ``X-Amzn-SageMaker-Content-Type``, ``X-Amzn-SageMaker-Accept``,
        ``X-Amzn-SageMaker-Inference-Id``, ``X-Amzn-SageMaker-S3OutputPathExtension``,
        ``X-Amzn-SageMaker-Filename``, ``X-Amzn-SageMaker-RequestTTLSeconds`` and
        ``X-Amzn-SageMaker-InvocationTimeoutSeconds``. The answer (202) gives the InferenceId
        and, in headers, where the output and a failure will be. (The server answers this path
        before this handler; it is here for the API's description.)"""
        raise ValidationError("This path is answered by the runtime adapter.")

    @app.get(
        "/api/async-invocations",
        tags=["invocations"],
        summary="Asynchronous requests, newest first, with their status",
    )
    def list_async_invocations(
        endpoint: Annotated[str | None, Query(description="Only this endpoint's")] = None,
        status: AsyncInvocationStatus | None = None,
        max_results: Annotated[int, Query(ge=1, le=1000)] = 50,
        next_token: str | None = None,
    ) -> dict[str, Any]:
        query = InvocationQuery(endpoint, status, max_results, next_token)
        return _page("AsyncInvocations", *services.async_invocations.list(query))

    @app.get(
        "/api/endpoints/{name}/queue",
        tags=["invocations"],
        summary="An asynchronous endpoint's backlog: requests queued and under way",
        responses=raises(NotFound, ValidationError),
    )
    def describe_queue(name: str) -> dict[str, Any]:
        return dump(services.async_invocations.backlog(name))

    @app.get(
        "/api/async-invocations/{inference_id}",
        tags=["invocations"],
        summary="One asynchronous request (the newest with this InferenceId)",
        responses=raises(NotFound),
    )
    def describe_async_invocation(
        inference_id: str,
        endpoint: Annotated[str | None, Query(description="Only this endpoint's")] = None,
    ) -> dict[str, Any]:
        return dump(services.async_invocations.describe(inference_id, endpoint))

    # --- instance types and metrics -----------------------------------------------------------

    @app.get("/api/instance-types", tags=["instance types"])
    def instance_types() -> dict[str, Any]:
        return {"InstanceTypes": [t.to_wire() for t in services.catalog]}

    @app.get("/api/metrics", tags=["metrics"], summary="Query a metric (like GetMetricStatistics)")
    def query_metrics(
        metric: Annotated[str, Query(description="e.g. Invocations, ModelLatency")],
        endpoint: str,
        start: Annotated[Time | None, Query(description="Default: an hour before end")] = None,
        end: Annotated[Time | None, Query(description="Default: now")] = None,
        variant: Annotated[
            str | None,
            Query(description="One variant; default: all the production variants together"),
        ] = None,
        period: Annotated[int, Query(ge=1)] = 60,
        statistic: Annotated[
            str, Query(description="SampleCount, Sum, Average, Minimum, Maximum or pNN (p99)")
        ] = "Sum",
        namespace: str = "AWS/SageMaker",
    ) -> dict[str, Any]:
        """One statistic per period, oldest first. Without ``variant``, the statistic is that
        of every production variant's samples together (Sum and SampleCount add up; Average,
        Minimum, Maximum and percentiles are those of all the samples); ``Variants`` says which
        were combined."""
        until = end.timestamp() if end is not None else services.clock.time()
        since = start.timestamp() if start is not None else until - 3600
        combined = endpoint_datapoints(
            services.metrics,
            services.endpoints,
            metric,
            endpoint,
            start=since,
            end=until,
            period=period,
            statistic=statistic,
            namespace=namespace,
            variant=variant,
        )
        points = combined.datapoints
        return {
            "Label": metric,
            "Variants": combined.variants,
            "Datapoints": [
                {"Timestamp": p.timestamp, statistic: p.value, "SampleCount": p.sample_count}
                for p in points
            ],
        }

    @app.get("/api/metrics/series", tags=["metrics"], summary="The metric series recorded")
    def list_series(endpoint: str | None = None) -> dict[str, Any]:
        found = services.metrics.series(**({"EndpointName": endpoint} if endpoint else {}))
        return {
            "Metrics": [
                {
                    "Namespace": s.namespace,
                    "MetricName": s.name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in s.dimensions],
                    "Unit": s.unit,
                }
                for s in found
            ]
        }

    # --- alarms ----------------------------------------------------------------------------------

    @app.get("/api/alarms", tags=["alarms"], summary="List alarms (like DescribeAlarms)")
    def list_alarms(
        prefix: Annotated[str | None, Query(description="Only names starting with this")] = None,
        state: AlarmState | None = None,
        max_results: Annotated[int, Query(ge=1, le=100)] = 50,
        next_token: str | None = None,
    ) -> dict[str, Any]:
        request = parse(
            DescribeAlarmsInput,
            {
                "AlarmNamePrefix": prefix,
                "StateValue": state,
                "MaxRecords": max_results,
                "NextToken": next_token,
            },
        )
        return dump(services.alarms.describe_alarms(request))

    @app.post(
        "/api/alarms",
        tags=["alarms"],
        response_model_exclude_none=True,
        responses=raises(ValidationError),
    )
    def put_alarm(request: PutMetricAlarmInput) -> MetricAlarm:
        """Create an alarm, or replace the definition of the one of that name (PutMetricAlarm);
        a replaced alarm keeps its state."""
        return services.alarms.put_metric_alarm(request)

    @app.get(
        "/api/alarms/{name}",
        tags=["alarms"],
        response_model_exclude_none=True,
        responses=raises(NotFound),
    )
    def describe_alarm(name: str) -> MetricAlarm:
        return services.alarms.describe_alarm(name)

    @app.delete("/api/alarms/{name}", tags=["alarms"], status_code=204, responses=raises(NotFound))
    def delete_alarm(name: str) -> Response:
        services.alarms.delete_alarms([name])
        return Response(status_code=204)

    @app.put(
        "/api/alarms/{name}/state",
        tags=["alarms"],
        response_model_exclude_none=True,
        responses=raises(ValidationError, NotFound),
    )
    def set_alarm_state(name: str, body: dict[str, Any]) -> MetricAlarm:
        """Set the state by hand (SetAlarmState: StateValue, StateReason, StateReasonData);
        the next evaluation sets the state the metric says again."""
        request = parse(SetAlarmStateInput, {**body, "AlarmName": name})
        return services.alarms.set_alarm_state(request)

    @app.get(
        "/api/alarms/{name}/history",
        tags=["alarms"],
        responses=raises(ValidationError, NotFound),
    )
    def alarm_history(
        name: str,
        item_type: HistoryItemType | None = None,
        start: Time | None = None,
        end: Time | None = None,
        max_results: Annotated[int, Query(ge=1, le=100)] = 100,
        next_token: str | None = None,
        oldest_first: bool = False,
    ) -> dict[str, Any]:
        """The alarm's configuration and state changes, newest first (DescribeAlarmHistory)."""
        services.alarms.describe_alarm(name)
        request = parse(
            DescribeAlarmHistoryInput,
            {
                "AlarmName": name,
                "HistoryItemType": item_type,
                "StartDate": start,
                "EndDate": end,
                "MaxRecords": max_results,
                "NextToken": next_token,
                "ScanBy": "TimestampAscending" if oldest_first else "TimestampDescending",
            },
        )
        return dump(services.alarms.describe_alarm_history(request))

    # --- topics (SNS's, which alarm actions and async inference notify) ------------------------

    @app.get("/api/topics", tags=["topics"], summary="List SNS topics")
    def list_topics() -> dict[str, list[TopicDescription]]:
        """Every topic, by name, with its attributes (subscriptions confirmed and pending...)."""
        notifications = services.notifications
        return {"Topics": [notifications.describe(t) for t in notifications.topics()]}

    @app.get(
        "/api/topics/{name}",
        tags=["topics"],
        response_model_exclude_none=True,
        responses=raises(NotFound),
    )
    def describe_topic(name: str) -> TopicDescription:
        notifications = services.notifications
        return notifications.describe(notifications.describe_topic(name))

    @app.get(
        "/api/topics/{name}/subscriptions",
        tags=["topics"],
        response_model_exclude_none=True,
        responses=raises(NotFound),
    )
    def topic_subscriptions(name: str) -> dict[str, list[SubscriptionDescription]]:
        """The topic's subscriptions, pending ones included, each with how the deliveries to
        it are going (pending, delivered, given up, the last error)."""
        return {"Subscriptions": services.notifications.describe_subscriptions(name)}

    # --- autoscaling (Application Auto Scaling's, for one variant at a time) -------------------

    def _target(name: str, variant: str) -> dict[str, Any]:
        """A variant's target identity: the dimension its kind scales along."""
        return {
            "ServiceNamespace": "sagemaker",
            "ResourceId": f"endpoint/{name}/variant/{variant}",
            "ScalableDimension": services.scaling.dimension_of(name, variant),
        }

    @app.get(
        "/api/endpoints/{name}/scaling",
        tags=["autoscaling"],
        response_model_exclude_none=True,
        responses=raises(NotFound),
    )
    def endpoint_scaling(name: str) -> EndpointScaling:
        """Every scalable variant of the endpoint: bounds, desired capacity now, policies and
        the states of their alarms."""
        return services.scaling.endpoint_scaling(name)

    @app.get(
        "/api/endpoints/{name}/scaling/activities",
        tags=["autoscaling"],
        responses=raises(ValidationError, NotFound),
    )
    def endpoint_scaling_activities(
        name: str,
        variant: Annotated[str | None, Query(description="One variant's only")] = None,
        include_not_scaled: Annotated[
            bool, Query(description="Also the activities that did not scale")
        ] = False,
        max_results: Annotated[int, Query(ge=1, le=100)] = 50,
        next_token: str | None = None,
    ) -> dict[str, Any]:
        """The endpoint's scaling activities, newest first (DescribeScalingActivities)."""
        services.endpoints.get(name)
        return dump(
            services.scaling.endpoint_activities(
                name,
                variant_name=variant,
                include_not_scaled=include_not_scaled,
                max_results=max_results,
                next_token=next_token,
            )
        )

    @app.get(
        "/api/endpoints/{name}/variants/{variant}/scaling",
        tags=["autoscaling"],
        response_model_exclude_none=True,
        responses=raises(ValidationError, NotFound),
    )
    def describe_scalable_target(name: str, variant: str) -> ScalableTarget:
        """The variant's scalable target (404 when it is not registered)."""
        target = _target(name, variant)
        return services.scaling.describe_target(target["ResourceId"], target["ScalableDimension"])

    @app.put(
        "/api/endpoints/{name}/variants/{variant}/scaling",
        tags=["autoscaling"],
        response_model_exclude_none=True,
        responses=raises(ValidationError, NotFound, InvalidState),
    )
    def register_scalable_target(
        name: str, variant: str, body: ScalableTargetUpdate
    ) -> ScalableTarget:
        """Register the variant as a scalable target (MinCapacity and MaxCapacity), or update
        the fields given (RegisterScalableTarget): a desired capacity outside the new bounds
        is brought inside them."""
        target = _target(name, variant)
        request = parse(RegisterScalableTargetInput, {**target, **dump(body)})
        services.scaling.register_scalable_target(request)
        return services.scaling.describe_target(target["ResourceId"], target["ScalableDimension"])

    @app.delete(
        "/api/endpoints/{name}/variants/{variant}/scaling",
        tags=["autoscaling"],
        status_code=204,
        responses=raises(ValidationError, NotFound),
    )
    def deregister_scalable_target(name: str, variant: str) -> Response:
        """Deregister the variant (DeregisterScalableTarget): its policies and their alarms go;
        its capacity stays as it is."""
        request = parse(DeregisterScalableTargetInput, _target(name, variant))
        services.scaling.deregister_scalable_target(request)
        return Response(status_code=204)

    @app.get(
        "/api/endpoints/{name}/variants/{variant}/scaling/policies",
        tags=["autoscaling"],
        responses=raises(ValidationError, NotFound),
    )
    def list_scaling_policies(name: str, variant: str) -> dict[str, Any]:
        """The variant's scaling policies, each with its alarms (404 when it is not
        registered)."""
        target = _target(name, variant)
        registered = services.scaling.describe_target(
            target["ResourceId"], target["ScalableDimension"]
        )
        return {"ScalingPolicies": [dump(p) for p in services.scaling.policies(registered)]}

    @app.get(
        "/api/endpoints/{name}/variants/{variant}/scaling/policies/{policy}",
        tags=["autoscaling"],
        response_model_exclude_none=True,
        responses=raises(ValidationError, NotFound),
    )
    def describe_scaling_policy(
        name: str, variant: str, policy: Annotated[PolicyName, Path()]
    ) -> ScalingPolicy:
        target = _target(name, variant)
        return services.scaling.describe_policy(
            target["ResourceId"], target["ScalableDimension"], policy
        )

    @app.put(
        "/api/endpoints/{name}/variants/{variant}/scaling/policies/{policy}",
        tags=["autoscaling"],
        response_model_exclude_none=True,
        responses=raises(ValidationError, NotFound, InvalidState, ResourceLimitExceeded),
    )
    def put_scaling_policy(
        name: str,
        variant: str,
        policy: Annotated[PolicyName, Path()],
        body: ScalingPolicyDefinition,
    ) -> ScalingPolicy:
        """Create the policy, or replace the one of that name (PutScalingPolicy): target
        tracking (with its AlarmHigh and AlarmLow alarms) or step scaling. The variant must be
        registered first (404 otherwise)."""
        target = _target(name, variant)
        request = parse(PutScalingPolicyInput, {**target, **dump(body), "PolicyName": policy})
        services.scaling.put_scaling_policy(request)
        return services.scaling.describe_policy(
            target["ResourceId"], target["ScalableDimension"], policy
        )

    @app.delete(
        "/api/endpoints/{name}/variants/{variant}/scaling/policies/{policy}",
        tags=["autoscaling"],
        status_code=204,
        responses=raises(ValidationError, NotFound),
    )
    def delete_scaling_policy(
        name: str, variant: str, policy: Annotated[PolicyName, Path()]
    ) -> Response:
        """Delete the policy (DeleteScalingPolicy) and the alarms target tracking made for it."""
        request = parse(DeleteScalingPolicyInput, {**_target(name, variant), "PolicyName": policy})
        services.scaling.delete_scaling_policy(request)
        return Response(status_code=204)

    @app.get(
        "/api/endpoints/{name}/variants/{variant}/scaling/activities",
        tags=["autoscaling"],
        responses=raises(ValidationError, NotFound),
    )
    def variant_scaling_activities(
        name: str,
        variant: str,
        include_not_scaled: Annotated[
            bool, Query(description="Also the activities that did not scale")
        ] = False,
        max_results: Annotated[int, Query(ge=1, le=100)] = 50,
        next_token: str | None = None,
    ) -> dict[str, Any]:
        """The variant's scaling activities, newest first (DescribeScalingActivities)."""
        return endpoint_scaling_activities(
            name, variant, include_not_scaled, max_results, next_token
        )

    registry = CollectorRegistry(auto_describe=True)
    registry.register(services.metrics.collector())

    @app.get("/metrics", tags=["metrics"], response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(
            generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return app


def _allowed(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at the request's path (for ``Allow``)."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    return sorted(methods)


def _raw(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")
