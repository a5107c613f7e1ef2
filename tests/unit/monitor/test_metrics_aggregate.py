"""The metrics store's additions for CloudWatch: several statistics at once, statistic sets,
units, and short windows over a long history."""

from __future__ import annotations

import pytest

from shipway.domain.errors import ValidationError
from shipway.monitor.metrics import Aggregate, MetricsStore

T0 = 1_767_225_600.0
DIMS = {"EndpointName": "orders"}


def test_aggregate_gives_several_statistics_per_period_with_their_unit() -> None:
    store = MetricsStore()
    for second, value in [(0, 1.0), (5, 3.0), (65, 10.0)]:
        store.put("ModelLatency", DIMS, value, T0 + second, unit="Microseconds")
    assert store.aggregate(
        "ModelLatency",
        DIMS,
        start=T0,
        end=T0 + 120,
        period=60,
        statistics=["Sum", "Maximum", "SampleCount"],
    ) == [
        Aggregate(T0, 2, {"Sum": 4.0, "Maximum": 3.0, "SampleCount": 2.0}, "Microseconds"),
        Aggregate(T0 + 60, 1, {"Sum": 10.0, "Maximum": 10.0, "SampleCount": 1.0}, "Microseconds"),
    ]
    with pytest.raises(ValidationError, match="Statistic 'Median'"):
        store.aggregate(
            "ModelLatency", DIMS, start=T0, end=T0 + 60, period=60, statistics=["Median"]
        )


def test_units_are_filtered_when_asked() -> None:
    store = MetricsStore()
    store.put("Size", DIMS, 1.0, T0, unit="Bytes")
    store.put("Size", DIMS, 1000.0, T0, unit="Kilobytes")
    common = {"start": T0, "end": T0 + 60, "period": 60, "statistic": "Sum"}
    assert [p.value for p in store.query("Size", DIMS, **common)] == [1001.0]
    assert [p.value for p in store.query("Size", DIMS, unit="Bytes", **common)] == [1.0]
    assert store.query("Size", DIMS, unit="Seconds", **common) == []


def test_statistic_sets_count_as_their_samples() -> None:
    store = MetricsStore()
    store.put_statistics(
        "Orders", DIMS, T0 + 1, sample_count=10, total=100.0, minimum=1.0, maximum=40.0
    )
    store.put("Orders", DIMS, 5.0, T0 + 2)
    [point] = store.aggregate(
        "Orders",
        DIMS,
        start=T0,
        end=T0 + 60,
        period=60,
        statistics=["SampleCount", "Sum", "Minimum", "Maximum", "Average", "p50"],
    )
    assert point.sample_count == 11
    assert point.values["Sum"] == 105.0
    assert (point.values["Minimum"], point.values["Maximum"]) == (1.0, 40.0)
    assert point.values["Average"] == pytest.approx(105 / 11)
    # the set's unknown values count as its mean (10), one at its minimum, one at its maximum:
    # 1, 5, 10 (x8), 40 — the median is the mean, within the histogram's 2 %
    assert point.values["p50"] == pytest.approx(10.0, rel=0.03)
    with pytest.raises(ValidationError, match="SampleCount of at least 1"):
        store.put_statistics("Orders", DIMS, T0, sample_count=0, total=0, minimum=0, maximum=0)


def test_a_short_window_over_a_long_history_reads_only_its_seconds() -> None:
    store = MetricsStore()
    for second in range(600):
        store.put("Invocations", DIMS, 1.0, T0 + second)
    for start, end, period in [
        (T0 + 100, T0 + 110, 10),
        (T0 + 95.5, T0 + 120, 5),
        (T0, T0 + 600, 60),
    ]:
        points = store.query(
            "Invocations", DIMS, start=start, end=end, period=period, statistic="Sum"
        )
        expected = sum(1 for s in range(600) if start <= T0 + s < end)
        assert sum(p.value for p in points) == expected, (start, end)
