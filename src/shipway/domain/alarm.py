"""Alarms in CloudWatch's vocabulary: a rule on one metric that is OK, ALARM or INSUFFICIENT_DATA.

An alarm watches one statistic of one metric (namespace, name, dimensions) over ``Period``
seconds; it goes to ALARM when ``DatapointsToAlarm`` of the last ``EvaluationPeriods`` datapoints
breach the threshold (the M-out-of-N rule), and ``TreatMissingData`` says what a period without
data counts as. Actions (``OKActions``, ``AlarmActions``, ``InsufficientDataActions``) that name
an SNS topic of this server publish the alarm's notification to it on a change of state
(:mod:`shipway.service.alarm_actions`); Auto Scaling policies read their alarms' states; any other
action is stored and echoed. Metric math (``Metrics``, ``ThresholdMetricId``), anomaly-detection
bands and the newer evaluation options are refused with a clear "not supported".

A new alarm starts INSUFFICIENT_DATA; every change of its configuration or state is an
:class:`AlarmHistoryItem`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, StringConstraints, model_validator

from shipway.domain.errors import NotFound
from shipway.domain.metric import (
    Dimensions,
    ExtendedStatistic,
    MetricName,
    Namespace,
    ScanBy,
    StandardUnit,
    Statistic,
)
from shipway.domain.model import Tag
from shipway.domain.shape import Shape

__all__ = [
    "INITIAL_REASON",
    "MAX_TAGS",
    "AlarmDefinition",
    "AlarmHistoryItem",
    "AlarmNameList",
    "AlarmNamesInput",
    "AlarmNotFound",
    "AlarmState",
    "AlarmType",
    "ComparisonOperator",
    "DescribeAlarmHistoryInput",
    "DescribeAlarmHistoryOutput",
    "DescribeAlarmsForMetricInput",
    "DescribeAlarmsForMetricOutput",
    "DescribeAlarmsInput",
    "DescribeAlarmsOutput",
    "EvaluateLowSampleCountPercentile",
    "HistoryItemType",
    "ListTagsForResourceInput",
    "MetricAlarm",
    "PutMetricAlarmInput",
    "SetAlarmStateInput",
    "TreatMissingData",
]

INITIAL_REASON = "Unchecked: Initial alarm creation"
MAX_TAGS = 50
MAX_DAY_SECONDS = 86_400
HIGH_RESOLUTION_PERIODS = (10, 20, 30)


class AlarmState(StrEnum):
    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class ComparisonOperator(StrEnum):
    GREATER_THAN_OR_EQUAL = "GreaterThanOrEqualToThreshold"
    GREATER_THAN = "GreaterThanThreshold"
    LESS_THAN = "LessThanThreshold"
    LESS_THAN_OR_EQUAL = "LessThanOrEqualToThreshold"
    # anomaly-detection bands: named so that they are refused as "not supported"
    OUTSIDE_BAND = "LessThanLowerOrGreaterThanUpperThreshold"
    BELOW_BAND = "LessThanLowerThreshold"
    ABOVE_BAND = "GreaterThanUpperThreshold"

    @property
    def is_band(self) -> bool:
        return self in _BANDS

    def breached(self, value: float, threshold: float) -> bool:
        """Whether ``value`` is on the alarming side of ``threshold``."""
        if self is ComparisonOperator.GREATER_THAN_OR_EQUAL:
            return value >= threshold
        if self is ComparisonOperator.GREATER_THAN:
            return value > threshold
        if self is ComparisonOperator.LESS_THAN:
            return value < threshold
        if self is ComparisonOperator.LESS_THAN_OR_EQUAL:
            return value <= threshold
        raise ValueError(f"{self.value} compares with an anomaly-detection band, not a threshold")

    @property
    def phrase(self) -> str:
        """As CloudWatch words it in a state reason: ``greater than or equal to``."""
        return _PHRASES[self]


_BANDS = frozenset(
    {ComparisonOperator.OUTSIDE_BAND, ComparisonOperator.BELOW_BAND, ComparisonOperator.ABOVE_BAND}
)
_PHRASES = {
    ComparisonOperator.GREATER_THAN_OR_EQUAL: "greater than or equal to",
    ComparisonOperator.GREATER_THAN: "greater than",
    ComparisonOperator.LESS_THAN: "less than",
    ComparisonOperator.LESS_THAN_OR_EQUAL: "less than or equal to",
    ComparisonOperator.OUTSIDE_BAND: "outside the band",
    ComparisonOperator.BELOW_BAND: "below the band",
    ComparisonOperator.ABOVE_BAND: "above the band",
}


class TreatMissingData(StrEnum):
    BREACHING = "breaching"
    NOT_BREACHING = "notBreaching"
    IGNORE = "ignore"
    MISSING = "missing"


class EvaluateLowSampleCountPercentile(StrEnum):
    EVALUATE = "evaluate"
    IGNORE = "ignore"


class HistoryItemType(StrEnum):
    CONFIGURATION_UPDATE = "ConfigurationUpdate"
    STATE_UPDATE = "StateUpdate"
    ACTION = "Action"
    ALARM_CONTRIBUTOR_STATE_UPDATE = "AlarmContributorStateUpdate"
    ALARM_CONTRIBUTOR_ACTION = "AlarmContributorAction"


class AlarmType(StrEnum):
    COMPOSITE_ALARM = "CompositeAlarm"
    METRIC_ALARM = "MetricAlarm"
    LOG_ALARM = "LogAlarm"


AlarmName = Annotated[str, StringConstraints(min_length=1, max_length=255)]
AlarmNameList = Annotated[list[AlarmName], Field(max_length=100)]
ActionArn = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
ResourceList = Annotated[list[ActionArn], Field(max_length=5)]
StateReason = Annotated[str, StringConstraints(max_length=1023)]
StateReasonData = Annotated[str, StringConstraints(max_length=4000)]
NextToken = Annotated[str, StringConstraints(max_length=8192)]

_UNSUPPORTED = {
    "Metrics": "Metrics (metric math) is not supported: alarm on one metric with MetricName, "
    "Namespace, Dimensions and Statistic or ExtendedStatistic.",
    "ThresholdMetricId": "ThresholdMetricId (anomaly-detection bands) is not supported: give a "
    "Threshold.",
    "EvaluationCriteria": "EvaluationCriteria (PromQL alarms) is not supported.",
    "EvaluationWindow": "EvaluationWindow is not supported: alarms evaluate the last "
    "EvaluationPeriods periods.",
    "WarmUpConfiguration": "WarmUpConfiguration is not supported.",
    "EvaluationInterval": "EvaluationInterval is not supported: alarms are evaluated every "
    "interval the server is configured with.",
    "ActionConfiguration": "ActionConfiguration is not supported.",
}
_SNAKE_UNSUPPORTED = {
    "metrics": "Metrics",
    "threshold_metric_id": "ThresholdMetricId",
    "evaluation_criteria": "EvaluationCriteria",
    "evaluation_window": "EvaluationWindow",
    "warm_up_configuration": "WarmUpConfiguration",
    "evaluation_interval": "EvaluationInterval",
    "action_configuration": "ActionConfiguration",
}


class AlarmDefinition(Shape):
    """What an alarm watches and when it fires: everything PutMetricAlarm sets but its name
    and tags."""

    alarm_description: Annotated[str, StringConstraints(max_length=1024)] | None = None
    actions_enabled: bool | None = None
    ok_actions: ResourceList | None = Field(default=None, alias="OKActions")
    alarm_actions: ResourceList | None = None
    insufficient_data_actions: ResourceList | None = None
    metric_name: MetricName
    namespace: Namespace
    statistic: Statistic | None = None
    extended_statistic: ExtendedStatistic | None = None
    dimensions: Dimensions | None = None
    period: Annotated[int, Field(ge=1)]
    unit: StandardUnit | None = None
    evaluation_periods: Annotated[int, Field(ge=1)]
    datapoints_to_alarm: Annotated[int, Field(ge=1)] | None = None
    threshold: float
    comparison_operator: ComparisonOperator
    treat_missing_data: TreatMissingData | None = None
    evaluate_low_sample_count_percentile: EvaluateLowSampleCountPercentile | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                name = _SNAKE_UNSUPPORTED.get(key, key)
                if name in _UNSUPPORTED and data[key] is not None:
                    raise ValueError(_UNSUPPORTED[name])
        return data

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if (self.statistic is None) == (self.extended_statistic is None):
            raise ValueError(
                "Exactly one of Statistic and ExtendedStatistic must be specified "
                f"(got {'both' if self.statistic is not None else 'neither'})."
            )
        if self.comparison_operator.is_band:
            raise ValueError(
                f"ComparisonOperator {self.comparison_operator.value} compares with an "
                "anomaly-detection band, which is not supported; use GreaterThanOrEqualTo"
                "Threshold, GreaterThanThreshold, LessThanThreshold or LessThanOrEqualToThreshold."
            )
        if self.period not in HIGH_RESOLUTION_PERIODS and self.period % 60:
            raise ValueError(f"Period ({self.period}) must be 10, 20, 30 or a multiple of 60.")
        if self.period * self.evaluation_periods > MAX_DAY_SECONDS:
            raise ValueError(
                f"The evaluation period ({self.period} s x {self.evaluation_periods} = "
                f"{self.period * self.evaluation_periods} s) must not exceed one day "
                f"({MAX_DAY_SECONDS} s)."
            )
        if self.datapoints_to_alarm is not None and self.datapoints_to_alarm > (
            self.evaluation_periods
        ):
            raise ValueError(
                f"DatapointsToAlarm ({self.datapoints_to_alarm}) must be less than or equal to "
                f"EvaluationPeriods ({self.evaluation_periods})."
            )
        if self.evaluate_low_sample_count_percentile is not None and (
            self.extended_statistic is None
        ):
            raise ValueError(
                "EvaluateLowSampleCountPercentile applies only to alarms on a percentile "
                "(ExtendedStatistic)."
            )
        return self

    @property
    def stat(self) -> str:
        """The statistic the alarm evaluates: ``Sum``, ``p99``..."""
        if self.statistic is not None:
            return self.statistic.value
        assert self.extended_statistic is not None
        return self.extended_statistic

    @property
    def dimension_map(self) -> dict[str, str]:
        return {d.name: d.value for d in self.dimensions or []}

    @property
    def datapoints_needed(self) -> int:
        """M of the M-out-of-N rule (DatapointsToAlarm, else EvaluationPeriods)."""
        return self.datapoints_to_alarm or self.evaluation_periods

    @property
    def missing_data(self) -> TreatMissingData:
        return self.treat_missing_data or TreatMissingData.MISSING


class PutMetricAlarmInput(AlarmDefinition):
    alarm_name: AlarmName
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] | None = None


class MetricAlarm(AlarmDefinition):
    """An alarm as DescribeAlarms returns it: its definition, ARN and state."""

    alarm_name: AlarmName
    alarm_arn: str
    alarm_configuration_updated_timestamp: datetime
    actions_enabled: bool | None = True
    ok_actions: ResourceList | None = Field(default_factory=list, alias="OKActions")
    alarm_actions: ResourceList | None = Field(default_factory=list)
    insufficient_data_actions: ResourceList | None = Field(default_factory=list)
    dimensions: Dimensions | None = Field(default_factory=list)
    state_value: AlarmState = AlarmState.INSUFFICIENT_DATA
    state_reason: StateReason = INITIAL_REASON
    state_reason_data: StateReasonData | None = None
    state_updated_timestamp: datetime
    state_transitioned_timestamp: datetime


class AlarmHistoryItem(Shape):
    alarm_name: AlarmName
    alarm_type: AlarmType = AlarmType.METRIC_ALARM
    timestamp: datetime
    history_item_type: HistoryItemType
    history_summary: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    history_data: Annotated[str, StringConstraints(min_length=1, max_length=4095)]


# --- operations -------------------------------------------------------------------------------


class DescribeAlarmsInput(Shape):
    alarm_names: AlarmNameList | None = None
    alarm_name_prefix: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    alarm_types: list[AlarmType] | None = None
    children_of_alarm_name: AlarmName | None = None
    parents_of_alarm_name: AlarmName | None = None
    state_value: AlarmState | None = None
    action_prefix: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    max_records: Annotated[int, Field(ge=1, le=100)] | None = None
    next_token: NextToken | None = None


class DescribeAlarmsOutput(Shape):
    metric_alarms: list[MetricAlarm]
    composite_alarms: list[dict[str, Any]] = Field(default_factory=list)
    next_token: str | None = None


class DescribeAlarmsForMetricInput(Shape):
    metric_name: MetricName
    namespace: Namespace
    statistic: Statistic | None = None
    extended_statistic: ExtendedStatistic | None = None
    dimensions: Dimensions | None = None
    period: Annotated[int, Field(ge=1)] | None = None
    unit: StandardUnit | None = None


class DescribeAlarmsForMetricOutput(Shape):
    metric_alarms: list[MetricAlarm]


class AlarmNamesInput(Shape):
    """DeleteAlarms, EnableAlarmActions and DisableAlarmActions: up to 100 alarm names."""

    alarm_names: AlarmNameList


class SetAlarmStateInput(Shape):
    alarm_name: AlarmName
    state_value: AlarmState
    state_reason: StateReason
    state_reason_data: StateReasonData | None = None


class DescribeAlarmHistoryInput(Shape):
    alarm_name: AlarmName | None = None
    alarm_contributor_id: Annotated[str, StringConstraints(min_length=1, max_length=16)] | None = (
        None
    )
    alarm_types: list[AlarmType] | None = None
    history_item_type: HistoryItemType | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    max_records: Annotated[int, Field(ge=1, le=100)] | None = None
    next_token: NextToken | None = None
    scan_by: ScanBy = ScanBy.TIMESTAMP_DESCENDING


class DescribeAlarmHistoryOutput(Shape):
    alarm_history_items: list[AlarmHistoryItem]
    next_token: str | None = None


class ListTagsForResourceInput(Shape):
    resource_arn: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        alias="ResourceARN"
    )


class AlarmNotFound(NotFound):
    """Alarms named in a call do not exist (CloudWatch's ``ResourceNotFound``)."""

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__("alarm", ", ".join(names))
        self.names = list(names)
        if len(self.names) == 1:
            self.message = f"Alarm {self.names[0]} not found"
        else:
            self.message = f"Alarms not found: {', '.join(self.names)}"
        self.args = (self.message,)
