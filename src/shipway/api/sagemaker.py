"""The SageMaker control-plane wire adapter: JSON 1.1, ``POST /`` with ``X-Amz-Target``.

``boto3.client("sagemaker", endpoint_url=...)`` sends ``X-Amz-Target: SageMaker.<Operation>``
and a JSON body of the operation's input shape; it reads the output shape back, and for errors
the code in the body's ``__type``. Each operation here parses its input into the same shape the
REST API uses, calls the same service, and dumps the result with epoch-second timestamps. No
rule lives here: only the translation, and one mapping of domain errors to SageMaker's codes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipway.api.json_rpc import dispatch, to_wire
from shipway.domain.deployment import UpdateEndpointInput
from shipway.domain.endpoint import CreateEndpointInput, UpdateEndpointWeightsAndCapacitiesInput
from shipway.domain.endpoint_config import CreateEndpointConfigInput
from shipway.domain.errors import (
    ResourceInUse,
    ResourceLimitExceeded,
    ShipwayError,
)
from shipway.domain.listing import ListEndpointsInput, ListInput
from shipway.domain.model import CreateModelInput
from shipway.domain.names import EntityName, ModelName
from shipway.domain.shape import Shape, parse
from shipway.domain.tags import AddTagsInput, DeleteTagsInput, ListTagsInput
from shipway.domain.transform_job import CreateTransformJobInput, ListTransformJobsInput

if TYPE_CHECKING:
    from shipway.platform import Platform

__all__ = ["OPERATIONS", "SageMakerAPI", "wire_error"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Document = dict[str, Any]

SAGEMAKER = "SageMaker."


class _ModelName(Shape):
    model_name: ModelName


class _EndpointConfigName(Shape):
    endpoint_config_name: EntityName


class _EndpointName(Shape):
    endpoint_name: EntityName


class _TransformJobName(Shape):
    transform_job_name: EntityName


def _out(shape: Shape, *drop: str) -> Document:
    document: Document = to_wire(shape.model_dump(mode="python", by_alias=True, exclude_none=True))
    for key in drop:
        document.pop(key, None)
    return document


def _page(key: str, items: list[Any], token: str | None) -> Document:
    page: Document = {key: [_out(i) for i in items]}
    if token:
        page["NextToken"] = token
    return page


@dataclass(frozen=True)
class Operation:
    name: str
    call: Callable[[Platform, Document], Document]


def _operations() -> dict[str, Operation]:
    def op(name: str) -> Callable[[Callable[[Platform, Document], Document]], None]:
        def register(call: Callable[[Platform, Document], Document]) -> None:
            table[name] = Operation(name, call)

        return register

    table: dict[str, Operation] = {}

    # --- models ---
    @op("CreateModel")
    def _(p: Platform, body: Document) -> Document:
        return _out(p.models.create_model(parse(CreateModelInput, body)))

    @op("DescribeModel")
    def _(p: Platform, body: Document) -> Document:
        name = parse(_ModelName, body).model_name
        return _out(p.models.describe_model(name), "Tags")

    @op("ListModels")
    def _(p: Platform, body: Document) -> Document:
        return _page("Models", *p.models.list_models(parse(ListInput, body)))

    @op("DeleteModel")
    def _(p: Platform, body: Document) -> Document:
        p.models.delete_model(parse(_ModelName, body).model_name)
        return {}

    # --- endpoint configurations ---
    @op("CreateEndpointConfig")
    def _(p: Platform, body: Document) -> Document:
        request = parse(CreateEndpointConfigInput, body)
        return _out(p.endpoint_configs.create_endpoint_config(request))

    @op("DescribeEndpointConfig")
    def _(p: Platform, body: Document) -> Document:
        name = parse(_EndpointConfigName, body).endpoint_config_name
        return _out(p.endpoint_configs.describe_endpoint_config(name), "Tags")

    @op("ListEndpointConfigs")
    def _(p: Platform, body: Document) -> Document:
        query = parse(ListInput, body)
        return _page("EndpointConfigs", *p.endpoint_configs.list_endpoint_configs(query))

    @op("DeleteEndpointConfig")
    def _(p: Platform, body: Document) -> Document:
        p.endpoint_configs.delete_endpoint_config(
            parse(_EndpointConfigName, body).endpoint_config_name
        )
        return {}

    # --- endpoints ---
    @op("CreateEndpoint")
    def _(p: Platform, body: Document) -> Document:
        return _out(p.endpoints.create_endpoint(parse(CreateEndpointInput, body)))

    @op("DescribeEndpoint")
    def _(p: Platform, body: Document) -> Document:
        return _out(p.endpoints.describe_endpoint(parse(_EndpointName, body).endpoint_name))

    @op("ListEndpoints")
    def _(p: Platform, body: Document) -> Document:
        return _page("Endpoints", *p.endpoints.list_endpoints(parse(ListEndpointsInput, body)))

    @op("UpdateEndpoint")
    def _(p: Platform, body: Document) -> Document:
        return _out(p.endpoints.update_endpoint(parse(UpdateEndpointInput, body)))

    @op("UpdateEndpointWeightsAndCapacities")
    def _(p: Platform, body: Document) -> Document:
        request = parse(UpdateEndpointWeightsAndCapacitiesInput, body)
        return _out(p.endpoints.update_endpoint_weights_and_capacities(request))

    @op("DeleteEndpoint")
    def _(p: Platform, body: Document) -> Document:
        p.endpoints.delete_endpoint(parse(_EndpointName, body).endpoint_name)
        return {}

    # --- transform jobs ---
    @op("CreateTransformJob")
    def _(p: Platform, body: Document) -> Document:
        request = parse(CreateTransformJobInput, body)
        return _out(p.transform_jobs.create_transform_job(request))

    @op("DescribeTransformJob")
    def _(p: Platform, body: Document) -> Document:
        name = parse(_TransformJobName, body).transform_job_name
        return _out(p.transform_jobs.describe_transform_job(name), "Tags")

    @op("ListTransformJobs")
    def _(p: Platform, body: Document) -> Document:
        query = parse(ListTransformJobsInput, body)
        return _page("TransformJobSummaries", *p.transform_jobs.list_transform_jobs(query))

    @op("StopTransformJob")
    def _(p: Platform, body: Document) -> Document:
        p.transform_jobs.stop_transform_job(parse(_TransformJobName, body).transform_job_name)
        return {}

    # --- tags ---
    @op("AddTags")
    def _(p: Platform, body: Document) -> Document:
        request = parse(AddTagsInput, body)
        added = p.tags.add_tags(request.resource_arn, request.tags)
        return {"Tags": [_out(t) for t in added]}

    @op("ListTags")
    def _(p: Platform, body: Document) -> Document:
        request = parse(ListTagsInput, body)
        return {"Tags": [_out(t) for t in p.tags.list_tags(request.resource_arn)]}

    @op("DeleteTags")
    def _(p: Platform, body: Document) -> Document:
        request = parse(DeleteTagsInput, body)
        p.tags.delete_tags(request.resource_arn, request.tag_keys)
        return {}

    return table


OPERATIONS = _operations()


def wire_error(exc: Exception) -> tuple[int, str, str]:
    """Status, ``__type`` code and message of an error, as SageMaker's JSON 1.1 sends them.

    A missing resource is ``ValidationException`` on this wire (``Could not find model ...``),
    which boto3's ``endpoint_deleted`` waiter depends on.
    """
    if isinstance(exc, ResourceInUse):
        return 400, "ResourceInUse", exc.message
    if isinstance(exc, ResourceLimitExceeded):
        return 400, "ResourceLimitExceeded", exc.message
    if isinstance(exc, ShipwayError) and exc.code != "InternalFailure":
        return 400, "ValidationException", exc.message
    return 500, "InternalFailure", "An internal error occurred; see the server log."


class SageMakerAPI:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    @staticmethod
    def handles(scope: Scope) -> bool:
        if scope["method"] != "POST" or scope["path"] != "/":
            return False
        return any(name == b"x-amz-target" for name, _ in scope["headers"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = dict(scope["headers"]).get(b"x-amz-target", b"").decode("latin-1")
        prefix, _, name = target.partition(".")
        operation = OPERATIONS.get(name) if prefix + "." == SAGEMAKER else None
        platform = self._platform

        def call(document: Document) -> Document:
            assert operation is not None
            return operation.call(platform, document)

        await dispatch(target, call if operation else None, wire_error, receive, send)
