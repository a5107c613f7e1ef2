"""The metrics store: CloudWatch-style statistics over periods, and its Prometheus view."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shipway.domain.errors import ValidationError
from shipway.monitor.metrics import SAGEMAKER, Datapoint, MetricsStore, Series

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a whole minute
ORDERS = {"EndpointName": "orders", "VariantName": "blue"}


def query(
    store: MetricsStore,
    statistic: str,
    *,
    period: int = 60,
    start: float = T0,
    end: float = T0 + 600,
) -> list[Datapoint]:
    """ModelLatency of the blue variant of ``orders``."""
    return store.query(
        "ModelLatency", ORDERS, start=start, end=end, period=period, statistic=statistic
    )


def prometheus_text(store: MetricsStore) -> str:
    registry = CollectorRegistry()
    registry.register(store.collector())
    return generate_latest(registry).decode()


@pytest.fixture
def two_minutes() -> MetricsStore:
    """Minute 0 holds 10, 20, 30, 40 (at several seconds); minute 2 holds 5; minute 1 nothing."""
    store = MetricsStore()
    for offset, value in [(0, 10.0), (1.5, 20.0), (59.9, 30.0), (30, 40.0), (125, 5.0)]:
        store.put("ModelLatency", ORDERS, value, T0 + offset, unit="Microseconds")
    return store


@pytest.mark.parametrize(
    ("statistic", "first", "second"),
    [
        ("SampleCount", 4.0, 1.0),
        ("Sum", 100.0, 5.0),
        ("Average", 25.0, 5.0),
        ("Minimum", 10.0, 5.0),
        ("Maximum", 40.0, 5.0),
    ],
)
def test_statistics_are_exact_per_period(
    two_minutes: MetricsStore, statistic: str, first: float, second: float
) -> None:
    points = query(two_minutes, statistic)

    assert points == [
        Datapoint(timestamp=T0, value=first, sample_count=4),
        Datapoint(timestamp=T0 + 120, value=second, sample_count=1),
    ]


def test_periods_without_data_have_no_datapoint(two_minutes: MetricsStore) -> None:
    assert [p.timestamp for p in query(two_minutes, "Sum")] == [T0, T0 + 120]
    assert query(two_minutes, "Sum", start=T0 + 60, end=T0 + 120) == []


def test_periods_start_at_start_time(two_minutes: MetricsStore) -> None:
    points = query(two_minutes, "SampleCount", period=30, start=T0 + 1)

    # [T0+1, T0+31) holds 1.5 and 30; [T0+31, T0+61) holds 59.9; [T0+121, ...) holds 125.
    assert [(p.timestamp, p.value) for p in points] == [
        (T0 + 1, 2.0),
        (T0 + 31, 1.0),
        (T0 + 121, 1.0),
    ]


def test_one_period_over_everything(two_minutes: MetricsStore) -> None:
    (point,) = query(two_minutes, "Average", period=600)

    assert point.value == pytest.approx(21.0)
    assert point.sample_count == 5


def test_end_is_exclusive(two_minutes: MetricsStore) -> None:
    points = query(two_minutes, "SampleCount", end=T0 + 59)

    assert [p.value for p in points] == [3.0]  # the datapoint at 59.9 falls in second 59


def test_count_adds_equal_datapoints_at_once() -> None:
    store = MetricsStore()
    store.put("ModelLatency", ORDERS, 2.0, T0, count=5)
    store.put("ModelLatency", ORDERS, 7.0, T0)

    assert [p.value for p in query(store, "SampleCount")] == [6.0]
    assert [p.value for p in query(store, "Sum")] == [17.0]
    assert [p.value for p in query(store, "p50")] == [pytest.approx(2.0)]


@pytest.mark.parametrize(
    ("statistic", "percentile"), [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]
)
def test_percentiles_are_within_five_percent(statistic: str, percentile: float) -> None:
    rng = np.random.default_rng(2026)
    values = rng.lognormal(mean=8.0, sigma=0.6, size=20_000)
    store = MetricsStore()
    for i, value in enumerate(values):
        store.put("ModelLatency", ORDERS, float(value), T0 + (i % 300))

    (point,) = query(store, statistic, period=300)

    assert point.value == pytest.approx(np.percentile(values, percentile), rel=0.05)
    assert point.sample_count == 20_000


def test_percentiles_of_one_to_a_thousand() -> None:
    store = MetricsStore()
    for value in range(1, 1001):
        store.put("ModelLatency", ORDERS, float(value), T0 + value % 60)

    (p50,) = query(store, "p50")
    (p99,) = query(store, "p99")

    assert p50.value == pytest.approx(500, rel=0.05)
    assert p99.value == pytest.approx(990, rel=0.05)


def test_a_percentile_stays_within_the_observed_range() -> None:
    store = MetricsStore()
    for _ in range(10):
        store.put("ModelLatency", ORDERS, 123.0, T0)

    assert [p.value for p in query(store, "p99")] == [123.0]
    assert [p.value for p in query(store, "p50")] == [123.0]


def test_zeros_count_in_percentiles() -> None:
    store = MetricsStore()
    for value in [0.0, 0.0, 0.0, 100.0]:
        store.put("ModelLatency", ORDERS, value, T0)

    assert [p.value for p in query(store, "p50")] == [0.0]
    assert [p.value for p in query(store, "Maximum")] == [100.0]


@pytest.mark.parametrize("statistic", ["Median", "avg", "p100", "p", "P50", "p50.", "sum"])
def test_an_unknown_statistic_is_a_validation_error(
    two_minutes: MetricsStore, statistic: str
) -> None:
    with pytest.raises(ValidationError, match=f"Statistic '{statistic}'"):
        query(two_minutes, statistic)


def test_an_unknown_statistic_is_refused_even_without_data() -> None:
    with pytest.raises(ValidationError):
        query(MetricsStore(), "Median")


def test_a_period_below_one_second_is_a_validation_error(two_minutes: MetricsStore) -> None:
    with pytest.raises(ValidationError, match="Period"):
        query(two_minutes, "Sum", period=0)


def test_an_end_not_after_the_start_is_a_validation_error(two_minutes: MetricsStore) -> None:
    with pytest.raises(ValidationError, match="EndTime"):
        query(two_minutes, "Sum", start=T0, end=T0)


def test_dimensions_must_match_exactly(two_minutes: MetricsStore) -> None:
    points = two_minutes.query(
        "ModelLatency", {"EndpointName": "orders"}, start=T0, end=T0 + 600, period=60,
        statistic="Sum",
    )  # fmt: skip

    assert points == []


def test_namespaces_and_names_keep_series_apart() -> None:
    store = MetricsStore()
    store.put("ModelLatency", ORDERS, 1.0, T0)
    store.put("ModelLatency", ORDERS, 100.0, T0, namespace="/aws/sagemaker/Endpoints")
    store.put("OverheadLatency", ORDERS, 1000.0, T0)

    assert [p.value for p in query(store, "Sum")] == [1.0]
    other = store.query(
        "ModelLatency", ORDERS, start=T0, end=T0 + 60, period=60, statistic="Sum",
        namespace="/aws/sagemaker/Endpoints",
    )  # fmt: skip
    assert [p.value for p in other] == [100.0]


def test_dimension_order_does_not_matter_for_a_mapping() -> None:
    store = MetricsStore()
    store.put("ModelLatency", {"VariantName": "blue", "EndpointName": "orders"}, 3.0, T0)

    assert [p.value for p in query(store, "Sum")] == [3.0]


def test_dimension_order_does_not_matter_for_a_tuple() -> None:
    store = MetricsStore()
    store.put("ModelLatency", (("VariantName", "blue"), ("EndpointName", "orders")), 3.0, T0)

    assert [p.value for p in query(store, "Sum")] == [3.0]


def test_series_lookup_by_name_and_some_dimensions(two_minutes: MetricsStore) -> None:
    two_minutes.put("Invocations", {"EndpointName": "other", "VariantName": "x"}, 1.0, T0)

    assert two_minutes.series(name="ModelLatency") == [
        Series(SAGEMAKER, "ModelLatency", tuple(sorted(ORDERS.items())), "Microseconds")
    ]
    assert [s.name for s in two_minutes.series(EndpointName="other")] == ["Invocations"]
    assert two_minutes.series(namespace="elsewhere") == []


# -- retention --------------------------------------------------------------------------------


def test_retention_drops_old_buckets_when_new_ones_arrive() -> None:
    store = MetricsStore(retention_seconds=600)
    store.put("ModelLatency", ORDERS, 1.0, T0)
    store.put("ModelLatency", ORDERS, 2.0, T0 + 500)
    store.put("Invocations", ORDERS, 1.0, T0)  # another series, pruned just the same

    store.put("ModelLatency", ORDERS, 3.0, T0 + 700)

    kept = query(store, "Sum", period=1, start=T0 - 1, end=T0 + 1000)
    assert [(p.timestamp, p.value) for p in kept] == [(T0 + 500, 2.0), (T0 + 700, 3.0)]
    invocations = store.query(
        "Invocations", ORDERS, start=T0 - 1, end=T0 + 1000, period=1, statistic="Sum"
    )
    assert invocations == []


def test_prometheus_counters_keep_their_all_time_totals_after_pruning() -> None:
    store = MetricsStore(retention_seconds=60)
    for i in range(5):
        store.put("Invocations", ORDERS, 1.0, T0 + i * 100, unit="Count")

    text = prometheus_text(store)

    assert 'shipway_invocations_total{endpoint_name="orders",variant_name="blue"} 5.0' in text


# -- Prometheus -------------------------------------------------------------------------------


def test_prometheus_exposes_counters_with_endpoint_and_variant_labels() -> None:
    store = MetricsStore()
    for status in (200, 200, 404, 500):
        store.put("Invocations", ORDERS, 1.0, T0, unit="Count")
        store.put("Invocation4XXErrors", ORDERS, float(400 <= status < 500), T0, unit="Count")
        store.put("Invocation5XXErrors", ORDERS, float(status >= 500), T0, unit="Count")
    store.put("Invocations", {"EndpointName": "orders", "VariantName": "green"}, 1.0, T0)

    text = prometheus_text(store)

    assert "# TYPE shipway_invocations_total counter" in text
    assert 'shipway_invocations_total{endpoint_name="orders",variant_name="blue"} 4.0' in text
    assert 'shipway_invocations_total{endpoint_name="orders",variant_name="green"} 1.0' in text
    assert "# TYPE shipway_invocation_4xx_errors_total counter" in text
    assert (
        'shipway_invocation_4xx_errors_total{endpoint_name="orders",variant_name="blue"} 1.0'
        in text
    )
    assert (
        'shipway_invocation_5xx_errors_total{endpoint_name="orders",variant_name="blue"} 1.0'
        in text
    )


def test_prometheus_exposes_latencies_as_summaries_in_microseconds(
    two_minutes: MetricsStore,
) -> None:
    text = prometheus_text(two_minutes)

    assert "# TYPE shipway_model_latency_microseconds summary" in text
    labels = '{endpoint_name="orders",variant_name="blue"}'
    assert f"shipway_model_latency_microseconds_count{labels} 5.0" in text
    assert f"shipway_model_latency_microseconds_sum{labels} 105.0" in text


def test_prometheus_output_of_an_empty_store_is_empty() -> None:
    assert prometheus_text(MetricsStore()) == ""
