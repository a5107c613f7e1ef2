"""Alarm and metric shapes: CloudWatch's wire names, its constraints, AWS-worded errors."""

from __future__ import annotations

from typing import Any

import pytest

from shipway.domain.alarm import (
    AlarmState,
    ComparisonOperator,
    DescribeAlarmHistoryInput,
    DescribeAlarmsInput,
    PutMetricAlarmInput,
    SetAlarmStateInput,
    TreatMissingData,
)
from shipway.domain.errors import ValidationError
from shipway.domain.metric import (
    GetMetricDataInput,
    GetMetricStatisticsInput,
    ListMetricsInput,
    PutMetricDataInput,
    ScanBy,
)
from shipway.domain.shape import dump, parse

ALARM: dict[str, Any] = {
    "AlarmName": "endpoint-5xx",
    "MetricName": "Invocation5XXErrors",
    "Namespace": "AWS/SageMaker",
    "Statistic": "Sum",
    "Dimensions": [
        {"Name": "EndpointName", "Value": "orders"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ],
    "Period": 60,
    "EvaluationPeriods": 3,
    "DatapointsToAlarm": 2,
    "Threshold": 1,
    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
}


def alarm_error(**changes: Any) -> str:
    document = {**ALARM, **changes}
    for key in [k for k, v in changes.items() if v is None]:
        del document[key]
    with pytest.raises(ValidationError) as raised:
        parse(PutMetricAlarmInput, document)
    return raised.value.message


def test_an_alarm_reads_and_writes_cloudwatch_names() -> None:
    request = parse(
        PutMetricAlarmInput,
        {
            **ALARM,
            "OKActions": ["arn:aws:sns:us-east-1:123456789012:ok"],
            "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:page"],
            "TreatMissingData": "notBreaching",
            "Tags": [{"Key": "team", "Value": "ml"}],
        },
    )
    assert request.ok_actions == ["arn:aws:sns:us-east-1:123456789012:ok"]
    assert request.threshold == 1.0
    assert request.comparison_operator is ComparisonOperator.GREATER_THAN_OR_EQUAL
    assert request.missing_data is TreatMissingData.NOT_BREACHING
    assert request.dimension_map == {"EndpointName": "orders", "VariantName": "AllTraffic"}
    assert request.stat == "Sum"
    assert request.datapoints_needed == 2
    wire = dump(request)
    assert wire["OKActions"] == request.ok_actions
    assert wire["TreatMissingData"] == "notBreaching"
    assert "OkActions" not in wire


def test_defaults_missing_data_and_m_equal_to_n() -> None:
    request = parse(PutMetricAlarmInput, {**ALARM, "DatapointsToAlarm": None})
    assert request.datapoints_needed == 3
    assert request.missing_data is TreatMissingData.MISSING


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"Period": 15}, "Period (15) must be 10, 20, 30 or a multiple of 60."),
        ({"Period": 90}, "Period (90) must be 10, 20, 30 or a multiple of 60."),
        ({"Period": 0}, "Member must have value greater than or equal to 1"),
        ({"EvaluationPeriods": 0}, "at 'evaluationPeriods' failed"),
        (
            {"DatapointsToAlarm": 4},
            "DatapointsToAlarm (4) must be less than or equal to EvaluationPeriods (3).",
        ),
        ({"Period": 3600, "EvaluationPeriods": 25}, "must not exceed one day (86400 s)"),
        ({"ExtendedStatistic": "p99"}, "Exactly one of Statistic and ExtendedStatistic"),
        ({"Statistic": None}, "Exactly one of Statistic and ExtendedStatistic"),
        ({"Statistic": "Median"}, "Member must satisfy enum value set"),
        ({"Statistic": None, "ExtendedStatistic": "p999"}, "regular expression pattern"),
        ({"AlarmName": ""}, "Member must have length greater than or equal to 1"),
        ({"AlarmName": "x" * 256}, "Member must have length less than or equal to 255"),
        ({"Namespace": ":bad"}, "regular expression pattern"),
        ({"Threshold": None}, "Value null at 'threshold' failed to satisfy constraint"),
        ({"ComparisonOperator": "Equal"}, "Member must satisfy enum value set"),
        ({"TreatMissingData": "zero"}, "Member must satisfy enum value set"),
        ({"AlarmActions": [f"arn:{i}" for i in range(6)]}, "less than or equal to 5"),
        (
            {"Dimensions": [{"Name": f"d{i}", "Value": "v"} for i in range(31)]},
            "less than or equal to 30",
        ),
        (
            {"Dimensions": [{"Name": "d", "Value": "1"}, {"Name": "d", "Value": "2"}]},
            "the dimension name(s) d appear more than once",
        ),
        (
            {"EvaluateLowSampleCountPercentile": "ignore"},
            "EvaluateLowSampleCountPercentile applies only to alarms on a percentile",
        ),
    ],
)
def test_alarm_rules(changes: dict[str, Any], message: str) -> None:
    error = alarm_error(**changes)
    assert error.startswith("1 validation error detected: "), error
    assert message in error


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"Metrics": [{"Id": "m1", "Expression": "m2 * 2"}]},
            "Metrics (metric math) is not supported",
        ),
        ({"ThresholdMetricId": "ad1"}, "ThresholdMetricId (anomaly-detection bands) is not"),
        ({"EvaluationCriteria": {"PromQLCriteria": {"Query": "up"}}}, "PromQL"),
        ({"EvaluationInterval": 60}, "EvaluationInterval is not supported"),
        (
            {"ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold"},
            "anomaly-detection band, which is not supported",
        ),
        ({"ComparisonOperator": "GreaterThanUpperThreshold"}, "is not supported"),
    ],
)
def test_what_is_not_supported_says_so(changes: dict[str, Any], message: str) -> None:
    assert message in alarm_error(**changes)


