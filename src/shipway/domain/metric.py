"""Metrics in CloudWatch's vocabulary: the shapes of GetMetricStatistics, GetMetricData,
PutMetricData and ListMetrics.

A metric is a namespace (``AWS/SageMaker``), a name (``Invocations``) and dimensions
(``EndpointName``, ``VariantName``); its datapoints carry a unit. Statistics are
``SampleCount``, ``Average``, ``Sum``, ``Minimum``, ``Maximum`` or a percentile ``pNN(.NN)``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints

from shipway.domain.shape import Shape

__all__ = [
    "MAX_DIMENSIONS",
    "PERCENTILE_PATTERN",
    "Datapoint",
    "Dimension",
    "DimensionFilter",
    "Dimensions",
    "EntityMetricDatum",
    "ExtendedStatistic",
    "GetMetricDataInput",
    "GetMetricDataOutput",
    "GetMetricStatisticsInput",
    "GetMetricStatisticsOutput",
    "LabelOptions",
    "ListMetricsInput",
    "ListMetricsOutput",
    "MessageData",
    "Metric",
    "MetricDataQuery",
    "MetricDataResult",
    "MetricDatum",
    "MetricName",
    "MetricStat",
    "Namespace",
    "PutMetricDataInput",
    "ScanBy",
    "StandardUnit",
    "Statistic",
    "StatisticSet",
    "StatusCode",
]

MAX_DIMENSIONS = 30
PERCENTILE_PATTERN = r"^p\d{1,2}(\.\d{1,2})?$"


class StandardUnit(StrEnum):
    SECONDS = "Seconds"
    MICROSECONDS = "Microseconds"
    MILLISECONDS = "Milliseconds"
    BYTES = "Bytes"
    KILOBYTES = "Kilobytes"
    MEGABYTES = "Megabytes"
    GIGABYTES = "Gigabytes"
    TERABYTES = "Terabytes"
    BITS = "Bits"
    KILOBITS = "Kilobits"
    MEGABITS = "Megabits"
    GIGABITS = "Gigabits"
    TERABITS = "Terabits"
    PERCENT = "Percent"
    COUNT = "Count"
    BYTES_PER_SECOND = "Bytes/Second"
    KILOBYTES_PER_SECOND = "Kilobytes/Second"
    MEGABYTES_PER_SECOND = "Megabytes/Second"
    GIGABYTES_PER_SECOND = "Gigabytes/Second"
    TERABYTES_PER_SECOND = "Terabytes/Second"
    BITS_PER_SECOND = "Bits/Second"
    KILOBITS_PER_SECOND = "Kilobits/Second"
    MEGABITS_PER_SECOND = "Megabits/Second"
    GIGABITS_PER_SECOND = "Gigabits/Second"
    TERABITS_PER_SECOND = "Terabits/Second"
    COUNT_PER_SECOND = "Count/Second"
    NONE = "None"


class Statistic(StrEnum):
    SAMPLE_COUNT = "SampleCount"
    AVERAGE = "Average"
    SUM = "Sum"
    MINIMUM = "Minimum"
    MAXIMUM = "Maximum"


class ScanBy(StrEnum):
    TIMESTAMP_DESCENDING = "TimestampDescending"
    TIMESTAMP_ASCENDING = "TimestampAscending"


class StatusCode(StrEnum):
    COMPLETE = "Complete"
    INTERNAL_ERROR = "InternalError"
    PARTIAL_DATA = "PartialData"
    FORBIDDEN = "Forbidden"


Namespace = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^:].*$")]
MetricName = Annotated[str, StringConstraints(min_length=1, max_length=255)]
ExtendedStatistic = Annotated[str, StringConstraints(pattern=PERCENTILE_PATTERN)]
"""A percentile: ``p`` and 0 to 99.99 (``p99``, ``p99.9``)."""
NextToken = Annotated[str, StringConstraints(max_length=8192)]


class Dimension(Shape):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    value: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


def _unique_names(dimensions: list[Dimension]) -> list[Dimension]:
    names = [d.name for d in dimensions]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"the dimension name(s) {', '.join(repeated)} appear more than once")
    return dimensions


Dimensions = Annotated[
    list[Dimension], Field(max_length=MAX_DIMENSIONS), AfterValidator(_unique_names)
]


class DimensionFilter(Shape):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    value: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None


class Metric(Shape):
    namespace: Namespace | None = None
    metric_name: MetricName | None = None
    dimensions: Dimensions | None = None


class MetricStat(Shape):
    metric: Metric
    period: Annotated[int, Field(ge=1)]
    stat: Annotated[str, StringConstraints(min_length=1)]
    unit: StandardUnit | None = None


class MetricDataQuery(Shape):
    id: Annotated[
        str, StringConstraints(min_length=1, max_length=255, pattern=r"^[a-z][a-zA-Z0-9_]*$")
    ]
    metric_stat: MetricStat | None = None
    expression: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None
    label: str | None = None
    return_data: bool | None = None
    period: Annotated[int, Field(ge=1)] | None = None
    account_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None


# --- GetMetricStatistics ----------------------------------------------------------------------


class GetMetricStatisticsInput(Shape):
    namespace: Namespace
    metric_name: MetricName
    dimensions: Dimensions | None = None
    start_time: datetime
    end_time: datetime
    period: Annotated[int, Field(ge=1)]
    statistics: Annotated[list[Statistic], Field(min_length=1, max_length=5)] | None = None
    extended_statistics: (
        Annotated[list[ExtendedStatistic], Field(min_length=1, max_length=10)] | None
    ) = None
    unit: StandardUnit | None = None


class Datapoint(Shape):
    timestamp: datetime
    sample_count: float | None = None
    average: float | None = None
    sum: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    unit: StandardUnit | None = None
    extended_statistics: dict[str, float] | None = None


class GetMetricStatisticsOutput(Shape):
    label: str
    datapoints: list[Datapoint]


# --- GetMetricData ----------------------------------------------------------------------------


class LabelOptions(Shape):
    timezone: str | None = None


class GetMetricDataInput(Shape):
    metric_data_queries: Annotated[list[MetricDataQuery], Field(min_length=1, max_length=500)]
    start_time: datetime
    end_time: datetime
    next_token: NextToken | None = None
    scan_by: ScanBy = ScanBy.TIMESTAMP_DESCENDING
    max_datapoints: Annotated[int, Field(ge=1)] | None = None
    label_options: LabelOptions | None = None


class MessageData(Shape):
    code: str | None = None
    value: str | None = None


class MetricDataResult(Shape):
    id: str
    label: str
    timestamps: list[datetime]
    values: list[float]
    status_code: StatusCode
    messages: list[MessageData] | None = None


class GetMetricDataOutput(Shape):
    metric_data_results: list[MetricDataResult]
    next_token: str | None = None
    messages: list[MessageData] = Field(default_factory=list)


# --- PutMetricData ----------------------------------------------------------------------------


class StatisticSet(Shape):
    sample_count: float
    sum: float
    minimum: float
    maximum: float


class MetricDatum(Shape):
    metric_name: MetricName
    dimensions: Dimensions | None = None
    timestamp: datetime | None = None
    value: float | None = None
    statistic_values: StatisticSet | None = None
    values: Annotated[list[float], Field(max_length=150)] | None = None
    counts: Annotated[list[float], Field(max_length=150)] | None = None
    unit: StandardUnit | None = None
    storage_resolution: Annotated[int, Field(ge=1)] | None = None


class EntityMetricDatum(Shape):
    """PutMetricData's ``EntityMetricData``: datapoints about an entity (which is kept as is
    in the request and not recorded: the datapoints count as ordinary metric data)."""

    entity: dict[str, Any] | None = None
    metric_data: list[MetricDatum] | None = None


class PutMetricDataInput(Shape):
    namespace: Namespace
    metric_data: Annotated[list[MetricDatum], Field(max_length=1000)] | None = None
    entity_metric_data: list[EntityMetricDatum] | None = None
    strict_entity_validation: bool | None = None


# --- ListMetrics ------------------------------------------------------------------------------


class ListMetricsInput(Shape):
    namespace: Namespace | None = None
    metric_name: MetricName | None = None
    dimensions: Annotated[list[DimensionFilter], Field(max_length=10)] | None = None
    next_token: NextToken | None = None
    recently_active: Literal["PT3H"] | None = None
    include_linked_accounts: bool | None = None
    owning_account: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None


class ListMetricsOutput(Shape):
    metrics: list[Metric]
    next_token: str | None = None
