"""AlarmService over a real SQLite store and metrics store, with a manual clock."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shipway.domain.alarm import (
    INITIAL_REASON,
    AlarmNotFound,
    AlarmState,
    DescribeAlarmHistoryInput,
    DescribeAlarmsForMetricInput,
    DescribeAlarmsInput,
    HistoryItemType,
    PutMetricAlarmInput,
    SetAlarmStateInput,
)
from shipway.domain.clock import ManualClock
from shipway.domain.errors import (
    InvalidFormat,
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
)
from shipway.domain.model import Tag
from shipway.domain.names import Account
from shipway.domain.shape import parse
from shipway.monitor.metrics import Datapoint, MetricsStore
from shipway.service.alarms import AlarmEvaluator, AlarmService
from shipway.store.metadata import MetadataStore

ENDPOINT = {"EndpointName": "orders", "VariantName": "AllTraffic"}
ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:"
OK, ALARM, INSUFFICIENT = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA


@dataclass
class Alarms:
    service: AlarmService
    store: MetadataStore
    metrics: MetricsStore
    clock: ManualClock
    changes: list[tuple[str, AlarmState]]

    def put(self, name: str = "errors", **fields: Any) -> None:
        document: dict[str, Any] = {
            "AlarmName": name,
            "MetricName": "Invocation5XXErrors",
            "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": k, "Value": v} for k, v in ENDPOINT.items()],
            "Statistic": "Sum",
            "Period": 10,
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        }
        document.update(fields)
        self.service.put_metric_alarm(
            parse(PutMetricAlarmInput, {k: v for k, v in document.items() if v is not None})
        )

    def errors(self, count: float, seconds_ago: float = 1.0) -> None:
        """``count`` 5XX errors recorded ``seconds_ago`` before now."""
        moment = self.clock.now().timestamp() - seconds_ago
        self.metrics.put("Invocation5XXErrors", ENDPOINT, count, moment, unit="Count")

    def state(self, name: str = "errors") -> AlarmState:
        return self.service.describe_alarm(name).state_value

    def history(self, name: str = "errors", **fields: Any) -> list[Any]:
        request = parse(DescribeAlarmHistoryInput, {"AlarmName": name, **fields})
        return self.service.describe_alarm_history(request).alarm_history_items

    def describe(self, **fields: Any) -> list[str]:
        output = self.service.describe_alarms(parse(DescribeAlarmsInput, fields))
        return [a.alarm_name for a in output.metric_alarms]


@pytest.fixture
def alarms(tmp_path: Path) -> Iterator[Alarms]:
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    metrics = MetricsStore()
    clock = ManualClock()
    changes: list[tuple[str, AlarmState]] = []
    service = AlarmService(
        store, metrics, clock, Account(), on_change=lambda n, s: changes.append((n, s))
    )
    yield Alarms(service, store, metrics, clock, changes)
    store.close()


# --- PutMetricAlarm -----------------------------------------------------------------------------


def test_a_new_alarm_is_insufficient_data_until_evaluated(alarms: Alarms) -> None:
    alarms.put(AlarmActions=["arn:aws:sns:us-east-1:123456789012:page"])
    alarm = alarms.service.describe_alarm("errors")
    now = alarms.clock.now()
    assert alarm.alarm_arn == ARN + "errors"
    assert alarm.state_value is INSUFFICIENT
    assert alarm.state_reason == INITIAL_REASON
    assert alarm.alarm_configuration_updated_timestamp == now
    assert alarm.state_updated_timestamp == alarm.state_transitioned_timestamp == now
    assert alarm.actions_enabled is True
    assert alarm.alarm_actions == ["arn:aws:sns:us-east-1:123456789012:page"]
    assert alarm.ok_actions == []
    [created] = alarms.history()
    assert created.history_item_type is HistoryItemType.CONFIGURATION_UPDATE
    assert created.history_summary == 'Alarm "errors" created'
    data = json.loads(created.history_data)
    assert data["type"] == "Create"
    assert data["createdAlarm"]["metricName"] == "Invocation5XXErrors"
    assert data["createdAlarm"]["alarmActions"] == ["arn:aws:sns:us-east-1:123456789012:page"]


def test_replacing_keeps_the_state_and_evaluates_again(alarms: Alarms) -> None:
    alarms.put(Tags=[{"Key": "team", "Value": "ml"}])
    alarms.clock.advance(5)
    alarms.errors(3)
    alarms.clock.advance(5)
    assert alarms.service.evaluate() == [("errors", ALARM)]
    alarms.clock.advance(1)

    alarms.put(Threshold=2, Tags=[{"Key": "ignored", "Value": "on update"}])
    assert alarms.state() is ALARM  # 3 >= 2 still: kept, with its reason
    assert alarms.changes == [("errors", ALARM)]

    alarms.put(Threshold=5)  # evaluated at once: 3 < 5
    alarm = alarms.service.describe_alarm("errors")
    assert alarm.state_value is OK
    assert alarm.threshold == 5.0
    assert alarm.state_reason.startswith("Threshold Crossed: 1 datapoint [3.0")
    assert alarms.changes == [("errors", ALARM), ("errors", OK)]
    assert alarms.service.list_tags(ARN + "errors") == [Tag(key="team", value="ml")]
    kinds = [(h.history_item_type.value, h.history_summary) for h in alarms.history()]
    assert kinds == [
        ("StateUpdate", "Alarm updated from ALARM to OK"),
        ("ConfigurationUpdate", 'Alarm "errors" updated'),
        ("ConfigurationUpdate", 'Alarm "errors" updated'),
        ("StateUpdate", "Alarm updated from INSUFFICIENT_DATA to ALARM"),
        ("ConfigurationUpdate", 'Alarm "errors" created'),
    ]
    update = json.loads(alarms.history()[1].history_data)
    assert update["originalUpdatedAlarm"]["threshold"] == 2.0
    assert update["updatedAlarm"]["threshold"] == 5.0


def test_list_tags_of_an_unknown_alarm(alarms: Alarms) -> None:
    with pytest.raises(AlarmNotFound):
        alarms.service.list_tags(ARN + "nope")
    with pytest.raises(AlarmNotFound):
        alarms.service.list_tags("arn:aws:sns:us-east-1:123456789012:topic")


# --- evaluation ---------------------------------------------------------------------------------


def test_evaluation_moves_alarms_and_records_each_change(alarms: Alarms) -> None:
    alarms.put()
    alarms.put("quiet", TreatMissingData="notBreaching")
    # an error in the period under way counts only once the period has ended
    alarms.clock.advance(12)
    alarms.errors(2)
    assert alarms.service.evaluate() == [("quiet", OK)]
    alarms.clock.advance(9)
    assert alarms.service.evaluate() == [("errors", ALARM), ("quiet", ALARM)]
    assert alarms.service.evaluate() == []  # nothing new: nothing written
    alarm = alarms.service.describe_alarm("errors")
    assert alarm.state_reason == (
        "Threshold Crossed: 1 datapoint [2.0 (01/01/26 00:00:10)] was greater than or equal to "
        "the threshold (1.0)."
    )
    reason_data = json.loads(alarm.state_reason_data or "{}")
    assert reason_data["recentDatapoints"] == [2.0]
    assert alarm.state_transitioned_timestamp == alarms.clock.now()
    alarms.clock.advance(10)  # a period with no data
    assert alarms.service.evaluate() == [("errors", INSUFFICIENT), ("quiet", OK)]
    assert alarms.changes == [
        ("quiet", OK),
        ("errors", ALARM),
        ("quiet", ALARM),
        ("errors", INSUFFICIENT),
        ("quiet", OK),
    ]
    [latest, *_] = alarms.history()
    assert latest.history_summary == "Alarm updated from ALARM to INSUFFICIENT_DATA"
    data = json.loads(latest.history_data)
    assert data["oldState"]["stateValue"] == "ALARM"
    assert data["newState"] == {
        "stateValue": "INSUFFICIENT_DATA",
        "stateReason": "Insufficient Data: 1 datapoint was unknown.",
        "stateReasonData": json.loads(
            alarms.service.describe_alarm("errors").state_reason_data or "{}"
        ),
    }


def test_alarms_on_units_and_percentiles(alarms: Alarms) -> None:
    alarms.put("latency", MetricName="ModelLatency", Statistic=None, ExtendedStatistic="p90",
               Threshold=100_000, Unit="Microseconds")  # fmt: skip
    alarms.put("in-seconds", MetricName="ModelLatency", Statistic="Maximum", Unit="Seconds")
    now = alarms.clock.now().timestamp()
    for value in [1_000.0] * 8 + [500_000.0] * 2:
        alarms.metrics.put("ModelLatency", ENDPOINT, value, now + 1, unit="Microseconds")
    alarms.clock.advance(10)
    alarms.service.evaluate()
    assert alarms.state("latency") is ALARM
    assert alarms.state("in-seconds") is INSUFFICIENT  # no datapoint of that unit


class _BrokenMetrics(MetricsStore):
    """A metrics store that fails for one metric (one seam, faked)."""

    def query(self, name: str, dimensions: Mapping[str, str], **kwargs: Any) -> list[Datapoint]:
        if name == "Broken":
            raise RuntimeError("the store is broken for this metric")
        return super().query(name, dimensions, **kwargs)


def test_one_broken_alarm_or_listener_stops_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    clock = ManualClock()

    def listener(name: str, state: AlarmState) -> None:
        raise RuntimeError("the controller is down")

    service = AlarmService(store, _BrokenMetrics(), clock, Account(), on_change=listener)
    try:
        alarms = Alarms(service, store, service._metrics, clock, [])
        alarms.put("a-broken", MetricName="Broken")
        alarms.put("b-fine", TreatMissingData="breaching")
        clock.advance(10)
        with caplog.at_level(logging.ERROR):
            assert service.evaluate() == [("b-fine", ALARM)]
        assert "evaluating alarm a-broken failed" in caplog.text
        assert "on_change for alarm b-fine failed" in caplog.text
    finally:
        store.close()


class _CountingMetrics(MetricsStore):
    """The real store, counting the queries made of it."""

    queries = 0

    def query(self, name: str, dimensions: Mapping[str, str], **kwargs: Any) -> list[Datapoint]:
        self.queries += 1
        return super().query(name, dimensions, **kwargs)


def test_a_settled_window_is_evaluated_again_only_when_data_comes_for_it(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    metrics = _CountingMetrics()
    clock = ManualClock()
    changes: list[tuple[str, AlarmState]] = []
    service = AlarmService(
        store, metrics, clock, Account(), on_change=lambda n, s: changes.append((n, s))
    )
    try:
        alarms = Alarms(service, store, metrics, clock, changes)
        alarms.put()
        clock.advance(11)  # 1 s after the period ended: data may still be coming
        service.evaluate()
        service.evaluate()
        assert metrics.queries == 2
        clock.advance(2)  # settled
        service.evaluate()
        service.evaluate()
        service.evaluate()
        assert metrics.queries == 3
        group = metrics.group([("Invocation5XXErrors", "Count")], ENDPOINT)
        group.put(clock.now().timestamp(), [0.0])  # the router writes at the present
        service.evaluate()
        assert metrics.queries == 3
        alarms.errors(4, seconds_ago=5)  # PutMetricData dated in the settled window
        assert service.evaluate() == [("errors", ALARM)]
        assert metrics.queries == 4
        clock.advance(7)  # the next period ends: its window is evaluated
        assert service.evaluate() == [("errors", OK)]
    finally:
        store.close()


# --- SetAlarmState ------------------------------------------------------------------------------


def test_set_state_lasts_until_the_next_evaluation(alarms: Alarms) -> None:
    alarms.put()
    alarms.service.set_alarm_state(
        parse(
            SetAlarmStateInput,
            {
                "AlarmName": "errors",
                "StateValue": "ALARM",
                "StateReason": "testing the rollback",
                "StateReasonData": '{"by": "hand"}',
            },
        )
    )
    alarm = alarms.service.describe_alarm("errors")
    assert alarm.state_value is ALARM
    assert alarm.state_reason == "testing the rollback"
    assert alarm.state_reason_data == '{"by": "hand"}'
    assert alarms.changes == [("errors", ALARM)]
    assert alarms.history()[0].history_summary == "Alarm updated from INSUFFICIENT_DATA to ALARM"
    assert alarms.service.states(["errors"]) == {"errors": ALARM}
    alarms.clock.advance(9)
    assert alarms.service.evaluate() == []  # held while the period it was set in lasts
    alarms.clock.advance(1)
    alarms.service.evaluate()  # no data: back to what the metric says
    assert alarms.state() is INSUFFICIENT
    assert alarms.changes == [("errors", ALARM), ("errors", INSUFFICIENT)]


def test_set_state_errors(alarms: Alarms) -> None:
    alarms.put()
    request = {"AlarmName": "errors", "StateValue": "OK", "StateReason": "r"}
    with pytest.raises(InvalidFormat, match="StateReasonData is not valid JSON"):
        alarms.service.set_alarm_state(
            parse(SetAlarmStateInput, {**request, "StateReasonData": "{not json"})
        )
    with pytest.raises(AlarmNotFound, match="Alarm nope not found"):
        alarms.service.set_alarm_state(parse(SetAlarmStateInput, {**request, "AlarmName": "nope"}))
    assert alarms.state() is INSUFFICIENT
    # the same state again: the reason changes, nothing transitions
    alarms.service.set_alarm_state(
        parse(SetAlarmStateInput, {**request, "StateValue": "INSUFFICIENT_DATA"})
    )
    assert alarms.service.describe_alarm("errors").state_reason == "r"
    assert alarms.changes == []
    assert len(alarms.history()) == 1


# --- DescribeAlarms and friends -----------------------------------------------------------------


def test_describe_alarms_filters_and_pages(alarms: Alarms) -> None:
    for name in ["web-5xx", "web-4xx", "batch-errors", "web-latency"]:
        alarms.put(name, OKActions=["arn:aws:sns:us-east-1:123456789012:ops"] if "web" in name
                   else None)  # fmt: skip
    alarms.service.set_alarm_state(
        parse(
            SetAlarmStateInput, {"AlarmName": "web-4xx", "StateValue": "ALARM", "StateReason": "x"}
        )
    )
    assert alarms.describe() == ["batch-errors", "web-4xx", "web-5xx", "web-latency"]
    assert alarms.describe(AlarmNamePrefix="web-") == ["web-4xx", "web-5xx", "web-latency"]
    assert alarms.describe(AlarmNames=["web-5xx", "nope", "batch-errors"]) == [
        "batch-errors",
        "web-5xx",
    ]
    assert alarms.describe(StateValue="ALARM") == ["web-4xx"]
    assert alarms.describe(ActionPrefix="arn:aws:sns:us-east-1:123456789012:o") == [
        "web-4xx",
        "web-5xx",
        "web-latency",
    ]
    assert alarms.describe(AlarmTypes=["CompositeAlarm"]) == []
    assert alarms.describe(AlarmTypes=["MetricAlarm", "CompositeAlarm"])[0] == "batch-errors"

    names, token = [], None
    while True:
        request = {"MaxRecords": 3, **({"NextToken": token} if token else {})}
        page = alarms.service.describe_alarms(parse(DescribeAlarmsInput, request))
        names.append([a.alarm_name for a in page.metric_alarms])
        token = page.next_token
        if token is None:
            break
    assert names == [["batch-errors", "web-4xx", "web-5xx"], ["web-latency"]]
    assert page.composite_alarms == []


def test_describe_alarms_errors(alarms: Alarms) -> None:
    with pytest.raises(InvalidParameterCombination):
        alarms.describe(AlarmNames=["a"], AlarmNamePrefix="a")
    with pytest.raises(InvalidNextToken):
        alarms.describe(NextToken="not-a-token")
    with pytest.raises(InvalidParameterCombination):
        alarms.describe(ChildrenOfAlarmName="a", StateValue="OK")
    alarms.put("a")
    assert alarms.describe(ChildrenOfAlarmName="a") == []  # no composite alarms
    assert alarms.describe(ParentsOfAlarmName="a", MaxRecords=5) == []


def test_describe_alarms_for_metric(alarms: Alarms) -> None:
    alarms.put("sum-10")
    alarms.put("max-60", Statistic="Maximum", Period=60)
    alarms.put("p99", Statistic=None, ExtendedStatistic="p99")
    alarms.put("other-variant", Dimensions=[{"Name": "EndpointName", "Value": "orders"}])
    alarms.put("invocations", MetricName="Invocations")

    def names(**fields: Any) -> list[str]:
        request = parse(
            DescribeAlarmsForMetricInput,
            {"MetricName": "Invocation5XXErrors", "Namespace": "AWS/SageMaker", **fields},
        )
        return [
            a.alarm_name for a in alarms.service.describe_alarms_for_metric(request).metric_alarms
        ]

    assert names() == ["max-60", "other-variant", "p99", "sum-10"]
    assert names(Statistic="Sum") == ["other-variant", "sum-10"]
    assert names(ExtendedStatistic="p99") == ["p99"]
    assert names(Period=60) == ["max-60"]
    assert names(Dimensions=[{"Name": "EndpointName", "Value": "orders"}]) == ["other-variant"]
    assert names(Unit="Count") == []


def test_delete_is_all_or_nothing(alarms: Alarms) -> None:
    alarms.put("a")
    alarms.put("b")
    with pytest.raises(AlarmNotFound) as raised:
        alarms.service.delete_alarms(["a", "missing", "other"])
    assert raised.value.message == "Alarms not found: missing, other"
    assert raised.value.code == "ResourceNotFound"
    assert alarms.describe() == ["a", "b"]
    alarms.service.delete_alarms(["a", "b"])
    assert alarms.describe() == []
    assert alarms.history("a") == []
    with pytest.raises(AlarmNotFound, match="Alarm a not found"):
        alarms.service.describe_alarm("a")


def test_actions_enabled_flag(alarms: Alarms) -> None:
    alarms.put("a")
    alarms.service.disable_alarm_actions(["a", "unknown"])  # unknown names are skipped
    assert alarms.service.describe_alarm("a").actions_enabled is False
    alarms.service.enable_alarm_actions(["a"])
    assert alarms.service.describe_alarm("a").actions_enabled is True


def test_states_and_missing_for_the_controller(alarms: Alarms) -> None:
    alarms.put("a")
    alarms.put("b")
    assert alarms.service.states(["a", "nope", "b"]) == {"a": INSUFFICIENT, "b": INSUFFICIENT}
    assert alarms.service.missing(["nope", "a", "other", "nope"]) == ["nope", "other"]
    assert alarms.service.missing([]) == []
    assert alarms.service.states([]) == {}


# --- DescribeAlarmHistory -----------------------------------------------------------------------


def test_history_filters_order_and_pages(alarms: Alarms) -> None:
    alarms.put()
    for state in ["ALARM", "OK", "ALARM"]:
        alarms.clock.advance(60)
        alarms.service.set_alarm_state(
            parse(
                SetAlarmStateInput,
                {"AlarmName": "errors", "StateValue": state, "StateReason": state},
            )
        )
    start = alarms.clock.now() - timedelta(seconds=180)
    summaries = [h.history_summary for h in alarms.history()]
    assert summaries == [
        "Alarm updated from OK to ALARM",
        "Alarm updated from ALARM to OK",
        "Alarm updated from INSUFFICIENT_DATA to ALARM",
        'Alarm "errors" created',
    ]
    assert [h.history_summary for h in alarms.history(ScanBy="TimestampAscending")] == (
        summaries[::-1]
    )
    assert len(alarms.history(HistoryItemType="StateUpdate")) == 3
    assert len(alarms.history(HistoryItemType="Action")) == 0
    window = alarms.history(
        StartDate=start + timedelta(seconds=60), EndDate=start + timedelta(seconds=120)
    )
    assert [h.history_summary for h in window] == summaries[1:3]
    assert alarms.history(AlarmTypes=["CompositeAlarm"]) == []

    first = alarms.service.describe_alarm_history(
        parse(DescribeAlarmHistoryInput, {"AlarmName": "errors", "MaxRecords": 3})
    )
    assert first.next_token is not None
    rest = alarms.service.describe_alarm_history(
        parse(
            DescribeAlarmHistoryInput,
            {"AlarmName": "errors", "MaxRecords": 3, "NextToken": first.next_token},
        )
    )
    assert [h.history_summary for h in rest.alarm_history_items] == summaries[3:]
    assert rest.next_token is None
    with pytest.raises(InvalidNextToken):  # a token of the other scan order
        alarms.history(NextToken=first.next_token, ScanBy="TimestampAscending")
    with pytest.raises(InvalidParameterValue):
        alarms.history(StartDate=start, EndDate=start - timedelta(seconds=1))


# --- the evaluator loop -------------------------------------------------------------------------


def test_the_evaluator_runs_until_closed_and_survives_failures(
    alarms: Alarms, caplog: pytest.LogCaptureFixture
) -> None:
    alarms.put(TreatMissingData="breaching")
    calls = 0
    evaluate = alarms.service.evaluate

    def flaky() -> list[tuple[str, AlarmState]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first evaluation fails")
        return evaluate()

    alarms.service.evaluate = flaky  # type: ignore[method-assign]
    alarms.clock.advance(10)

    async def run() -> None:
        evaluator = AlarmEvaluator(alarms.service, interval=0.01)
        await evaluator.start()
        for _ in range(200):
            if alarms.changes:
                break
            await asyncio.sleep(0.01)
        await evaluator.close()
        stopped_at = calls
        await asyncio.sleep(0.05)
        assert calls == stopped_at  # closed: no more evaluations
        await evaluator.close()  # closing twice is fine

    with caplog.at_level(logging.ERROR):
        asyncio.run(run())
    assert alarms.changes == [("errors", ALARM)]
    assert "alarm evaluation failed" in caplog.text


def test_the_public_names_are_pinned() -> None:
    from shipway.monitor import alarm_evaluation
    from shipway.service import alarms as alarms_module
    from shipway.service import metrics as metrics_module
    from shipway.store import alarms as store_module

    assert alarms_module.__all__ == ["AlarmEvaluator", "AlarmService", "OnChange"]
    assert metrics_module.__all__ == ["MetricService"]
    assert store_module.__all__ == ["AlarmChange", "AlarmStore", "HistoryQuery"]
    assert alarm_evaluation.__all__ == [
        "Evaluation",
        "evaluate_alarm",
        "evaluation_window",
        "minimum_samples",
    ]