def test_percentile_alarms() -> None:
    request = parse(
        PutMetricAlarmInput,
        {
            **ALARM,
            "Statistic": None,
            "ExtendedStatistic": "p99.9",
            "EvaluateLowSampleCountPercentile": "ignore",
            "Period": 10,
        },
    )
    assert request.stat == "p99.9"


def test_operation_inputs() -> None:
    described = parse(DescribeAlarmsInput, {"StateValue": "ALARM", "MaxRecords": 5})
    assert described.state_value is AlarmState.ALARM
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        parse(DescribeAlarmsInput, {"MaxRecords": 101})
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        parse(DescribeAlarmsInput, {"AlarmNames": [f"a{i}" for i in range(101)]})
    history = parse(DescribeAlarmHistoryInput, {})
    assert history.scan_by is ScanBy.TIMESTAMP_DESCENDING
    with pytest.raises(ValidationError, match="stateReason"):
        parse(SetAlarmStateInput, {"AlarmName": "a", "StateValue": "OK"})
    with pytest.raises(ValidationError, match="less than or equal to 1023"):
        parse(SetAlarmStateInput, {"AlarmName": "a", "StateValue": "OK", "StateReason": "x" * 1024})


def test_metric_inputs() -> None:
    statistics = parse(
        GetMetricStatisticsInput,
        {
            "Namespace": "AWS/SageMaker",
            "MetricName": "Invocations",
            "StartTime": 1_767_225_600,
            "EndTime": "2026-01-01T01:00:00Z",
            "Period": 60,
            "Statistics": ["Sum", "Average"],
            "ExtendedStatistics": ["p99"],
        },
    )
    assert statistics.start_time.timestamp() == 1_767_225_600
    assert statistics.end_time.timestamp() == 1_767_229_200
    with pytest.raises(ValidationError, match="less than or equal to 5"):
        parse(GetMetricStatisticsInput, {**dump(statistics), "Statistics": ["Sum"] * 6})
    query = {
        "Id": "Upper",
        "MetricStat": {"Metric": {"MetricName": "m"}, "Period": 60, "Stat": "Sum"},
    }
    with pytest.raises(ValidationError, match=r"metricDataQueries\.1\.member\.id"):
        parse(GetMetricDataInput, {"MetricDataQueries": [query], "StartTime": 0, "EndTime": 1})
    with pytest.raises(ValidationError, match="less than or equal to 1000"):
        parse(
            PutMetricDataInput,
            {"Namespace": "n", "MetricData": [{"MetricName": "m", "Value": 1}] * 1001},
        )
    with pytest.raises(ValidationError, match="less than or equal to 150"):
        parse(
            PutMetricDataInput,
            {"Namespace": "n", "MetricData": [{"MetricName": "m", "Values": [1.0] * 151}]},
        )
    with pytest.raises(ValidationError, match="enum value set"):
        parse(ListMetricsInput, {"RecentlyActive": "PT1H"})
