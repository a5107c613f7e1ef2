"""MetricService: GetMetricStatistics, GetMetricData, PutMetricData and ListMetrics over a real
metrics store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipway.domain.clock import ManualClock
from shipway.domain.errors import (
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
    MissingParameter,
    ValidationError,
)
from shipway.domain.metric import (
    GetMetricDataInput,
    GetMetricStatisticsInput,
    ListMetricsInput,
    PutMetricDataInput,
    StandardUnit,
    StatusCode,
)
from shipway.domain.shape import parse
from shipway.monitor.metrics import MetricsStore
from shipway.service.metrics import MetricService

START = datetime(2026, 1, 1, tzinfo=UTC)
SERVICE = [{"Name": "Service", "Value": "checkout"}]


@pytest.fixture
def clock() -> ManualClock:
    clock = ManualClock(START)
    clock.advance(3600)
    return clock


@pytest.fixture
def service(clock: ManualClock) -> MetricService:
    return MetricService(MetricsStore(), clock)


def put(service: MetricService, *data: dict[str, Any], namespace: str = "Shop") -> None:
    service.put_metric_data(
        parse(PutMetricDataInput, {"Namespace": namespace, "MetricData": list(data)})
    )


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def statistics(service: MetricService, **fields: Any) -> list[dict[str, Any]]:
    request = {
        "Namespace": "Shop",
        "MetricName": "Latency",
        "Dimensions": SERVICE,
        "StartTime": at(0),
        "EndTime": at(3600),
        "Period": 60,
        **fields,
    }
    output = service.get_metric_statistics(parse(GetMetricStatisticsInput, request))
    assert output.label == request["MetricName"]
    return [p.model_dump(by_alias=True, exclude_none=True) for p in output.datapoints]


def test_put_value_values_and_statistic_sets_then_get_statistics(service: MetricService) -> None:
    put(
        service,
        {"MetricName": "Latency", "Dimensions": SERVICE, "Timestamp": at(5), "Value": 10.0,
         "Unit": "Milliseconds"},
        {"MetricName": "Latency", "Dimensions": SERVICE, "Timestamp": at(30),
         "Values": [20.0, 30.0], "Counts": [2, 1], "Unit": "Milliseconds"},
        {"MetricName": "Latency", "Dimensions": SERVICE, "Timestamp": at(70),
         "StatisticValues": {"SampleCount": 4, "Sum": 100.0, "Minimum": 5.0, "Maximum": 50.0},
         "Unit": "Milliseconds"},
    )  # fmt: skip
    points = statistics(
        service,
        Statistics=["SampleCount", "Sum", "Average", "Minimum", "Maximum"],
        ExtendedStatistics=["p50"],
    )
    assert points == [
        {
            "Timestamp": at(0),
            "SampleCount": 4.0,
            "Sum": 80.0,
            "Average": 20.0,
            "Minimum": 10.0,
            "Maximum": 30.0,
            "Unit": StandardUnit.MILLISECONDS,
            "ExtendedStatistics": {"p50": pytest.approx(20.0, rel=0.03)},
        },
        {
            "Timestamp": at(60),
            "SampleCount": 4.0,
            "Sum": 100.0,
            "Average": 25.0,
            "Minimum": 5.0,
            "Maximum": 50.0,
            "Unit": StandardUnit.MILLISECONDS,
            "ExtendedStatistics": {"p50": pytest.approx(25.0, rel=0.03)},
        },
    ]
    only_sum = statistics(service, Statistics=["Sum"], Period=3600)
    assert only_sum == [{"Timestamp": at(0), "Sum": 180.0, "Unit": StandardUnit.MILLISECONDS}]
    assert statistics(service, Statistics=["Sum"], Unit="Seconds") == []
    assert statistics(service, Statistics=["Sum"], Dimensions=[]) == []  # dimensions are exact


def test_get_statistics_aligns_the_start_to_the_period(service: MetricService) -> None:
    put(service, {"MetricName": "Latency", "Dimensions": SERVICE, "Timestamp": at(65), "Value": 1})
    [point] = statistics(service, Statistics=["Sum"], StartTime=at(61), Period=60)
    assert point["Timestamp"] == at(60)
    [point] = statistics(service, Statistics=["Sum"], StartTime=at(63), Period=10)
    assert point["Timestamp"] == at(60)


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({}, MissingParameter, "At least one of the parameters Statistics and Extended"),
        ({"Statistics": ["Sum"], "Period": 7}, InvalidParameterValue, "Period must be 1, 5"),
        ({"Statistics": ["Sum"], "Period": 90}, InvalidParameterValue, "multiple of 60"),
        (
            {"Statistics": ["Sum"], "EndTime": at(0)},
            InvalidParameterValue,
            "StartTime must be less than the parameter EndTime",
        ),
        (
            {"Statistics": ["Sum"], "Period": 1},
            InvalidParameterCombination,
            "You have requested up to 3,600 datapoints, which exceeds the limit of 1,440.",
        ),
    ],
)
def test_get_statistics_errors(
    service: MetricService, fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        statistics(service, **fields)


def query(metric: str = "Latency", stat: str = "Sum", **fields: Any) -> dict[str, Any]:
    return {
        "Id": fields.pop("Id", "q1"),
        "MetricStat": {
            "Metric": {"Namespace": "Shop", "MetricName": metric, "Dimensions": SERVICE},
            "Period": fields.pop("Period", 60),
            "Stat": stat,
        },
        **fields,
    }


def metric_data(service: MetricService, *queries: dict[str, Any], **fields: Any) -> Any:
    request = {"MetricDataQueries": list(queries), "StartTime": at(0), "EndTime": at(600)}
    return service.get_metric_data(parse(GetMetricDataInput, {**request, **fields}))


def test_get_metric_data_in_either_order_and_in_pages(service: MetricService) -> None:
    for minute in range(5):
        put(service, {"MetricName": "Latency", "Dimensions": SERVICE,
                      "Timestamp": at(minute * 60 + 1), "Value": float(minute)})  # fmt: skip
    put(service, {"MetricName": "Errors", "Dimensions": SERVICE, "Timestamp": at(1), "Value": 7})
    output = metric_data(
        service, query(), query("Errors", Id="errors", Label="5xx"), query("Latency", Id="hidden",
        ReturnData=False)
    )  # fmt: skip
    latency, errors = output.metric_data_results
    assert latency.id == "q1"
    assert latency.label == "Latency"
    assert latency.values == [4.0, 3.0, 2.0, 1.0, 0.0]  # newest first by default
    assert latency.timestamps == [at(240), at(180), at(120), at(60), at(0)]
    assert latency.status_code is StatusCode.COMPLETE
    assert (errors.label, errors.values) == ("5xx", [7.0])
    assert output.next_token is None
    ascending = metric_data(service, query(), ScanBy="TimestampAscending")
    assert ascending.metric_data_results[0].values == [0.0, 1.0, 2.0, 3.0, 4.0]

    pages = []
    token = None
    while True:
        extra = {"MaxDatapoints": 4, **({"NextToken": token} if token else {})}
        page = metric_data(service, query(), query("Errors", Id="errors"), **extra)
        pages.append([(r.id, r.values, r.status_code) for r in page.metric_data_results])
        token = page.next_token
        if token is None:
            break
    assert pages == [
        [("q1", [4.0, 3.0, 2.0, 1.0], StatusCode.PARTIAL_DATA),
         ("errors", [], StatusCode.PARTIAL_DATA)],
        [("q1", [0.0], StatusCode.COMPLETE), ("errors", [7.0], StatusCode.COMPLETE)],
    ]  # fmt: skip


def test_get_metric_data_errors(service: MetricService) -> None:
    with pytest.raises(ValidationError, match="metric math expressions are not supported"):
        metric_data(service, {"Id": "e1", "Expression": "SUM(METRICS())"})
    with pytest.raises(ValidationError, match="Ids must be unique"):
        metric_data(service, query(), query())
    with pytest.raises(InvalidParameterValue, match="Stat is invalid"):
        metric_data(service, query(stat="Median"))
    with pytest.raises(MissingParameter, match="MetricStat is required"):
        metric_data(service, {"Id": "q"})
    with pytest.raises(InvalidNextToken):
        metric_data(service, query(), NextToken="garbage")
    with pytest.raises(ValidationError, match="ReturnData true"):
        metric_data(service, query(ReturnData=False))
    with pytest.raises(InvalidParameterValue, match="Period must be 1, 5, 10"):
        metric_data(service, query(Period=45))


@pytest.mark.parametrize(
    ("datum", "error", "message"),
    [
        ({"MetricName": "m"}, MissingParameter, "One of the parameters MetricData.member.1.Value"),
        (
            {"MetricName": "m", "Value": 1, "Values": [1.0]},
            InvalidParameterCombination,
            "MetricData.member.1.Value and MetricData.member.1.Values are mutually exclusive",
        ),
        (
            {"MetricName": "m", "Values": [1.0, 2.0], "Counts": [1]},
            InvalidParameterValue,
            "Values and MetricData.member.1.Counts must be of the same size",
        ),
        ({"MetricName": "m", "Value": 1, "Counts": [1]}, InvalidParameterCombination, "Counts"),
        ({"MetricName": "m", "Values": [1.0], "Counts": [0.5]}, InvalidParameterValue, "whole"),
        ({"MetricName": "m", "Value": float("nan")}, InvalidParameterValue, "Value is invalid"),
        ({"MetricName": "m", "Value": 1e200}, InvalidParameterValue, "Value is invalid"),
        ({"MetricName": "m", "Value": 1e-200}, InvalidParameterValue, "Value is invalid"),
        (
            {
                "MetricName": "m",
                "StatisticValues": {"SampleCount": 0, "Sum": 1, "Minimum": 1, "Maximum": 1},
            },
            InvalidParameterValue,
            "SampleCount is invalid",
        ),
        (
            {
                "MetricName": "m",
                "StatisticValues": {"SampleCount": 2, "Sum": 1, "Minimum": 3, "Maximum": 1},
            },
            InvalidParameterValue,
            "Minimum must not be greater than its Maximum",
        ),
        (
            {"MetricName": "m", "Value": 1, "StorageResolution": 5},
            InvalidParameterValue,
            "must be 1 or 60",
        ),
        (
            {"MetricName": "m", "Value": 1, "Timestamp": START - timedelta(days=15)},
            InvalidParameterValue,
            "no more than two weeks in the past",
        ),
        (
            {"MetricName": "m", "Value": 1, "Timestamp": START + timedelta(hours=4)},
            InvalidParameterValue,
            "two hours in the future",
        ),
    ],
)
def test_put_metric_data_errors_write_nothing(
    service: MetricService, datum: dict[str, Any], error: type[Exception], message: str
) -> None:
    good = {"MetricName": "good", "Value": 1.0}
    with pytest.raises(error, match=message):
        put(service, datum, good)
    assert service.list_metrics(parse(ListMetricsInput, {})).metrics == []


def test_put_metric_data_refuses_aws_namespaces_and_empty_requests(service: MetricService) -> None:
    with pytest.raises(InvalidParameterValue, match="The value AWS/SageMaker for parameter"):
        put(service, {"MetricName": "m", "Value": 1}, namespace="AWS/SageMaker")
    with pytest.raises(MissingParameter, match="MetricData is required"):
        put(service)


def test_entity_metric_data_counts_as_metric_data(service: MetricService) -> None:
    service.put_metric_data(
        parse(
            PutMetricDataInput,
            {
                "Namespace": "Shop",
                "EntityMetricData": [
                    {
                        "Entity": {"KeyAttributes": {"Type": "Service", "Name": "checkout"}},
                        "MetricData": [{"MetricName": "Orders", "Value": 3}],
                    }
                ],
            },
        )
    )
    [metric] = service.list_metrics(parse(ListMetricsInput, {})).metrics
    assert metric.metric_name == "Orders"


def test_list_metrics_filters_and_pages(service: MetricService, clock: ManualClock) -> None:
    put(
        service,
        {"MetricName": "Latency", "Dimensions": SERVICE, "Value": 1, "Unit": "Seconds"},
        {"MetricName": "Latency", "Dimensions": SERVICE, "Value": 1, "Unit": "Milliseconds"},
        {"MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": "cart"}], "Value": 1},
        {"MetricName": "Orders", "Value": 1},
    )
    put(service, {"MetricName": "Jobs", "Value": 1}, namespace="Batch")

    def listed(**fields: Any) -> list[tuple[str | None, str | None, list[tuple[str, str]]]]:
        output = service.list_metrics(parse(ListMetricsInput, fields))
        return [
            (m.namespace, m.metric_name, [(d.name, d.value) for d in m.dimensions or []])
            for m in output.metrics
        ]

    assert listed() == [
        ("Batch", "Jobs", []),
        ("Shop", "Latency", [("Service", "cart")]),
        ("Shop", "Latency", [("Service", "checkout")]),  # one metric, whatever the units
        ("Shop", "Orders", []),
    ]
    assert listed(Namespace="Shop", MetricName="Latency", Dimensions=[{"Name": "Service"}]) == [
        ("Shop", "Latency", [("Service", "cart")]),
        ("Shop", "Latency", [("Service", "checkout")]),
    ]
    assert listed(Dimensions=[{"Name": "Service", "Value": "cart"}]) == [
        ("Shop", "Latency", [("Service", "cart")])
    ]
    with pytest.raises(InvalidNextToken):
        listed(NextToken="nope")

    for i in range(600):
        put(service, {"MetricName": f"m{i:03d}", "Value": 1}, namespace="Many")
    first = service.list_metrics(parse(ListMetricsInput, {"Namespace": "Many"}))
    assert len(first.metrics) == 500
    assert first.next_token is not None
    rest = service.list_metrics(
        parse(ListMetricsInput, {"Namespace": "Many", "NextToken": first.next_token})
    )
    assert len(rest.metrics) == 100
    assert rest.next_token is None
