"""Metric operations over the metrics store, as CloudWatch has them: GetMetricStatistics,
GetMetricData, PutMetricData and ListMetrics.

The router records SageMaker's endpoint metrics (``AWS/SageMaker``); PutMetricData adds a
caller's own (any namespace but ``AWS/...``). Both are queried, listed and alarmed on alike.
Data older than the store's retention (3 hours by default) is gone.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shipway.domain.clock import Clock
from shipway.domain.errors import (
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
    MissingParameter,
    ValidationError,
)
from shipway.domain.metric import (
    PERCENTILE_PATTERN,
    Datapoint,
    Dimension,
    GetMetricDataInput,
    GetMetricDataOutput,
    GetMetricStatisticsInput,
    GetMetricStatisticsOutput,
    ListMetricsInput,
    ListMetricsOutput,
    Metric,
    MetricDataQuery,
    MetricDataResult,
    MetricDatum,
    PutMetricDataInput,
    ScanBy,
    StandardUnit,
    Statistic,
    StatusCode,
)
from shipway.monitor.metrics import MetricsStore

__all__ = ["MetricService"]

MAX_STATISTICS_DATAPOINTS = 1440
DEFAULT_MAX_DATAPOINTS = 100_800
MAX_METRIC_DATA = 1000
LIST_PAGE = 500
HIGH_RESOLUTION_PERIODS = (1, 5, 10, 20, 30)
MIN_MAGNITUDE = 8.515920e-109
MAX_MAGNITUDE = 1.174271e108
MAX_AGE = timedelta(days=14)
MAX_AHEAD = timedelta(hours=2)
RESERVED_NAMESPACE = "AWS/"

_PERCENTILE = re.compile(PERCENTILE_PATTERN)


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _check_period(period: int, where: str) -> None:
    if period in HIGH_RESOLUTION_PERIODS or period % 60 == 0:
        return
    raise InvalidParameterValue(
        f"The parameter {where} must be 1, 5, 10, 20, 30 or a multiple of 60 (got {period})."
    )


def _aligned_start(start: float, period: int) -> float:
    """CloudWatch rounds a query's start down to the period (to the minute for periods of a
    minute or more), so datapoints sit on even times."""
    step = period if period < 60 else 60
    return math.floor(start / step) * step


@dataclass(frozen=True)
class _Point:
    result: int
    timestamp: float
    value: float


class MetricService:
    def __init__(self, metrics: MetricsStore, clock: Clock) -> None:
        self._metrics = metrics
        self._clock = clock

    # --- GetMetricStatistics --------------------------------------------------------------------

    def get_metric_statistics(self, request: GetMetricStatisticsInput) -> GetMetricStatisticsOutput:
        statistics = [s.value for s in request.statistics or []]
        percentiles = list(request.extended_statistics or [])
        if not statistics and not percentiles:
            raise MissingParameter(
                "At least one of the parameters Statistics and ExtendedStatistics must be "
                "specified."
            )
        start, end = self._range(request.start_time, request.end_time)
        _check_period(request.period, "Period")
        start = _aligned_start(start, request.period)
        requested = math.ceil((end - start) / request.period)
        if requested > MAX_STATISTICS_DATAPOINTS:
            raise InvalidParameterCombination(
                f"You have requested up to {requested:,} datapoints, which exceeds the limit of "
                f"{MAX_STATISTICS_DATAPOINTS:,}. You may reduce the datapoints requested by "
                "increasing Period, or decreasing the time range."
            )
        aggregates = self._metrics.aggregate(
            request.metric_name,
            {d.name: d.value for d in request.dimensions or []},
            start=start,
            end=end,
            period=request.period,
            statistics=[*statistics, *percentiles],
            namespace=request.namespace,
            unit=None if request.unit is None else request.unit.value,
        )
        datapoints = []
        for aggregate in aggregates:
            values = aggregate.values
            datapoints.append(
                Datapoint(
                    timestamp=_moment(aggregate.timestamp),
                    sample_count=values.get(Statistic.SAMPLE_COUNT.value),
                    average=values.get(Statistic.AVERAGE.value),
                    sum=values.get(Statistic.SUM.value),
                    minimum=values.get(Statistic.MINIMUM.value),
                    maximum=values.get(Statistic.MAXIMUM.value),
                    unit=_unit(aggregate.unit),
                    extended_statistics={p: values[p] for p in percentiles} or None,
                )
            )
        return GetMetricStatisticsOutput(label=request.metric_name, datapoints=datapoints)

    # --- GetMetricData ----------------------------------------------------------------------------

    def get_metric_data(self, request: GetMetricDataInput) -> GetMetricDataOutput:
        start, end = self._range(request.start_time, request.end_time)
        seen: set[str] = set()
        for index, query in enumerate(request.metric_data_queries, start=1):
            self._check_query(query, index)
            if query.id in seen:
                raise ValidationError(
                    f"The Id {query.id} is used by more than one MetricDataQuery; Ids must be "
                    "unique."
                )
            seen.add(query.id)
        returned = [q for q in request.metric_data_queries if q.return_data is not False]
        if not returned:
            raise ValidationError("At least one MetricDataQuery must have ReturnData true.")
        descending = request.scan_by is ScanBy.TIMESTAMP_DESCENDING
        series: list[list[tuple[float, float]]] = []
        for query in returned:
            stat = query.metric_stat
            assert stat is not None  # checked above, with its metric's name and namespace
            name, namespace = stat.metric.metric_name or "", stat.metric.namespace or ""
            points = self._metrics.query(
                name,
                {d.name: d.value for d in stat.metric.dimensions or []},
                start=_aligned_start(start, stat.period),
                end=end,
                period=stat.period,
                statistic=stat.stat,
                namespace=namespace,
                unit=None if stat.unit is None else stat.unit.value,
            )
            pairs = [(p.timestamp, p.value) for p in points]
            series.append(pairs[::-1] if descending else pairs)
        skip = _offset(request.next_token) if request.next_token else 0
        budget = request.max_datapoints or DEFAULT_MAX_DATAPOINTS
        total = sum(len(s) for s in series)
        chosen = list(_flatten(series))[skip : skip + budget]
        taken: list[list[tuple[float, float]]] = [[] for _ in series]
        for point in chosen:
            taken[point.result].append((point.timestamp, point.value))
        last = skip + len(chosen)
        results = []
        position = 0
        for index, query in enumerate(returned):
            assert query.metric_stat is not None
            position += len(series[index])
            complete = position <= last
            results.append(
                MetricDataResult(
                    id=query.id,
                    label=query.label or query.metric_stat.metric.metric_name or query.id,
                    timestamps=[_moment(t) for t, _ in taken[index]],
                    values=[v for _, v in taken[index]],
                    status_code=StatusCode.COMPLETE if complete else StatusCode.PARTIAL_DATA,
                )
            )
        token = _encode_offset(last) if last < total else None
        return GetMetricDataOutput(metric_data_results=results, next_token=token)

    @staticmethod
    def _check_query(query: MetricDataQuery, index: int) -> None:
        where = f"MetricDataQueries.member.{index}"
        if query.expression is not None:
            raise ValidationError(
                f"{where} (Id {query.id}) has an Expression: metric math expressions are not "
                "supported; query a metric with MetricStat."
            )
        stat = query.metric_stat
        if stat is None:
            raise MissingParameter(f"The parameter {where}.MetricStat is required.")
        if not stat.metric.namespace or not stat.metric.metric_name:
            raise MissingParameter(
                f"The parameters {where}.MetricStat.Metric.Namespace and MetricName are required."
            )
        if stat.stat not in {s.value for s in Statistic} and not _PERCENTILE.match(stat.stat):
            raise InvalidParameterValue(
                f"The value {stat.stat} for parameter {where}.MetricStat.Stat is invalid: use "
                "SampleCount, Average, Sum, Minimum, Maximum or a percentile such as p99."
            )
        _check_period(stat.period, f"{where}.MetricStat.Period")

    # --- PutMetricData ----------------------------------------------------------------------------

    def put_metric_data(self, request: PutMetricDataInput) -> None:
        """Record datapoints, all or none: every datum is checked before any is written."""
        if request.namespace.startswith(RESERVED_NAMESPACE):
            raise InvalidParameterValue(
                f"The value {request.namespace} for parameter Namespace is invalid: namespaces "
                f"starting with '{RESERVED_NAMESPACE}' are reserved for AWS."
            )
        data = list(request.metric_data or [])
        for entity in request.entity_metric_data or []:
            data.extend(entity.metric_data or [])
        if not data:
            raise MissingParameter("The parameter MetricData is required.")
        if len(data) > MAX_METRIC_DATA:
            raise InvalidParameterValue(
                f"The collection MetricData must not have more than {MAX_METRIC_DATA} members "
                f"(got {len(data)})."
            )
        now = self._clock.now()
        writes = [self._check_datum(d, i, now) for i, d in enumerate(data, start=1)]
        for datum, timestamp in writes:
            self._write(request.namespace, datum, timestamp)

    def _check_datum(
        self, datum: MetricDatum, index: int, now: datetime
    ) -> tuple[MetricDatum, float]:
        where = f"MetricData.member.{index}"
        given = [
            name
            for name, value in (
                ("Value", datum.value),
                ("Values", datum.values),
                ("StatisticValues", datum.statistic_values),
            )
            if value is not None
        ]
        if not given:
            raise MissingParameter(
                f"One of the parameters {where}.Value, {where}.Values and "
                f"{where}.StatisticValues must be specified."
            )
        if len(given) > 1:
            raise InvalidParameterCombination(
                f"The parameters {' and '.join(f'{where}.{g}' for g in given)} are mutually "
                "exclusive and you have specified more than one."
            )
        if datum.counts is not None and datum.values is None:
            raise InvalidParameterCombination(
                f"The parameter {where}.Counts can only be given with {where}.Values."
            )
        if (
            datum.values is not None
            and datum.counts is not None
            and (len(datum.counts) != len(datum.values))
        ):
            raise InvalidParameterValue(
                f"The parameters {where}.Values and {where}.Counts must be of the same size."
            )
        for position, value in enumerate(datum.values or [], start=1):
            _check_value(value, f"{where}.Values.member.{position}")
        for position, count in enumerate(datum.counts or [], start=1):
            if not (math.isfinite(count) and count >= 0 and count.is_integer()):
                raise InvalidParameterValue(
                    f"The value {count} for parameter {where}.Counts.member.{position} is "
                    "invalid: counts are whole numbers of at least 0."
                )
        if datum.value is not None:
            _check_value(datum.value, f"{where}.Value")
        if datum.statistic_values is not None:
            stats = datum.statistic_values
            for name in ("sum", "minimum", "maximum"):
                _check_value(getattr(stats, name), f"{where}.StatisticValues.{name.title()}")
            if not (stats.sample_count >= 1 and stats.sample_count.is_integer()):
                raise InvalidParameterValue(
                    f"The value {stats.sample_count} for parameter "
                    f"{where}.StatisticValues.SampleCount is invalid: it must be a whole "
                    "number of at least 1."
                )
            if stats.minimum > stats.maximum:
                raise InvalidParameterValue(
                    f"The parameter {where}.StatisticValues.Minimum must not be greater than "
                    "its Maximum."
                )
        if datum.storage_resolution is not None and datum.storage_resolution not in (1, 60):
            raise InvalidParameterValue(
                f"The value {datum.storage_resolution} for parameter {where}.StorageResolution "
                "is invalid: it must be 1 or 60 (seconds; 1 is high resolution)."
            )
        moment = datum.timestamp or now
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if moment < now - MAX_AGE or moment > now + MAX_AHEAD:
            raise InvalidParameterValue(
                f"The parameter {where}.Timestamp must specify a time no more than two weeks "
                "in the past and no more than two hours in the future."
            )
        return datum, moment.timestamp()

    def _write(self, namespace: str, datum: MetricDatum, timestamp: float) -> None:
        dimensions = {d.name: d.value for d in datum.dimensions or []}
        unit = (datum.unit or StandardUnit.NONE).value
        name = datum.metric_name
        if datum.value is not None:
            self._metrics.put(
                name, dimensions, datum.value, timestamp, unit=unit, namespace=namespace
            )
        elif datum.values is not None:
            counts = datum.counts or [1.0] * len(datum.values)
            for value, count in zip(datum.values, counts, strict=True):
                if count:
                    self._metrics.put(
                        name,
                        dimensions,
                        value,
                        timestamp,
                        unit=unit,
                        namespace=namespace,
                        count=int(count),
                    )
        elif datum.statistic_values is not None:
            stats = datum.statistic_values
            self._metrics.put_statistics(
                name,
                dimensions,
                timestamp,
                sample_count=int(stats.sample_count),
                total=stats.sum,
                minimum=stats.minimum,
                maximum=stats.maximum,
                unit=unit,
                namespace=namespace,
            )

    # --- ListMetrics ------------------------------------------------------------------------------

    def list_metrics(self, request: ListMetricsInput) -> ListMetricsOutput:
        found: dict[tuple[str, str, tuple[tuple[str, str], ...]], None] = {}
        for series in self._metrics.series(request.namespace, request.metric_name):
            names = dict(series.dimensions)
            if all(
                f.name in names and (f.value is None or names[f.name] == f.value)
                for f in request.dimensions or []
            ):
                found[(series.namespace, series.name, series.dimensions)] = None
        ordered = sorted(found)
        skip = _offset(request.next_token) if request.next_token else 0
        page = ordered[skip : skip + LIST_PAGE]
        metrics = [
            Metric(
                namespace=namespace,
                metric_name=name,
                dimensions=[Dimension(name=k, value=v) for k, v in dims],
            )
            for namespace, name, dims in page
        ]
        more = skip + LIST_PAGE < len(ordered)
        return ListMetricsOutput(
            metrics=metrics, next_token=_encode_offset(skip + LIST_PAGE) if more else None
        )

    def _range(self, start_time: datetime, end_time: datetime) -> tuple[float, float]:
        start, end = _epoch(start_time), _epoch(end_time)
        if start >= end:
            raise InvalidParameterValue(
                "The parameter StartTime must be less than the parameter EndTime."
            )
        return start, end


def _check_value(value: float, where: str) -> None:
    magnitude = abs(value)
    if not math.isfinite(value) or (
        magnitude != 0 and not MIN_MAGNITUDE <= magnitude <= MAX_MAGNITUDE
    ):
        raise InvalidParameterValue(
            f"The value {value} for parameter {where} is invalid: values must be 0 or between "
            f"{MIN_MAGNITUDE:g} and {MAX_MAGNITUDE:g} in magnitude, and neither NaN nor infinite."
        )


def _unit(name: str) -> StandardUnit:
    try:
        return StandardUnit(name)
    except ValueError:
        return StandardUnit.NONE


def _flatten(series: list[list[tuple[float, float]]]) -> Iterator[_Point]:
    for index, points in enumerate(series):
        for timestamp, value in points:
            yield _Point(index, timestamp, value)


def _encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(["offset", offset]).encode()).decode()


def _offset(token: str) -> int:
    invalid = InvalidNextToken(f"Invalid NextToken: {token[:64]}")
    try:
        kind, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise invalid from exc
    if kind != "offset" or not isinstance(offset, int) or offset < 0:
        raise invalid
    return offset
