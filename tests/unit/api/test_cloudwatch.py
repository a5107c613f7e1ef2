"""The CloudWatch wire: which requests it takes, its error mapping, and the awsquery codec
against botocore's own serializer and parser."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest
from botocore.parsers import QueryParser
from botocore.serialize import QuerySerializer

from shipway.api import awsquery, cloudwatch
from shipway.api.cloudwatch import CloudWatchAPI, wire_error
from shipway.domain.alarm import AlarmNotFound, PutMetricAlarmInput
from shipway.domain.errors import (
    InvalidFormat,
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
    MissingParameter,
    ResourceLimitExceeded,
    ValidationError,
)
from shipway.domain.shape import parse

MODEL = botocore.session.get_session().get_service_model("cloudwatch")


def scope(path: str = "/", method: str = "POST", **headers: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


def test_the_requests_it_takes() -> None:
    assert CloudWatchAPI.handles(
        scope("/service/GraniteServiceVersion20100801/operation/DescribeAlarms")
    )
    assert CloudWatchAPI.handles(scope(x_amz_target="GraniteServiceVersion20100801.DescribeAlarms"))
    assert CloudWatchAPI.handles(
        scope(content_type="application/x-www-form-urlencoded; charset=utf-8")
    )
    assert not CloudWatchAPI.handles(scope(x_amz_target="SageMaker.ListModels"))
    assert not CloudWatchAPI.handles(scope("/api/alarms", content_type="application/json"))
    assert not CloudWatchAPI.handles(
        scope("/service/GraniteServiceVersion20100801/operation/DescribeAlarms", method="GET")
    )
    assert not CloudWatchAPI.handles(scope(content_type="application/json"))


@pytest.mark.parametrize(
    ("error", "shape", "code", "status"),
    [
        (AlarmNotFound(["a"]), "ResourceNotFound", "ResourceNotFound", 404),
        (
            InvalidParameterValue("x"),
            "InvalidParameterValueException",
            "InvalidParameterValue",
            400,
        ),
        (
            InvalidParameterCombination("x"),
            "InvalidParameterCombinationException",
            "InvalidParameterCombination",
            400,
        ),
        (MissingParameter("x"), "MissingRequiredParameterException", "MissingParameter", 400),
        (InvalidNextToken("x"), "InvalidNextToken", "InvalidNextToken", 400),
        (InvalidFormat("x"), "InvalidFormatFault", "InvalidFormat", 400),
        (ResourceLimitExceeded("x"), "LimitExceededFault", "LimitExceeded", 400),
        (ValidationError("x"), "ValidationException", "ValidationError", 400),
        (RuntimeError("boom"), "InternalServiceFault", "InternalServiceError", 500),
    ],
)
def test_errors_are_cloudwatchs_modelled_shapes(
    error: Exception, shape: str, code: str, status: int
) -> None:
    mapped = wire_error(error)
    assert (mapped.shape, mapped.code, mapped.status) == (shape, code, status)
    modelled = {s.name: s.error_code for s in MODEL.error_shapes}
    assert modelled[shape] == code  # botocore raises client.exceptions.<shape> for this code
    assert mapped.fault == ("Receiver" if status >= 500 else "Sender")
    if isinstance(error, RuntimeError):
        assert "boom" not in mapped.message  # internals stay in the server log


def test_every_operation_is_one_cloudwatch_has() -> None:
    assert set(cloudwatch.OPERATIONS) <= set(MODEL.operation_names)


def serialize_query(operation: str, params: dict[str, Any]) -> dict[str, str]:
    """The form botocore sends (it url-encodes these pairs)."""
    request = QuerySerializer().serialize_to_request(params, MODEL.operation_model(operation))
    return {name: str(value) for name, value in request["body"].items()}


def test_awsquery_reads_what_botocore_writes() -> None:
    params = {
        "AlarmName": "errors",
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:a", "arn:b"],
        "OKActions": [],
        "MetricName": "Invocation5XXErrors",
        "Namespace": "AWS/SageMaker",
        "Statistic": "Sum",
        "Dimensions": [{"Name": "EndpointName", "Value": "orders"}],
        "Period": 60,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Threshold": 1.5,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "ActionsEnabled": False,
        "Tags": [{"Key": "team", "Value": "ml"}],
    }
    form = serialize_query("PutMetricAlarm", params)
    assert form["Action"] == "PutMetricAlarm"
    document = awsquery.decode("PutMetricAlarm", form)
    assert document == params
    assert parse(PutMetricAlarmInput, document).threshold == 1.5

    start = datetime(2026, 1, 1, tzinfo=UTC)
    form = serialize_query(
        "GetMetricStatistics",
        {
            "Namespace": "n",
            "MetricName": "m",
            "StartTime": start,
            "EndTime": start.replace(hour=1),
            "Period": 60,
            "Statistics": ["Sum"],
        },
    )
    document = awsquery.decode("GetMetricStatistics", form)
    assert document["StartTime"] == start
    assert document["Statistics"] == ["Sum"]


def test_awsquery_writes_what_botocore_reads() -> None:
    moment = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    document = {
        "MetricAlarms": [
            {
                "AlarmName": "errors",
                "ActionsEnabled": True,
                "OKActions": [],
                "AlarmActions": ["arn:a"],
                "StateValue": "ALARM",
                "StateUpdatedTimestamp": moment,
                "Dimensions": [{"Name": "EndpointName", "Value": "orders"}],
                "Threshold": 1.0,
                "EvaluationPeriods": 1,
            }
        ],
        "CompositeAlarms": [],
        "NextToken": "abc",
    }
    body = awsquery.encode("DescribeAlarms", document, "request-1")
    parsed = QueryParser().parse(
        {"body": body, "headers": {}, "status_code": 200},
        MODEL.operation_model("DescribeAlarms").output_shape,
    )
    assert parsed["ResponseMetadata"]["RequestId"] == "request-1"
    [alarm] = parsed["MetricAlarms"]
    assert alarm["StateUpdatedTimestamp"] == moment
    assert alarm["ActionsEnabled"] is True
    assert alarm["Threshold"] == 1.0
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": "orders"}]
    assert alarm["AlarmActions"] == ["arn:a"]
    assert parsed["NextToken"] == "abc"

    statistics = awsquery.encode(
        "GetMetricStatistics",
        {"Label": "m", "Datapoints": [{"Timestamp": moment, "ExtendedStatistics": {"p99": 2.5}}]},
        "r",
    )
    parsed = QueryParser().parse(
        {"body": statistics, "headers": {}, "status_code": 200},
        MODEL.operation_model("GetMetricStatistics").output_shape,
    )
    assert parsed["Datapoints"] == [{"Timestamp": moment, "ExtendedStatistics": {"p99": 2.5}}]

    error = awsquery.encode_error("Sender", "ResourceNotFound", "Alarm a not found", "r")
    parsed = QueryParser().parse({"body": error, "headers": {}, "status_code": 404}, None)
    assert parsed["Error"] == {
        "Type": "Sender",
        "Code": "ResourceNotFound",
        "Message": "Alarm a not found",
    }


def test_awsquery_refuses_values_of_the_wrong_type() -> None:
    with pytest.raises(ValidationError, match="Period is not a valid integer"):
        awsquery.decode(
            "PutMetricAlarm", {"AlarmName": "a", "Period": "sixty", "Action": "PutMetricAlarm"}
        )
    with pytest.raises(ValidationError, match="Unknown operation"):
        awsquery.decode("NoSuchOperation", {})


def test_the_public_names_are_pinned() -> None:
    assert cloudwatch.__all__ == ["OPERATIONS", "SERVICE", "CloudWatchAPI", "wire_error"]
    assert awsquery.__all__ == ["NAMESPACE", "decode", "encode", "encode_error"]
