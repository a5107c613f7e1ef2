"""The Application Auto Scaling wire: which requests it takes, and each domain error as the
modelled error shape botocore's own JSON parser turns into the client's exception class."""

from __future__ import annotations

from typing import Any

import boto3
import orjson
import pytest
from botocore.parsers import JSONParser

from shipway.api import autoscaling
from shipway.api.autoscaling import OPERATIONS, AutoscalingAPI, wire_error
from shipway.domain.errors import (
    InvalidNextToken,
    NotFound,
    ResourceLimitExceeded,
    ShipwayError,
    ValidationError,
)
from shipway.domain.scaling import ConcurrentUpdate, ObjectNotFound

CLIENT = boto3.client(
    "application-autoscaling",
    region_name="us-east-1",
    aws_access_key_id="a",
    aws_secret_access_key="b",
)
MODEL = CLIENT.meta.service_model


def scope(method: str = "POST", path: str = "/", **headers: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


def test_the_requests_it_takes() -> None:
    target = "AnyScaleFrontendService.DescribeScalableTargets"
    assert AutoscalingAPI.handles(scope(x_amz_target=target))
    assert not AutoscalingAPI.handles(scope(x_amz_target="SageMaker.ListModels"))
    assert not AutoscalingAPI.handles(scope(x_amz_target="GraniteServiceVersion20100801.X"))
    assert not AutoscalingAPI.handles(scope("GET", x_amz_target=target))
    assert not AutoscalingAPI.handles(scope(path="/api/models", x_amz_target=target))
    assert not AutoscalingAPI.handles(scope())


def test_every_operation_of_the_plan_is_served_and_the_target_is_botocores() -> None:
    assert MODEL.metadata["targetPrefix"] + "." == autoscaling.TARGET_PREFIX
    assert set(OPERATIONS) == {
        "RegisterScalableTarget",
        "DescribeScalableTargets",
        "DeregisterScalableTarget",
        "PutScalingPolicy",
        "DescribeScalingPolicies",
        "DeleteScalingPolicy",
        "DescribeScalingActivities",
    }
    assert set(OPERATIONS) <= set(MODEL.operation_names)


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (ObjectNotFound("No scalable target registered"), "ObjectNotFoundException", 400),
        (ResourceLimitExceeded("too many"), "LimitExceededException", 400),
        (InvalidNextToken("bad token"), "InvalidNextTokenException", 400),
        (ConcurrentUpdate("try again"), "ConcurrentUpdateException", 400),
        (ValidationError("bad"), "ValidationException", 400),
        (NotFound("endpoint", "e"), "ValidationException", 400),
        (ShipwayError("unexpected"), "InternalServiceException", 500),
        (RuntimeError("bug"), "InternalServiceException", 500),
    ],
)
def test_errors_are_the_modelled_shapes_boto3_raises(
    error: Exception, code: str, status: int
) -> None:
    got_status, shape, message = wire_error(error)
    assert (got_status, shape) == (status, code)
    operation = MODEL.operation_model("RegisterScalableTarget")
    response = {
        "status_code": status,
        "headers": {"content-type": "application/x-amz-json-1.1"},
        "body": orjson.dumps({"__type": shape, "Message": message}),
    }
    parsed = JSONParser().parse(response, operation.output_shape)
    assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"] == message
    raised = CLIENT.exceptions.from_code(code)
    assert raised.__name__ == code  # a modelled class, not the generic ClientError
    if isinstance(error, RuntimeError):
        assert "bug" not in message  # nothing of the server's insides on the wire
