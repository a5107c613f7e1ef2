"""The Application Auto Scaling wire adapter: JSON 1.1, ``POST /`` with ``X-Amz-Target``.

``boto3.client("application-autoscaling", endpoint_url=...)`` sends
``X-Amz-Target: AnyScaleFrontendService.<Operation>`` and a JSON body of the operation's input
shape; it reads the output shape back (timestamps as epoch seconds), and for errors the code in
the body's ``__type``, which names one of the service's modelled errors, so boto3 raises
``client.exceptions.ValidationException``, ``ObjectNotFoundException``... No rule lives here:
only the translation, and one mapping of domain errors to the service's error shapes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from shipway.api.json_rpc import dispatch, to_wire
from shipway.api.operations import Operations
from shipway.domain.errors import (
    InvalidNextToken,
    ResourceLimitExceeded,
    ShipwayError,
)
from shipway.domain.scaling import (
    ConcurrentUpdate,
    DeleteScalingPolicyInput,
    DeregisterScalableTargetInput,
    DescribeScalableTargetsInput,
    DescribeScalingActivitiesInput,
    DescribeScalingPoliciesInput,
    ObjectNotFound,
    PutScalingPolicyInput,
    RegisterScalableTargetInput,
)
from shipway.domain.shape import Shape, parse

if TYPE_CHECKING:
    from shipway.platform import Platform

__all__ = ["OPERATIONS", "TARGET_PREFIX", "AutoscalingAPI", "wire_error"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Document = dict[str, Any]

TARGET_PREFIX = "AnyScaleFrontendService."
"""Application Auto Scaling's target prefix (the service's Smithy name)."""

# --- operations -------------------------------------------------------------------------------

Call = Callable[["Platform", Document], Shape | None]
OPERATIONS: Operations[Call] = Operations()


@OPERATIONS.register("RegisterScalableTarget")
def _register_scalable_target(p: Platform, body: Document) -> Shape:
    return p.scaling.register_scalable_target(parse(RegisterScalableTargetInput, body))


@OPERATIONS.register("DescribeScalableTargets")
def _describe_scalable_targets(p: Platform, body: Document) -> Shape:
    return p.scaling.describe_scalable_targets(parse(DescribeScalableTargetsInput, body))


@OPERATIONS.register("DeregisterScalableTarget")
def _deregister_scalable_target(p: Platform, body: Document) -> None:
    p.scaling.deregister_scalable_target(parse(DeregisterScalableTargetInput, body))


@OPERATIONS.register("PutScalingPolicy")
def _put_scaling_policy(p: Platform, body: Document) -> Shape:
    return p.scaling.put_scaling_policy(parse(PutScalingPolicyInput, body))


@OPERATIONS.register("DescribeScalingPolicies")
def _describe_scaling_policies(p: Platform, body: Document) -> Shape:
    return p.scaling.describe_scaling_policies(parse(DescribeScalingPoliciesInput, body))


@OPERATIONS.register("DeleteScalingPolicy")
def _delete_scaling_policy(p: Platform, body: Document) -> None:
    p.scaling.delete_scaling_policy(parse(DeleteScalingPolicyInput, body))


@OPERATIONS.register("DescribeScalingActivities")
def _describe_scaling_activities(p: Platform, body: Document) -> Shape:
    return p.scaling.describe_scaling_activities(parse(DescribeScalingActivitiesInput, body))


# --- errors and documents ---------------------------------------------------------------------


def wire_error(exc: Exception) -> tuple[int, str, str]:
    """Status, ``__type`` (a modelled error shape of the service) and message of an error.

    AWS's model gives these errors no status: bad input is 400, an unexpected failure
    ``InternalServiceException`` 500 (which boto3 retries)."""
    if isinstance(exc, ObjectNotFound):
        return 400, "ObjectNotFoundException", exc.message
    if isinstance(exc, ResourceLimitExceeded):
        return 400, "LimitExceededException", exc.message
    if isinstance(exc, InvalidNextToken):
        return 400, "InvalidNextTokenException", exc.message
    if isinstance(exc, ConcurrentUpdate):
        return 400, "ConcurrentUpdateException", exc.message
    if isinstance(exc, ShipwayError) and exc.code != "InternalFailure":
        return 400, "ValidationException", exc.message
    return 500, "InternalServiceException", "An internal error occurred; see the server log."


def _output(result: Shape | None) -> Document:
    if result is None:
        return {}
    document: Document = to_wire(result.model_dump(mode="python", by_alias=True, exclude_none=True))
    return document


# --- the adapter ------------------------------------------------------------------------------


class AutoscalingAPI:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    @staticmethod
    def handles(scope: Scope) -> bool:
        if scope["method"] != "POST" or scope["path"] != "/":
            return False
        for name, value in scope["headers"]:
            if name == b"x-amz-target":
                return bool(value.startswith(TARGET_PREFIX.encode()))
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = dict(scope["headers"]).get(b"x-amz-target", b"").decode("latin-1")
        operation = OPERATIONS.get(target[len(TARGET_PREFIX) :])
        platform = self._platform

        def call(document: Document) -> Document:
            assert operation is not None
            return _output(operation(platform, document))

        await dispatch(target, call if operation else None, wire_error, receive, send)
