"""The metrics store across an endpoint's life: its variants' datapoints combined, its series
retired when it (or a variant) goes."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shipway.monitor.metrics import MetricsStore

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a whole minute
BLUE = {"EndpointName": "orders", "VariantName": "blue"}
GREEN = {"EndpointName": "orders", "VariantName": "green"}
OTHER = {"EndpointName": "other", "VariantName": "blue"}
METRICS = (("Invocations", "Count"), ("ModelLatency", "Microseconds"))


def prometheus_text(store: MetricsStore) -> str:
    registry = CollectorRegistry()
    registry.register(store.collector())
    return generate_latest(registry).decode()


def combined(store: MetricsStore, statistic: str, metric: str = "ModelLatency") -> float:
    """One period over both variants of ``orders``."""
    (point,) = store.query_combined(
        metric, [BLUE, GREEN], start=T0, end=T0 + 600, period=600, statistic=statistic
    )
    return point.value


@pytest.fixture
def two_variants() -> MetricsStore:
    """Blue served latencies 1..300, green 1000..1099 (microseconds), one invocation each."""
    store = MetricsStore()
    rng = np.random.default_rng(7)
    for dimensions, values in ((BLUE, range(1, 301)), (GREEN, range(1000, 1100))):
        group = store.group(METRICS, dimensions)
        for value in values:
            group.put(T0 + rng.uniform(0, 500), (1.0, float(value)))
    return store


def test_combined_statistics_are_those_of_all_the_samples(two_variants: MetricsStore) -> None:
    samples = np.array([*range(1, 301), *range(1000, 1100)], dtype=float)
    assert combined(two_variants, "Sum", "Invocations") == 400
    assert combined(two_variants, "SampleCount") == 400
    assert combined(two_variants, "Sum") == samples.sum()
    assert combined(two_variants, "Average") == pytest.approx(samples.mean())
    assert combined(two_variants, "Minimum") == 1
    assert combined(two_variants, "Maximum") == 1099
    for statistic, percentile in (("p50", 50), ("p90", 90), ("p99", 99)):
        exact = np.percentile(samples, percentile, method="inverted_cdf")
        assert combined(two_variants, statistic) == pytest.approx(exact, rel=0.05), statistic


def test_combining_one_series_is_querying_it(two_variants: MetricsStore) -> None:
    for statistic in ("Sum", "Average", "p99"):
        alone = two_variants.query(
            "ModelLatency", GREEN, start=T0, end=T0 + 600, period=60, statistic=statistic
        )
        assert alone == two_variants.query_combined(
            "ModelLatency", [GREEN], start=T0, end=T0 + 600, period=60, statistic=statistic
        )


def test_retiring_an_endpoint_takes_every_series_of_it_out_of_prometheus(
    two_variants: MetricsStore,
) -> None:
    two_variants.group(METRICS, OTHER).put(T0, (1.0, 5.0))
    assert 'endpoint_name="orders"' in prometheus_text(two_variants)
    assert two_variants.retire({"EndpointName": "orders"}) == 4
    text = prometheus_text(two_variants)
    assert 'endpoint_name="orders"' not in text
    assert 'shipway_invocations_total{endpoint_name="other",variant_name="blue"} 1.0' in text
    assert 'shipway_model_latency_microseconds_count{endpoint_name="other"' in text


def test_a_retired_series_stays_queryable_until_retention_drops_it() -> None:
    store = MetricsStore(retention_seconds=600)
    store.group(METRICS, BLUE).put(T0, (1.0, 10.0))
    store.retire({"EndpointName": "orders"})
    assert store.query("Invocations", BLUE, start=T0, end=T0 + 60, period=60, statistic="Sum")
    assert store.series(EndpointName="orders")
    store.group(METRICS, OTHER).put(T0 + 3600, (1.0, 5.0))  # prunes what is past retention
    assert store.series(EndpointName="orders") == []
    assert not store.query("Invocations", BLUE, start=T0, end=T0 + 60, period=60, statistic="Sum")


def test_retiring_one_variant_keeps_the_others(two_variants: MetricsStore) -> None:
    assert two_variants.retire(GREEN) == 2
    text = prometheus_text(two_variants)
    assert 'variant_name="green"' not in text
    assert 'shipway_invocations_total{endpoint_name="orders",variant_name="blue"} 300.0' in text


def test_an_endpoint_created_again_starts_from_zero(two_variants: MetricsStore) -> None:
    stale = two_variants.group(METRICS, BLUE)
    two_variants.retire({"EndpointName": "orders"})
    stale.put(T0 + 550, (1.0, 1.0))  # a request that outlived its endpoint: not counted
    assert 'endpoint_name="orders"' not in prometheus_text(two_variants)
    fresh = two_variants.group(METRICS, BLUE)
    for _ in range(3):
        fresh.put(T0 + 560, (1.0, 2.0))
    text = prometheus_text(two_variants)
    assert 'shipway_invocations_total{endpoint_name="orders",variant_name="blue"} 3.0' in text
    assert 'variant_name="green"' not in text


def test_put_brings_a_retired_series_back_from_zero() -> None:
    store = MetricsStore()
    store.put("Invocations", tuple(sorted(BLUE.items())), 1.0, T0, unit="Count")
    store.retire(BLUE)
    assert "shipway_invocations_total" not in prometheus_text(store)
    store.put("Invocations", tuple(sorted(BLUE.items())), 1.0, T0 + 1, unit="Count")
    assert 'variant_name="blue"} 1.0' in prometheus_text(store)


def test_retiring_what_does_not_exist_retires_nothing(two_variants: MetricsStore) -> None:
    assert two_variants.retire({"EndpointName": "nope"}) == 0
    assert two_variants.retire({"EndpointName": "orders"}, namespace="Custom") == 0
    assert 'endpoint_name="orders"' in prometheus_text(two_variants)
