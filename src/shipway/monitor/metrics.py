"""The metrics store: SageMaker's endpoint metrics, queried like CloudWatch, shown to Prometheus.

Each series is a metric name plus dimensions (``EndpointName``, ``VariantName``...) in a namespace
(``AWS/SageMaker``). Datapoints fold into one-second buckets holding count, sum, minimum, maximum
and a log-scale histogram (about 2 % relative error), so any CloudWatch statistic — SampleCount,
Sum, Average, Minimum, Maximum, pNN — over any period is exact or within that error, at a fixed
cost per datapoint. Buckets older than ``retention_seconds`` are dropped.

Alarms, autoscaling, deployments, the dashboard and ``/metrics`` all read this one store.

When an endpoint is deleted, or a deployment removes a variant, its series are *retired*
(:meth:`MetricsStore.retire`): ``/metrics`` stops showing them, and should the name come back (an
endpoint created again) its totals start from zero. Their datapoints stay queryable until
retention drops them, as CloudWatch keeps a deleted endpoint's metrics; then the series go.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from shipway.domain.errors import ValidationError

__all__ = [
    "SAGEMAKER",
    "STATISTICS",
    "Aggregate",
    "Datapoint",
    "MetricsStore",
    "Series",
    "SeriesGroup",
]

SAGEMAKER = "AWS/SageMaker"
_GROWTH = 1.04
_LOG_GROWTH = math.log(_GROWTH)
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d+)?)$")
STATISTICS = ("SampleCount", "Sum", "Average", "Minimum", "Maximum")

Dimensions = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Series:
    namespace: str
    name: str
    dimensions: Dimensions
    unit: str = "None"


@dataclass
class _Bucket:
    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, value: float, count: int = 1) -> None:
        self.count += count
        self.total += value * count
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value
        key = _bin(value)
        self.histogram[key] = self.histogram.get(key, 0) + count

    def merge(self, other: _Bucket, histogram: bool = True) -> None:
        """Add ``other`` in; without ``histogram`` only what the non-percentile statistics
        need (much cheaper)."""
        self.count += other.count
        self.total += other.total
        if other.minimum < self.minimum:
            self.minimum = other.minimum
        if other.maximum > self.maximum:
            self.maximum = other.maximum
        if histogram:
            for key, n in other.histogram.items():
                self.histogram[key] = self.histogram.get(key, 0) + n

    def statistic(self, stat: str) -> float:
        if stat == "SampleCount":
            return float(self.count)
        if stat == "Sum":
            return self.total
        if stat == "Average":
            return self.total / self.count if self.count else 0.0
        if stat == "Minimum":
            return self.minimum
        if stat == "Maximum":
            return self.maximum
        match = _PERCENTILE.match(stat)
        if match is None:
            raise ValidationError(
                f"Statistic '{stat}' is not one of {', '.join(STATISTICS)} or pNN (p50, p99.9...)."
            )
        return self._percentile(float(match.group(1)))

    def _percentile(self, p: float) -> float:
        rank = max(1.0, math.ceil(p / 100.0 * self.count))
        seen = 0
        for key in sorted(self.histogram):
            seen += self.histogram[key]
            if seen >= rank:
                return min(max(_value(key), self.minimum), self.maximum)
        return self.maximum


def _check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS and not _PERCENTILE.match(statistic):
        raise ValidationError(
            f"Statistic '{statistic}' is not one of {', '.join(STATISTICS)} or pNN."
        )


def _bin(value: float) -> int:
    if value <= 0:
        return -(10**6) if value == 0 else -(10**7)
    return math.floor(math.log(value) / _LOG_GROWTH)


def _value(key: int) -> float:
    if key <= -(10**6):
        return 0.0
    return float(_GROWTH ** (key + 0.5))


class SeriesGroup:
    """Resolved series written together: one lock and no lookups for a datapoint in each.

    This is what the router writes on every invocation.
    """

    __slots__ = ("_series", "_store")

    def __init__(self, store: MetricsStore, series: list[_SeriesData]) -> None:
        self._store = store
        self._series = series

    def put(self, timestamp: float, values: Sequence[float]) -> None:
        """One datapoint per series, in the order the group was made with; none into a series
        retired since (a request that outlived its variant)."""
        second = int(timestamp)
        store = self._store
        with store._lock:
            for data, value in zip(self._series, values, strict=True):
                if not data.retired:
                    store._add(data, second, value)


@dataclass(frozen=True)
class Datapoint:
    timestamp: float
    """Start of the period, epoch seconds."""
    value: float
    sample_count: int


@dataclass(frozen=True)
class Aggregate:
    """Several statistics of one period."""

    timestamp: float
    """Start of the period, epoch seconds."""
    sample_count: int
    values: dict[str, float]
    """Statistic name (``Sum``, ``p99``...) to value."""
    unit: str


class _SeriesData:
    __slots__ = ("buckets", "retired", "total_count", "total_sum")

    def __init__(self) -> None:
        self.buckets: dict[int, _Bucket] = {}
        self.total_count = 0
        self.total_sum = 0.0
        self.retired = False
        """Its endpoint or variant is gone: not shown to Prometheus, not written by the groups
        made before; a new group or :meth:`MetricsStore.put` brings it back from zero."""


class MetricsStore:
    def __init__(self, retention_seconds: float = 3 * 3600) -> None:
        self.retention_seconds = retention_seconds
        self._series: dict[Series, _SeriesData] = {}
        self._known: dict[tuple[str, str, Dimensions, str], _SeriesData] = {}
        self._by_metric: dict[tuple[str, str, Dimensions], list[tuple[str, _SeriesData]]] = {}
        """(namespace, name, dimensions) to each unit's series: what queries look up."""
        self._lock = threading.Lock()
        self._last_prune = 0
        self.revision = 0
        """Counts :meth:`put` and :meth:`put_statistics` calls, which may date data in the past
        (PutMetricData); the router's :class:`SeriesGroup` writes at the present and does not
        count. What has not changed need not be evaluated again."""

    def put(
        self,
        name: str,
        dimensions: Mapping[str, str] | Dimensions,
        value: float,
        timestamp: float,
        *,
        unit: str = "None",
        namespace: str = SAGEMAKER,
        count: int = 1,
    ) -> None:
        """Add a datapoint (``count`` equal datapoints) at ``timestamp`` (epoch seconds)."""
        # on every invocation's path: a series seen before costs one dictionary lookup
        key = (namespace, name, dimensions, unit) if isinstance(dimensions, tuple) else None
        second = int(timestamp)
        with self._lock:
            self.revision += 1
            data = self._known.get(key) if key is not None else None
            if data is None or data.retired:
                data = self._data(name, dimensions, unit, namespace)
                if key is not None:
                    self._known[key] = data
            self._add(data, second, value, count)

    def _add(self, data: _SeriesData, second: int, value: float, count: int = 1) -> None:
        bucket = data.buckets.get(second)
        if bucket is None:
            bucket = data.buckets[second] = _Bucket()
            if second - self._last_prune >= 60:
                self._prune(second)
        bucket.add(value, count)
        data.total_count += count
        data.total_sum += value * count

    def group(
        self,
        metrics: Sequence[tuple[str, str]],
        dimensions: Mapping[str, str],
        namespace: str = SAGEMAKER,
    ) -> SeriesGroup:
        """Series of several metrics (name, unit) with the same dimensions, written together."""
        with self._lock:
            series = [self._data(name, dimensions, unit, namespace) for name, unit in metrics]
        return SeriesGroup(self, series)

    def _data(
        self, name: str, dimensions: Mapping[str, str] | Dimensions, unit: str, namespace: str
    ) -> _SeriesData:
        dims = tuple(sorted(dimensions if isinstance(dimensions, tuple) else dimensions.items()))
        series = Series(namespace, name, dims, unit)
        data = self._series.get(series)
        if data is None:
            data = self._series[series] = _SeriesData()
            self._by_metric.setdefault((namespace, name, dims), []).append((unit, data))
        data.retired = False  # written again: its totals start from zero
        return data

    def _prune(self, now: int) -> None:
        self._last_prune = now
        horizon = now - self.retention_seconds
        for data in self._series.values():
            for second in [s for s in data.buckets if s < horizon]:
                del data.buckets[second]
        gone = [s for s, d in self._series.items() if d.retired and not d.buckets]
        for series in gone:
            data = self._series.pop(series)
            key = (series.namespace, series.name, series.dimensions)
            units = [(u, d) for u, d in self._by_metric.get(key, ()) if d is not data]
            if units:
                self._by_metric[key] = units
            else:
                self._by_metric.pop(key, None)
        if gone:
            self._known = {k: d for k, d in self._known.items() if not d.retired}

    def retire(self, dimensions: Mapping[str, str], namespace: str = SAGEMAKER) -> int:
        """Retire every series whose dimensions include ``dimensions`` (``{"EndpointName": n}``:
        all of an endpoint's; with ``VariantName``: one variant's), as its endpoint or variant is
        gone (module doc); how many were retired."""
        wanted = set(dimensions.items())
        retired = 0
        with self._lock:
            for series, data in self._series.items():
                if series.namespace != namespace or data.retired:
                    continue
                if wanted <= set(series.dimensions):
                    data.retired = True
                    data.total_count = 0
                    data.total_sum = 0.0
                    retired += 1
            if retired:
                self._prune(self._last_prune)  # those with no datapoints left go now
        return retired

    def series(
        self, namespace: str | None = None, name: str | None = None, **dimensions: str
    ) -> list[Series]:
        """The series matching a namespace, a metric name and some dimensions."""
        with self._lock:
            found = list(self._series)
        wanted = set(dimensions.items())
        return [
            s
            for s in found
            if (namespace is None or s.namespace == namespace)
            and (name is None or s.name == name)
            and wanted <= set(s.dimensions)
        ]

    def put_statistics(
        self,
        name: str,
        dimensions: Mapping[str, str] | Dimensions,
        timestamp: float,
        *,
        sample_count: int,
        total: float,
        minimum: float,
        maximum: float,
        unit: str = "None",
        namespace: str = SAGEMAKER,
    ) -> None:
        """Add a statistic set (CloudWatch's ``StatisticValues``): ``sample_count`` datapoints
        of that sum, minimum and maximum, whose values are otherwise unknown.

        Percentiles over them are estimates: the histogram counts one datapoint at the minimum,
        one at the maximum and the rest at the mean.
        """
        if sample_count < 1:
            raise ValidationError("A statistic set needs a SampleCount of at least 1.")
        second = int(timestamp)
        extra = _Bucket(count=sample_count, total=total, minimum=minimum, maximum=maximum)
        extra.histogram[_bin(minimum)] = 1
        if sample_count > 1:
            key = _bin(maximum)
            extra.histogram[key] = extra.histogram.get(key, 0) + 1
        if sample_count > 2:
            key = _bin(total / sample_count)
            extra.histogram[key] = extra.histogram.get(key, 0) + sample_count - 2
        with self._lock:
            self.revision += 1
            data = self._data(name, dimensions, unit, namespace)
            bucket = data.buckets.get(second)
            if bucket is None:
                bucket = data.buckets[second] = _Bucket()
                if second - self._last_prune >= 60:
                    self._prune(second)
            bucket.merge(extra)
            data.total_count += sample_count
            data.total_sum += total

    def query(
        self,
        name: str,
        dimensions: Mapping[str, str],
        *,
        start: float,
        end: float,
        period: int,
        statistic: str,
        namespace: str = SAGEMAKER,
        unit: str | None = None,
    ) -> list[Datapoint]:
        """Datapoints of one statistic per ``period`` seconds in [start, end), oldest first.

        Dimensions must match the series' exactly (as CloudWatch's GetMetricStatistics); with
        ``unit``, only datapoints recorded with that unit count. Periods with no data have no
        datapoint.
        """
        return self.query_combined(
            name,
            [dimensions],
            start=start,
            end=end,
            period=period,
            statistic=statistic,
            namespace=namespace,
            unit=unit,
        )

    def query_combined(
        self,
        name: str,
        dimension_sets: Sequence[Mapping[str, str]],
        *,
        start: float,
        end: float,
        period: int,
        statistic: str,
        namespace: str = SAGEMAKER,
        unit: str | None = None,
    ) -> list[Datapoint]:
        """As :meth:`query`, over the datapoints of several series together (an endpoint's
        variants): each statistic is that of all their samples, as if one series held them —
        sums and counts add, minimum and maximum are the extremes, averages and percentiles are
        those of the combined samples (percentiles within the histogram's 2 %)."""
        _check_statistic(statistic)
        periods, _ = self._periods(
            name, dimension_sets, start, end, period, namespace, unit, statistic not in STATISTICS
        )
        return [
            Datapoint(float(slot), periods[slot].statistic(statistic), periods[slot].count)
            for slot in sorted(periods)
        ]

    def aggregate(
        self,
        name: str,
        dimensions: Mapping[str, str],
        *,
        start: float,
        end: float,
        period: int,
        statistics: Sequence[str],
        namespace: str = SAGEMAKER,
        unit: str | None = None,
    ) -> list[Aggregate]:
        """Several statistics per ``period`` in [start, end), oldest first, in one pass (what
        GetMetricStatistics answers); as :meth:`query` otherwise."""
        for statistic in statistics:
            _check_statistic(statistic)
        percentiles = any(s not in STATISTICS for s in statistics)
        periods, units = self._periods(
            name, [dimensions], start, end, period, namespace, unit, percentiles
        )
        return [
            Aggregate(
                timestamp=float(slot),
                sample_count=periods[slot].count,
                values={s: periods[slot].statistic(s) for s in statistics},
                unit=units.get(slot, "None"),
            )
            for slot in sorted(periods)
        ]

    def _periods(
        self,
        name: str,
        dimension_sets: Sequence[Mapping[str, str]],
        start: float,
        end: float,
        period: int,
        namespace: str,
        unit: str | None,
        histogram: bool,
    ) -> tuple[dict[int, _Bucket], dict[int, str]]:
        """The buckets of [start, end) of the series with these dimensions merged per period
        (keyed by the period's start), and the unit each period's data was recorded with; their
        histograms only with ``histogram`` (for percentiles)."""
        if period < 1:
            raise ValidationError("Period must be at least 1 second.")
        if end <= start:
            raise ValidationError("EndTime must be after StartTime.")
        keys = {(namespace, name, tuple(sorted(d.items()))) for d in dimension_sets}
        periods: dict[int, _Bucket] = {}
        units: dict[int, str] = {}
        first, last = math.ceil(start), math.ceil(end)
        with self._lock:
            matching = [found for key in keys for found in self._by_metric.get(key, ())]
            for series_unit, data in matching:
                if unit is not None and series_unit != unit:
                    continue
                buckets = data.buckets
                if last - first < len(buckets):  # a short window over a long history
                    found = [(s, buckets[s]) for s in range(first, last) if s in buckets]
                else:
                    found = [(s, b) for s, b in buckets.items() if start <= s < end]
                for second, bucket in found:
                    slot = int(start + ((second - start) // period) * period)
                    merged = periods.get(slot)
                    if merged is None:
                        merged = periods[slot] = _Bucket()
                    merged.merge(bucket, histogram)
                    units.setdefault(slot, series_unit)
        return periods, units

    def totals(self) -> Iterator[tuple[Series, int, float]]:
        """Every series not retired with its all-time datapoint count and sum (for
        Prometheus)."""
        with self._lock:
            items = [
                (s, d.total_count, d.total_sum) for s, d in self._series.items() if not d.retired
            ]
        yield from items

    def collector(self) -> Collector:
        return _PrometheusCollector(self)


_SNAKE = re.compile(r"(?<!^)(?=[A-Z][a-z])|(?<=[a-z0-9])(?=[A-Z])")


def _prometheus_name(name: str) -> str:
    """``Invocation4XXErrors`` → ``shipway_invocation_4xx_errors``."""
    name = re.sub(r"(\d)XX", lambda m: f"_{m.group(1)}xx", name)
    return "shipway_" + _SNAKE.sub("_", name).lower().replace("__", "_")


_COUNTERS = {
    "RecordsProcessed",
    "BytesProcessed",
    "ObjectsCompleted",
    "ObjectsFailed",
    "Invocations",
    "Invocation4XXErrors",
    "Invocation5XXErrors",
    "InvocationModelErrors",
    "InvocationsPerInstance",
}


class _PrometheusCollector(Collector):
    def __init__(self, store: MetricsStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Any] = {}
        for series, count, total in self._store.totals():
            labels = [_label(k) for k, _ in series.dimensions]
            values = [v for _, v in series.dimensions]
            base = _prometheus_name(series.name)
            if series.name in _COUNTERS:
                family = families.get(base)
                if family is None:
                    family = families[base] = CounterMetricFamily(
                        base, f"SageMaker metric {series.name}", labels=labels
                    )
                family.add_metric(values, total)
            else:
                key = base + ("_microseconds" if series.unit == "Microseconds" else "")
                family = families.get(key)
                if family is None:
                    family = families[key] = SummaryMetricFamily(
                        key, f"SageMaker metric {series.name} ({series.unit})", labels=labels
                    )
                family.add_metric(values, count_value=count, sum_value=total)
        yield from families.values()


def _label(dimension: str) -> str:
    return _SNAKE.sub("_", dimension).lower()
