"""The shadow report: comparing outputs, counts that add up, agreement at any tolerance."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime

import pytest

from shipway.domain.errors import NotFound, ValidationError
from shipway.domain.shape import dump
from shipway.monitor import shadow_report
from shipway.monitor.shadow_report import (
    Answer,
    ShadowReportNotFound,
    ShadowTally,
    difference,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
INF = math.inf


def test_the_public_names() -> None:
    assert sorted(shadow_report.__all__) == [
        "Answer",
        "Disagreement",
        "LatencySummary",
        "ShadowPairReport",
        "ShadowReport",
        "ShadowReportNotFound",
        "ShadowTally",
        "difference",
    ]


# -- difference -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("production", "shadow", "expected"),
    [
        (b"[1, 0, 1]", b"[1, 0, 1]", 0.0),  # equal bytes
        (b"[1, 0, 1]", b"[1,0,1]", 0.0),  # equal JSON, other spacing
        (b"[1, 0, 1]", b"[1.0, 0.0, 1.0]", 0.0),  # equal numbers, ints and floats
        (b"[1, 0, 1]", b"[1, 1, 1]", 1.0),
        (b"[[0.25, 0.75], [0.5, 0.5]]", b"[[0.25, 0.75], [0.5, 0.625]]", 0.125),
        (b'{"probability": [0.5]}', b'{"probability": [0.75]}', 0.25),
        (b"0.5", b"0.875", 0.375),  # scalars
        (b"0.25,0.75\n0.5,0.5\n", b"0.25,0.75\n0.5,0.375\n", 0.125),  # CSV rows
        (b"1\r\n0\r\n", b"1\n2\n", 2.0),  # CSV, either line ending
        (b"[1, 0]", b"[1, 0, 1]", INF),  # different lengths
        (b'{"a": 1}', b'{"b": 1}', INF),  # different keys
        (b'{"label": "cat"}', b'{"label": "dog"}', INF),  # unequal text
        (b'{"label": "cat", "p": 0.5}', b'{"label": "cat", "p": 0.25}', 0.25),
        (b"[true, 1]", b"[1, 1]", INF),  # a boolean is not a number
        (b"[null]", b"[0]", INF),
        (b"[1, 2]", b"1,2", INF),  # JSON against CSV
        (b"cat", b"dog", INF),  # neither JSON nor CSV numbers
        (b"\xff\xfe", b"\xff\xff", INF),  # binary
        (b"nan,1", b"nan,1.5", 0.5),  # NaN against NaN agrees
        (b"nan", b"1", INF),
    ],
)
def test_difference(production: bytes, shadow: bytes, expected: float) -> None:
    assert difference(production, shadow) == expected
    assert difference(shadow, production) == expected


def test_outputs_too_large_to_parse_are_compared_byte_for_byte() -> None:
    assert difference(b"[1.0]", b"[1]", max_parse_bytes=3) == INF
    assert difference(b"[1.0]", b"[1.0]", max_parse_bytes=3) == 0.0


def test_deeply_nested_outputs_are_not_comparable_rather_than_a_crash() -> None:
    deep = b"[" * 1000 + b"1" + b"]" * 1000
    other = b"[" * 1000 + b"2" + b"]" * 1000
    assert difference(deep, other) in (1.0, INF)


# -- the tally --------------------------------------------------------------------------------


def ok(body: bytes, ms: float = 1.0) -> Answer:
    return Answer(200, body, ms / 1000)


def test_a_new_tally_reports_its_expected_pairs_with_zero_counts() -> None:
    tally = ShadowTally("orders", T0)
    tally.expect("AllTraffic", "Shadow")

    report = tally.report()

    assert report.endpoint_name == "orders"
    assert report.since == T0
    [pair] = report.pairs
    assert (pair.production_variant, pair.shadow_variant) == ("AllTraffic", "Shadow")
    assert pair.sampled == pair.compared == pair.skipped == 0
    assert pair.agreement_rate is None
    assert pair.max_difference is None
    assert pair.production_latency is None
    assert pair.shadow_latency is None
    assert pair.disagreements == []


def test_each_outcome_lands_in_exactly_one_count_and_they_add_up() -> None:
    tally = ShadowTally("orders", T0)
    rng = random.Random(5)
    outcomes = {"skipped": 0, "production": 0, "shadow": 0, "compared": 0}
    for _ in range(1_000):
        production = ok(b"[1]") if rng.random() < 0.9 else Answer(500, b"boom", 0.001)
        if rng.random() < 0.05:
            tally.add("p", "s", b"[[1]]", production, None, T0)
            outcomes["skipped"] += 1
            continue
        shadow = rng.choice([ok(b"[1]"), ok(b"[0]"), Answer(None), Answer(None, b"", 60.0)])
        tally.add("p", "s", b"[[1]]", production, shadow, T0)
        if not production.ok:
            outcomes["production"] += 1
        elif not shadow.ok:
            outcomes["shadow"] += 1
        else:
            outcomes["compared"] += 1

    [pair] = tally.report().pairs

    assert pair.sampled == 1_000
    assert pair.sampled == pair.skipped + pair.compared + pair.production_errors + (
        pair.shadow_errors
    )
    assert pair.skipped == outcomes["skipped"]
    assert pair.production_errors == outcomes["production"]
    assert pair.shadow_errors == outcomes["shadow"]
    assert pair.compared == outcomes["compared"] == pair.window
    assert 0 < pair.agreeing < pair.compared


def test_a_production_error_counts_as_such_whatever_the_shadow_did() -> None:
    tally = ShadowTally("orders", T0)
    tally.add("p", "s", b"x", Answer(None, b"", 0.5), ok(b"[1]"), T0)
    tally.add("p", "s", b"x", Answer(424, b"bad"), Answer(None), T0)

    [pair] = tally.report().pairs

    assert (pair.production_errors, pair.shadow_errors, pair.compared) == (2, 0, 0)


def test_agreement_depends_on_the_tolerance_given_when_reporting() -> None:
    tally = ShadowTally("orders", T0)
    for shadow in (b"[0.5]", b"[0.5000000001]", b"[0.5000001]", b"[0.6]", b'"text"'):
        tally.add("p", "s", b"[[1]]", ok(b"[0.5]"), ok(shadow), T0)

    exact = tally.report().pairs[0]
    noise = tally.report(1e-6).pairs[0]
    loose = tally.report(0.2).pairs[0]

    assert (exact.agreeing, exact.window, exact.agreement_rate) == (1, 5, 0.2)
    assert (noise.agreeing, noise.agreement_rate) == (3, 0.6)
    assert (loose.agreeing, loose.agreement_rate) == (4, 0.8)
    assert exact.max_difference == pytest.approx(0.1)
    assert exact.incomparable == 1
    assert tally.report(INF).pairs[0].agreeing == 5


@pytest.mark.parametrize("tolerance", [-1e-9, math.nan])
def test_a_negative_or_nan_tolerance_is_refused(tolerance: float) -> None:
    with pytest.raises(ValidationError, match="Tolerance"):
        ShadowTally("orders", T0).report(tolerance)


def test_differences_and_latencies_are_kept_for_the_last_window_only() -> None:
    tally = ShadowTally("orders", T0, window=10)
    for i in range(30):
        shadow = b"[0]" if i < 20 else b"[1]"  # the last 10 agree
        tally.add("p", "s", b"[[1]]", ok(b"[1]", ms=1000.0), ok(shadow, ms=float(i)), T0)

    [pair] = tally.report().pairs

    assert pair.compared == 30
    assert (pair.window, pair.agreeing, pair.agreement_rate) == (10, 10, 1.0)
    assert pair.shadow_latency is not None
    assert pair.shadow_latency.count == 10
    assert pair.shadow_latency.p50 == pytest.approx(24.0)


def test_latency_percentiles_are_nearest_rank_in_milliseconds() -> None:
    tally = ShadowTally("orders", T0)
    for ms in range(1, 101):  # production 1..100 ms, shadow twice that
        tally.add("p", "s", b"x", ok(b"[1]", ms=float(ms)), ok(b"[1]", ms=2.0 * ms), T0)

    [pair] = tally.report().pairs

    production, shadow = pair.production_latency, pair.shadow_latency
    assert production is not None
    assert shadow is not None
    assert (production.p50, production.p90, production.p99) == pytest.approx((50, 90, 99))
    assert production.mean == pytest.approx(50.5)
    assert production.count == 100
    assert (shadow.p50, shadow.p90, shadow.p99, shadow.mean) == pytest.approx((100, 180, 198, 101))


def test_skipped_copies_still_count_production_latency_and_no_answer_counts_none() -> None:
    tally = ShadowTally("orders", T0)
    tally.add("p", "s", b"x", ok(b"[1]", ms=3.0), None, T0)  # skipped
    tally.add("p", "s", b"x", ok(b"[1]", ms=5.0), Answer(None), T0)  # no live shadow instance
    tally.add("p", "s", b"x", ok(b"[1]", ms=7.0), Answer(None, b"", 2.0), T0)  # shadow timeout

    [pair] = tally.report().pairs

    assert pair.production_latency is not None
    assert pair.production_latency.count == 3
    assert pair.shadow_latency is not None
    assert pair.shadow_latency.count == 1
    assert pair.shadow_latency.p50 == pytest.approx(2000.0)


def test_disagreements_keep_the_most_recent_truncated_and_beyond_the_tolerance() -> None:
    tally = ShadowTally("orders", T0, examples=3, excerpt_bytes=8)
    tally.add("p", "s", b"first", ok(b"[1]"), ok(b"[9]"), T0)
    for i in range(4):
        tally.add("p", "s", f"request {i} is long".encode(), ok(b"[1]"), ok(b"[1.5]"), T0)
    tally.add("p", "s", b"short", ok(b"[1]"), ok(b"[1.0000001]"), T0)
    tally.add("p", "s", b"same", ok(b"[1]"), ok(b"[1]"), T0)  # agreeing: no example

    exact = tally.report().pairs[0].disagreements
    noise = tally.report(1e-6).pairs[0].disagreements

    assert [(d.request, d.difference) for d in exact] == [
        ("request …", 0.5),
        ("request …", 0.5),
        ("short", pytest.approx(1e-7)),
    ]
    assert exact[0].production_output == "[1]"
    assert exact[0].shadow_output == "[1.5]"
    assert [d.request for d in noise] == ["request …", "request …"]


def test_an_incomparable_disagreement_has_no_difference_in_its_json_form() -> None:
    tally = ShadowTally("orders", T0)
    tally.expect("p", "s")
    tally.add("p", "s", b'{"x": 1}', ok(b'"cat"'), ok(b'"dog"'), T0)

    document = dump(tally.report(sampling={"s": 0.5}))

    json.dumps(document, allow_nan=False)  # strict JSON: no Infinity anywhere
    [pair] = document["Pairs"]
    assert pair["SamplingFraction"] == 0.5
    assert pair["Incomparable"] == 1
    assert "MaxDifference" not in pair  # None, dropped from the wire form
    [example] = pair["Disagreements"]
    assert "Difference" not in example
    assert example["ProductionOutput"] == '"cat"'
    assert example["Time"] == "2026-01-01T00:00:00Z"


def test_pairs_are_reported_per_production_and_shadow_variant_in_name_order() -> None:
    tally = ShadowTally("orders", T0)
    tally.add("green", "shadow", b"x", ok(b"[1]"), ok(b"[1]"), T0)
    tally.add("blue", "shadow", b"x", ok(b"[1]"), ok(b"[0]"), T0)

    report = tally.report(in_flight=2, max_in_flight=64)

    assert [(p.production_variant, p.agreement_rate) for p in report.pairs] == [
        ("blue", 0.0),
        ("green", 1.0),
    ]
    assert (report.in_flight, report.max_in_flight) == (2, 64)


def test_not_found_says_why() -> None:
    error = ShadowReportNotFound("orders")

    assert isinstance(error, NotFound)
    assert error.code == "ResourceNotFound"
    assert "Endpoint orders has no shadow report" in error.message
