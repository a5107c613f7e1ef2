"""Alarm evaluation: CloudWatch's M-out-of-N rule, every TreatMissingData mode, its reasons."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shipway.domain.alarm import AlarmState, MetricAlarm
from shipway.monitor.alarm_evaluation import (
    MAX_REASON,
    MAX_REASON_DATA,
    evaluate_alarm,
    evaluation_window,
    minimum_samples,
)
from shipway.monitor.metrics import Datapoint

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NOW = datetime.fromtimestamp(T0 + 180 + 5, UTC)  # 5 s into the 4th minute: 3 minutes have ended
OK, ALARM, INSUFFICIENT = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA
X, O, _ = 5.0, 0.0, None  # noqa: E741 - breaching, not breaching, missing (threshold 1, >=)


def make_alarm(**fields: Any) -> MetricAlarm:
    moment = datetime.fromtimestamp(T0, UTC)
    document: dict[str, Any] = {
        "AlarmName": "errors",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:errors",
        "AlarmConfigurationUpdatedTimestamp": moment,
        "StateUpdatedTimestamp": moment,
        "StateTransitionedTimestamp": moment,
        "MetricName": "Invocation5XXErrors",
        "Namespace": "AWS/SageMaker",
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 3,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    document.update(fields)
    return MetricAlarm.model_validate(document)


def series(*values: float | None, start: float = T0, period: int = 60) -> list[Datapoint]:
    """Datapoints oldest first, one per period from ``start``; None is a period without data."""
    return [
        Datapoint(start + i * period, value, 10)
        for i, value in enumerate(values)
        if value is not None
    ]


def state(alarm: MetricAlarm, *values: float | None) -> AlarmState:
    return evaluate_alarm(alarm, series(*values), NOW).state


# --- the window ---------------------------------------------------------------------------------


def test_the_window_is_the_last_whole_periods_that_have_ended() -> None:
    assert evaluation_window(60, 3, T0 + 185) == (T0, T0 + 180)
    assert evaluation_window(60, 3, T0 + 180) == (T0, T0 + 180)  # a period ending now counts
    assert evaluation_window(60, 3, T0 + 179.9) == (T0 - 60, T0 + 120)
    assert evaluation_window(10, 1, T0 + 25) == (T0 + 10, T0 + 20)


def test_datapoints_outside_the_window_do_not_count() -> None:
    alarm = make_alarm(EvaluationPeriods=1)
    # the period under way (ends after NOW) and one long gone both breach; the last ended is ok
    points = [
        Datapoint(T0 + 180, 9.0, 1),
        Datapoint(T0, 9.0, 1),
        Datapoint(T0 + 120, 0.0, 1),
    ]
    assert evaluate_alarm(alarm, points, NOW).state is OK


# --- M out of N with every datapoint there ------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "m", "expected"),
    [
        ((O, O, O), 3, OK),
        ((X, X, O), 3, OK),
        ((X, X, X), 3, ALARM),
        ((X, O, X), 2, ALARM),
        ((O, O, X), 2, OK),
        ((O, O, X), 1, ALARM),
        ((X, O, O), 1, ALARM),  # the oldest counts as much as the newest
        ((O, O, O), 1, OK),
    ],
)
def test_m_out_of_n(values: tuple[float, ...], m: int, expected: AlarmState) -> None:
    assert state(make_alarm(DatapointsToAlarm=m), *values) is expected


@pytest.mark.parametrize(
    ("operator", "breaching", "calm"),
    [
        ("GreaterThanOrEqualToThreshold", [1.0, 2.0], [0.999]),
        ("GreaterThanThreshold", [1.001, 5.0], [1.0, 0.0]),
        ("LessThanThreshold", [0.999, -3.0], [1.0, 2.0]),
        ("LessThanOrEqualToThreshold", [1.0, 0.0], [1.001]),
    ],
)
def test_each_comparison_operator_at_and_around_the_threshold(
    operator: str, breaching: list[float], calm: list[float]
) -> None:
    alarm = make_alarm(EvaluationPeriods=1, ComparisonOperator=operator)
    for value in breaching:
        assert state(alarm, None, None, value) is ALARM, value
    for value in calm:
        assert state(alarm, None, None, value) is OK, value


# --- missing data -------------------------------------------------------------------------------

# N = 3, M = 3 unless given: the rows of CloudWatch's own table, and more
MISSING_CASES = [
    # values,      M, missing,           ignore (from INSUFFICIENT_DATA), breaching, notBreaching
    ((O, _, X), 3, OK, OK, OK, OK),
    ((_, _, O), 3, OK, OK, OK, OK),
    ((_, _, _), 3, INSUFFICIENT, INSUFFICIENT, ALARM, OK),
    ((X, X, X), 3, ALARM, ALARM, ALARM, ALARM),
    ((_, X, _), 3, ALARM, INSUFFICIENT, ALARM, OK),
    ((X, _, X), 3, ALARM, INSUFFICIENT, ALARM, OK),
    ((X, _, O), 2, OK, INSUFFICIENT, ALARM, OK),
    ((X, X, _), 2, ALARM, ALARM, ALARM, ALARM),
    ((O, O, _), 2, OK, OK, OK, OK),
    ((_, _, X), 1, ALARM, ALARM, ALARM, ALARM),
    ((_, _, O), 1, OK, INSUFFICIENT, ALARM, OK),
]


@pytest.mark.parametrize(
    ("values", "m", "missing", "ignore", "breaching", "not_breaching"), MISSING_CASES
)
def test_treat_missing_data(
    values: tuple[float | None, ...],
    m: int,
    missing: AlarmState,
    ignore: AlarmState,
    breaching: AlarmState,
    not_breaching: AlarmState,
) -> None:
    expected = {
        "missing": missing,
        "ignore": ignore,
        "breaching": breaching,
        "notBreaching": not_breaching,
    }
    for mode, want in expected.items():
        alarm = make_alarm(DatapointsToAlarm=m, TreatMissingData=mode)
        assert state(alarm, *values) is want, (mode, values)


def test_missing_is_the_default() -> None:
    assert state(make_alarm(), _, _, _) is INSUFFICIENT
    assert state(make_alarm(), _, X, _) is ALARM


@pytest.mark.parametrize("current", [OK, ALARM, INSUFFICIENT])
def test_ignore_keeps_the_current_state_and_reason_when_the_data_does_not_decide(
    current: AlarmState,
) -> None:
    alarm = make_alarm(TreatMissingData="ignore", StateValue=current.value, StateReason="as it was")
    for values in [(_, _, _), (_, X, _), (X, _, X)]:
        outcome = evaluate_alarm(alarm, series(*values), NOW)
        assert outcome.state is current
        assert outcome.reason == "as it was"


# --- reasons ------------------------------------------------------------------------------------


def test_reason_for_one_datapoint() -> None:
    alarm = make_alarm(EvaluationPeriods=1)
    outcome = evaluate_alarm(alarm, series(_, _, 5.0), NOW)
    assert outcome.reason == (
        "Threshold Crossed: 1 datapoint [5.0 (01/01/26 00:02:00)] was greater than or equal to "
        "the threshold (1.0)."
    )
    calm = evaluate_alarm(alarm.model_copy(update={"state_value": ALARM}), series(_, _, 0.5), NOW)
    assert calm.reason == (
        "Threshold Crossed: 1 datapoint [0.5 (01/01/26 00:02:00)] was not greater than or equal "
        "to the threshold (1.0)."
    )


def test_reason_for_m_out_of_n_lists_the_deciding_datapoints_newest_first() -> None:
    alarm = make_alarm(DatapointsToAlarm=2, StateValue="OK")
    outcome = evaluate_alarm(alarm, series(5.0, 0.0, 3.0), NOW)
    assert outcome.state is ALARM
    assert outcome.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [3.0 (01/01/26 00:02:00), "
        "5.0 (01/01/26 00:00:00)] were greater than or equal to the threshold (1.0) "
        "(minimum 2 datapoints for OK -> ALARM transition)."
    )
    back = evaluate_alarm(
        alarm.model_copy(update={"state_value": ALARM}), series(0.0, 0.0, 3.0), NOW
    )
    assert back.state is OK
    assert back.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [0.0 (01/01/26 00:01:00), "
        "0.0 (01/01/26 00:00:00)] were not greater than or equal to the threshold (1.0) "
        "(minimum 2 datapoints for ALARM -> OK transition)."
    )


def test_reasons_when_missing_data_is_counted() -> None:
    breaching = make_alarm(TreatMissingData="breaching")
    outcome = evaluate_alarm(breaching, [], NOW)
    assert outcome.reason == (
        "Threshold Crossed: no datapoints were received for 3 periods and 3 missing datapoints "
        "were treated as [Breaching] (minimum 3 datapoints for INSUFFICIENT_DATA -> ALARM "
        "transition)."
    )
    mixed = evaluate_alarm(breaching, series(_, 5.0, _), NOW)
    assert mixed.reason == (
        "Threshold Crossed: 1 out of the last 3 datapoints [5.0 (01/01/26 00:01:00)] was "
        "greater than or equal to the threshold (1.0), and 2 missing datapoints were treated "
        "as [Breaching] (minimum 3 datapoints for INSUFFICIENT_DATA -> ALARM transition)."
    )
    calm = evaluate_alarm(make_alarm(TreatMissingData="notBreaching", EvaluationPeriods=1), [], NOW)
    assert calm.state is OK
    assert calm.reason == (
        "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint "
        "was treated as [NonBreaching]."
    )


def test_insufficient_data_reason() -> None:
    outcome = evaluate_alarm(make_alarm(StateValue="OK"), [], NOW)
    assert outcome.state is INSUFFICIENT
    assert outcome.reason == "Insufficient Data: 3 datapoints were unknown."
    one = evaluate_alarm(make_alarm(EvaluationPeriods=1, StateValue="ALARM"), [], NOW)
    assert one.reason == "Insufficient Data: 1 datapoint was unknown."


@pytest.mark.parametrize(
    ("current", "values"), [(OK, (O, O, O)), (ALARM, (X, X, X)), (INSUFFICIENT, (_, _, _))]
)
def test_a_state_that_stays_keeps_its_reason(current: AlarmState, values: tuple[Any, ...]) -> None:
    alarm = make_alarm(StateValue=current.value, StateReason="since then", StateReasonData="{}")
    outcome = evaluate_alarm(alarm, series(*values), NOW)
    assert (outcome.state, outcome.reason, outcome.reason_data) == (current, "since then", "{}")


def test_reason_data_is_cloudwatch_json() -> None:
    alarm = make_alarm(DatapointsToAlarm=2, Unit="Count")
    outcome = evaluate_alarm(alarm, series(5.0, _, 3.0), NOW)
    assert outcome.reason_data is not None
    assert json.loads(outcome.reason_data) == {
        "version": "1.0",
        "queryDate": "2026-01-01T00:03:05.000+0000",
        "startDate": "2026-01-01T00:00:00.000+0000",
        "unit": "Count",
        "statistic": "Sum",
        "period": 60,
        "recentDatapoints": [5.0, 3.0],
        "threshold": 1.0,
        "evaluatedDatapoints": [
            {"timestamp": "2026-01-01T00:02:00.000+0000", "sampleCount": 10.0, "value": 3.0},
            {"timestamp": "2026-01-01T00:00:00.000+0000", "sampleCount": 10.0, "value": 5.0},
        ],
    }
    percentile = make_alarm(Statistic=None, ExtendedStatistic="p99")
    data = json.loads(evaluate_alarm(percentile, series(1.0), NOW).reason_data or "{}")
    assert data["extendedStatistic"] == "p99"
    assert "statistic" not in data


def test_long_windows_fit_cloudwatchs_limits() -> None:
    alarm = make_alarm(EvaluationPeriods=1440, DatapointsToAlarm=1)  # a day of minutes
    now = datetime.fromtimestamp(T0 + 1440 * 60, UTC)
    points = series(*([123456.789] * 1440))
    outcome = evaluate_alarm(alarm, points, now)
    assert outcome.state is ALARM
    assert len(outcome.reason) <= MAX_REASON
    assert outcome.reason.startswith("Threshold Crossed: 1440 out of the last 1440 datapoints [")
    assert ", ...]" in outcome.reason
    assert outcome.reason_data is not None
    assert len(outcome.reason_data) <= MAX_REASON_DATA
    assert json.loads(outcome.reason_data)["evaluatedDatapoints"]


# --- statistics and samples ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percentile", "needed"), [(99, 1000), (90, 100), (50, 20), (10, 100), (99.9, 10_000)]
)
def test_minimum_samples_for_a_significant_percentile(percentile: float, needed: float) -> None:
    assert minimum_samples(percentile) == pytest.approx(needed)


def test_low_sample_percentiles_keep_the_state_when_told_to_ignore_them() -> None:
    ignoring = make_alarm(
        Statistic=None,
        ExtendedStatistic="p99",
        EvaluationPeriods=1,
        EvaluateLowSampleCountPercentile="ignore",
        StateValue="OK",
    )
    few = [Datapoint(T0 + 120, 500.0, 10)]  # p99 of 10 samples: not significant
    assert evaluate_alarm(ignoring, few, NOW).state is OK
    many = [Datapoint(T0 + 120, 500.0, 5000)]
    assert evaluate_alarm(ignoring, many, NOW).state is ALARM
    evaluating = ignoring.model_copy(update={"evaluate_low_sample_count_percentile": None})
    assert evaluate_alarm(evaluating, few, NOW).state is ALARM
