"""The autoscaler's policy math, as pure functions: target tracking, step scaling, cooldowns,
bounds, suspension and several policies on one target."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from shipway.control import scaling_math
from shipway.control.scaling_math import (
    Breach,
    Decision,
    MetricWindows,
    Proposal,
    ScalingHistory,
    decide,
    per_minute,
    percent_change,
    step_adjustment,
    step_scale,
    track_target,
)
from shipway.domain.scaling import ScalableTarget, ScalingPolicy, StepAdjustment
from shipway.domain.shape import parse

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = 1_000_000.0
RESOURCE = "endpoint/ep/variant/v"
FRESH = ScalingHistory()


def target(low: int = 1, high: int = 10, **suspended: bool) -> ScalableTarget:
    return parse(
        ScalableTarget,
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": RESOURCE,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity": low,
            "MaxCapacity": high,
            "RoleARN": "arn:aws:iam::123456789012:role/x",
            "CreationTime": T0,
            "SuspendedState": suspended or None,
        },
    )


def tracking(value: float = 100.0, name: str = "tt", **config: Any) -> ScalingPolicy:
    return parse(
        ScalingPolicy,
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": RESOURCE,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "PolicyARN": f"arn:policy/{name}",
            "PolicyName": name,
            "PolicyType": "TargetTrackingScaling",
            "CreationTime": T0,
            "Alarms": [
                {"AlarmName": f"TargetTracking-{RESOURCE}-AlarmHigh-1", "AlarmARN": "arn:h"},
                {"AlarmName": f"TargetTracking-{RESOURCE}-AlarmLow-1", "AlarmARN": "arn:l"},
            ],
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": value,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                **config,
            },
        },
    )


def stepping(steps: list[dict[str, Any]], name: str = "step", **config: Any) -> ScalingPolicy:
    return parse(
        ScalingPolicy,
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": RESOURCE,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "PolicyARN": f"arn:policy/{name}",
            "PolicyName": name,
            "PolicyType": "StepScaling",
            "CreationTime": T0,
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity",
                "StepAdjustments": steps,
                **config,
            },
        },
    )


def windows(out: list[float], into: list[float] | None = None, **kw: Any) -> MetricWindows:
    return MetricWindows(scale_out=out, scale_in=out if into is None else into, **kw)


def steady(per_instance: float, **kw: Any) -> MetricWindows:
    """The same per-instance value in every interval of both windows."""
    return MetricWindows(
        scale_out=[per_instance] * scaling_math.SCALE_OUT_INTERVALS,
        scale_in=[per_instance] * scaling_math.SCALE_IN_INTERVALS,
        **kw,
    )


def tt(
    policy: ScalingPolicy,
    metric: MetricWindows,
    capacity: int,
    history: ScalingHistory = FRESH,
    now: float = NOW,
) -> Proposal:
    return track_target(policy, metric, capacity, now, history)


# --- per-minute values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "statistic", "interval", "expected"),
    [
        (10.0, "Sum", 60.0, 10.0),
        (10.0, "Sum", 1.0, 600.0),
        (10.0, "Sum", 2.0, 300.0),
        (10.0, "SampleCount", 15.0, 40.0),
        (55.0, "Average", 1.0, 55.0),
        (55.0, "Maximum", 5.0, 55.0),
        (55.0, "Minimum", 120.0, 55.0),
    ],
)
def test_per_minute_scales_sums_and_counts_to_a_minute_only(
    value: float, statistic: str, interval: float, expected: float
) -> None:
    assert per_minute(value, statistic, interval) == pytest.approx(expected)


# --- target tracking ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "out", "into", "expected"),
    [
        # scale out: ceil(capacity * mean / target)
        (1, [150, 150, 150], None, 2),
        (1, [101, 101, 101], None, 2),
        (2, [300, 300, 300], None, 6),
        (4, [120, 130, 140], None, 6),  # 4 * 130 / 100 = 5.2
        (3, [1000] * 3, None, 30),
        # not every short interval above the target: no scale-out
        (2, [300, 90, 300], [50] * 12 + [300, 90, 300], 2),
        (2, [100, 100, 100], [100] * 15, 2),  # at the target is not above it
        # scale in: ceil(capacity * max / (0.9 * target)), when every long interval is under it
        (4, [40] * 3, [40] * 15, 2),
        (4, [10] * 3, [10] * 15, 1),
        (10, [80] * 3, [80] * 15, 9),
        (10, [89] * 3, [89] * 15, 10),  # 9 instances would be at 98.9: over 90 % of the target
        (20, [92] * 3, [92] * 15, 20),  # 19 would do, but 92 is not under 90 % of the target
        (4, [40] * 3, [20] * 14 + [60], 3),  # the busiest interval sizes it
        (4, [40] * 3, [40] * 14 + [95], 4),  # one interval near the target holds
        (2, [80] * 3, [80] * 15, 2),  # 2 * 80 / 100 = 1.6: one instance would be over
        (2, [45] * 3, [45] * 15, 1),  # exactly 90 % of the target on the smaller fleet
        (2, [50] * 3, [50] * 15, 2),
        # zero metrics: down to what the bound allows (decide clamps to Min)
        (5, [0] * 3, [0] * 15, 0),
    ],
)
def test_target_tracking_capacity(
    capacity: int, out: list[float], into: list[float] | None, expected: int
) -> None:
    proposal = tt(tracking(100.0), windows(out, into), capacity)
    assert proposal.capacity == expected, proposal.reason


def test_no_data_holds_the_capacity() -> None:
    proposal = tt(tracking(), windows([], []), 3)
    assert proposal.capacity == 3
    assert "no data" in proposal.reason
    decision = decide(target(1, 10), 3, [proposal])
    assert decision.capacity is None


def test_data_only_in_the_long_window_decides_the_scale_in() -> None:
    # the last three intervals had no request: missing, not zero
    assert tt(tracking(), windows([], [10, 20]), 4).capacity == 1


def test_measured_instances_size_the_fleet_not_the_capacity() -> None:
    """After a scale-out, new instances still starting take no share of the load yet: sizing on
    the instances the metric was measured over does not overshoot."""
    policy = tracking(100.0)
    # capacity 4 already asked for; only 1 instance took the load of 350 per minute
    assert tt(policy, steady(350, measured=1), 4).capacity == 4  # holds: 4 covers it
    assert tt(policy, steady(350), 4).capacity == 14  # what sizing on capacity would do
    assert tt(policy, steady(350, measured=1.0), 2).capacity == 4


def test_floating_point_products_do_not_add_an_instance() -> None:
    policy = tracking(0.1)
    assert tt(policy, steady(0.1 * 1.0000001), 3).capacity == 4
    # 3 * 0.1 / 0.1 is 3.0000000000000004 in floating point: still 3
    assert scaling_math._ceil(3 * 0.1 / 0.1) == 3


def test_the_cause_names_the_alarm_and_the_metric_as_aws_words_it() -> None:
    out = tt(tracking(name="ipi"), steady(250), 1)
    assert out.reason.startswith(
        f"monitor alarm TargetTracking-{RESOURCE}-AlarmHigh-1 in state ALARM triggered policy ipi"
    )
    assert "SageMakerVariantInvocationsPerInstance 250" in out.reason
    big = tt(tracking(3000.0, name="ipi"), steady(69520.4), 1)
    assert "SageMakerVariantInvocationsPerInstance 69520 above the target 3000" in big.reason
    into = tt(tracking(name="ipi"), steady(10), 4)
    assert f"TargetTracking-{RESOURCE}-AlarmLow-1 in state ALARM" in into.reason


def test_a_customized_metric_is_named_with_its_statistic() -> None:
    policy = tracking(
        50.0,
        PredefinedMetricSpecification=None,
        CustomizedMetricSpecification={
            "MetricName": "CPUUtilization",
            "Namespace": "/aws/sagemaker/Endpoints",
            "Statistic": "Average",
            "Dimensions": [{"Name": "EndpointName", "Value": "ep"}],
        },
    )
    proposal = tt(policy, steady(180), 2)
    assert proposal.capacity == 8
    assert "CPUUtilization (Average) 180" in proposal.reason


def simulate(
    load: float, capacity: int, policy: ScalingPolicy, bounds: ScalableTarget, ticks: int = 60
) -> list[int]:
    """The capacity over ``ticks`` evaluations of one-minute intervals under a steady total load
    (per minute): each instance sees load / capacity."""
    history = ScalingHistory()
    now = NOW
    seen = [capacity]
    out_window: list[float] = []
    in_window: list[float] = []
    for _ in range(ticks):
        now += 60
        value = load / capacity if capacity else 0.0
        out_window = [*out_window, value][-scaling_math.SCALE_OUT_INTERVALS :]
        in_window = [*in_window, value][-scaling_math.SCALE_IN_INTERVALS :]
        proposal = track_target(
            policy, MetricWindows(out_window, in_window), capacity, now, history
        )
        decision = decide(bounds, capacity, [proposal])
        if decision.capacity is not None:
            history = history.scaled(capacity, decision.capacity, now)
            capacity = decision.capacity
            out_window, in_window = [], []  # the loop reads windows from the change on
        seen.append(capacity)
    return seen


@pytest.mark.parametrize("load", [1.0, 99.0, 100.0, 101.0, 250.0, 333.0, 777.0, 1000.0, 5000.0])
@pytest.mark.parametrize("start", [1, 3, 7, 20])
def test_a_steady_load_settles_once_and_never_oscillates(load: float, start: int) -> None:
    policy = tracking(100.0, ScaleOutCooldown=60, ScaleInCooldown=120)
    seen = simulate(load, start, policy, target(1, 30))
    final = seen[-1]
    # from below it settles at ceil(L / T), from above at ceil(L / 0.9 T); in between it stays
    low, high = math.ceil(load / 100.0 - 1e-9), math.ceil(load / 90.0 - 1e-9)
    expected = low if start < low else high if start > high else start
    assert final == min(30, max(1, expected))
    # once it reached its final capacity it stayed there, and it moved in one direction
    first = seen.index(final)
    assert set(seen[first:]) == {final}
    moves = [b - a for a, b in itertools.pairwise(seen) if b != a]
    assert all(m > 0 for m in moves) or all(m < 0 for m in moves)


@pytest.mark.parametrize("seed", range(5))
def test_a_noisy_load_near_the_target_moves_at_most_once_and_never_back(seed: int) -> None:
    """± 5 % noise on a load that puts 4 instances at 97 % of the target: no flapping."""
    rng = random.Random(seed)
    policy = tracking(100.0, ScaleOutCooldown=0, ScaleInCooldown=0)
    capacity, history, now = 4, ScalingHistory(), NOW
    out_w: list[float] = []
    in_w: list[float] = []
    changes = []
    for _ in range(500):
        now += 60
        value = 388 * rng.uniform(0.95, 1.05) / capacity
        out_w = [*out_w, value][-3:]
        in_w = [*in_w, value][-15:]
        proposal = tt(policy, MetricWindows(out_w, in_w), capacity, history, now)
        decision = decide(target(1, 10), capacity, [proposal])
        if decision.capacity is not None:
            changes.append(decision.capacity)
            history = history.scaled(capacity, decision.capacity, now)
            capacity = decision.capacity
            out_w, in_w = [], []
    assert changes in ([], [5]), changes


# --- cooldowns -------------------------------------------------------------------------------


def test_scale_out_in_its_cooldown_only_above_what_the_last_scale_out_set() -> None:
    policy = tracking(100.0, ScaleOutCooldown=300)
    history = FRESH.scaled(2, 6, NOW - 100)
    # capacity is 6 now; the metric (measured on the 2 old instances) asks for 6: nothing more
    assert tt(policy, steady(300, measured=2), 6, history).capacity == 6
    # a bigger load asks for more than 6: scale out again, cooldown or not
    assert tt(policy, steady(500, measured=2), 6, history).capacity == 10
    # the capacity was set back to 4 meanwhile (UpdateEndpointWeightsAndCapacities): in the
    # cooldown a scale-out must still go above the 6 the last one set
    assert tt(policy, steady(150, measured=4), 4, history).capacity == 4
    assert tt(policy, steady(150, measured=4), 4, history, NOW + 300).capacity == 6


def test_scale_in_waits_for_its_cooldown_after_a_scale_out_and_after_a_scale_in() -> None:
    policy = tracking(100.0, ScaleInCooldown=120)
    after_out = FRESH.scaled(2, 4, NOW - 60)
    assert tt(policy, steady(10), 4, after_out).capacity == 4
    assert "cooldown" in tt(policy, steady(10), 4, after_out).reason
    assert tt(policy, steady(10), 4, after_out, NOW + 60).capacity == 1
    after_in = FRESH.scaled(6, 4, NOW - 119)
    assert tt(policy, steady(10), 4, after_in).capacity == 4
    assert tt(policy, steady(10), 4, after_in, NOW + 1).capacity == 1


def test_scale_out_does_not_wait_for_a_scale_in_cooldown() -> None:
    policy = tracking(100.0, ScaleInCooldown=600, ScaleOutCooldown=600)
    history = FRESH.scaled(4, 2, NOW - 10)
    assert tt(policy, steady(200), 2, history).capacity == 4


def test_default_cooldowns_are_sagemakers_300_seconds() -> None:
    policy = tracking(100.0)
    history = FRESH.scaled(1, 4, NOW - 299)
    assert tt(policy, steady(10), 4, history).capacity == 4
    assert tt(policy, steady(10), 4, history, NOW + 1).capacity == 1


# --- DisableScaleIn, suspension, bounds, several policies ------------------------------------


def test_disable_scale_in_scales_out_but_never_votes_to_scale_in() -> None:
    policy = tracking(100.0, DisableScaleIn=True)
    assert tt(policy, steady(300), 1).capacity == 3
    assert tt(policy, steady(10), 4).capacity is None
    assert tt(policy, steady(95), 4).capacity is None  # in band: no hold either
    assert decide(target(), 4, [tt(policy, steady(10), 4)]).capacity is None
    # another policy may scale in
    other = tracking(100.0, name="other")
    proposals = [tt(policy, steady(10), 4), tt(other, steady(10), 4)]
    assert decide(target(), 4, proposals).capacity == 1


@pytest.mark.parametrize(
    ("capacity", "metric", "suspended", "expected"),
    [
        (2, 300.0, {"DynamicScalingOutSuspended": True}, None),
        (2, 300.0, {"DynamicScalingInSuspended": True}, 6),
        (4, 10.0, {"DynamicScalingInSuspended": True}, None),
        (4, 10.0, {"DynamicScalingOutSuspended": True}, 1),
        (4, 10.0, {"ScheduledScalingSuspended": True}, 1),
    ],
)
def test_suspended_state_stops_that_direction_only(
    capacity: int, metric: float, suspended: dict[str, bool], expected: int | None
) -> None:
    proposal = tt(tracking(100.0), steady(metric), capacity)
    decision = decide(target(1, 10, **suspended), capacity, [proposal])
    assert decision.capacity == expected
    if expected is None:
        assert "suspended" in decision.cause


@pytest.mark.parametrize(
    ("low", "high", "capacity", "metric", "expected", "code"),
    [
        (1, 4, 2, 1000.0, 4, None),  # wants 20, gets Max
        (1, 4, 4, 1000.0, None, "AlreadyAtMaxCapacity"),
        (2, 10, 5, 0.0, 2, None),  # wants 0, gets Min
        (2, 10, 2, 0.0, None, "AlreadyAtMinCapacity"),
        (3, 10, 4, 10.0, 3, None),
    ],
)
def test_the_result_stays_within_min_and_max(
    low: int, high: int, capacity: int, metric: float, expected: int | None, code: str | None
) -> None:
    decision = decide(target(low, high), capacity, [tt(tracking(100.0), steady(metric), capacity)])
    assert decision.capacity == expected
    if code is None:
        assert decision.not_scaled is None
    else:
        assert decision.not_scaled is not None
        assert decision.not_scaled.code == code
        assert decision.not_scaled.min_capacity == low
        assert decision.not_scaled.max_capacity == high
        assert decision.not_scaled.current_capacity == capacity
        assert decision.wanted is not None
        assert decision.wanted != capacity


def test_capacity_outside_the_bounds_is_brought_back_by_the_next_decision() -> None:
    held = tt(tracking(100.0), steady(95), 12)
    assert decide(target(1, 10), 12, [held]).capacity == 10


def test_several_policies_the_largest_capacity_wins() -> None:
    ipi = tracking(100.0, name="ipi")
    cpu = tracking(50.0, name="cpu")
    proposals = [tt(ipi, steady(300), 2), tt(cpu, steady(100), 2)]  # 6 and 4
    decision = decide(target(), 2, proposals)
    assert (decision.capacity, decision.policy_name) == (6, "ipi")


def test_several_policies_scale_in_only_when_every_one_agrees() -> None:
    ipi = tracking(100.0, name="ipi")
    cpu = tracking(50.0, name="cpu")
    # ipi wants 1, cpu is near its target: hold
    proposals = [tt(ipi, steady(10), 4), tt(cpu, steady(48), 4)]
    assert decide(target(), 4, proposals).capacity is None
    # both want fewer: the larger of the two
    proposals = [tt(ipi, steady(10), 4), tt(cpu, steady(20), 4)]
    decision = decide(target(), 4, proposals)
    assert (decision.capacity, decision.policy_name) == (2, "cpu")
    # one of them has no data: it holds
    proposals = [tt(ipi, steady(10), 4), tt(cpu, windows([], []), 4)]
    assert decide(target(), 4, proposals).capacity is None
    # a scale-out of one wins over a scale-in of the other
    proposals = [tt(ipi, steady(10), 4), tt(cpu, steady(75), 4)]
    assert decide(target(), 4, proposals).capacity == 6


def test_no_policy_no_change() -> None:
    decision = decide(target(), 3, [])
    assert decision == Decision(None, "no scaling policy")


# --- step scaling ----------------------------------------------------------------------------

OUT_STEPS = [
    {"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 10.0, "ScalingAdjustment": 1},
    {"MetricIntervalLowerBound": 10.0, "MetricIntervalUpperBound": 20.0, "ScalingAdjustment": 2},
    {"MetricIntervalLowerBound": 20.0, "ScalingAdjustment": 3},
]
IN_STEPS = [
    {"MetricIntervalLowerBound": -10.0, "MetricIntervalUpperBound": 0.0, "ScalingAdjustment": -1},
    {"MetricIntervalUpperBound": -10.0, "ScalingAdjustment": -2},
]


def adjustments(steps: list[dict[str, Any]]) -> list[StepAdjustment]:
    return [parse(StepAdjustment, s) for s in steps]


@pytest.mark.parametrize(
    ("breach", "expected"),
    [
        (0.0, 1),  # lower bound inclusive above the threshold
        (5.0, 1),
        (9.999, 1),
        (10.0, 2),  # upper bound exclusive
        (19.0, 2),
        (20.0, 3),
        (1e9, 3),
        (-0.5, None),
    ],
)
def test_step_bounds_above_the_threshold(breach: float, expected: int | None) -> None:
    step = step_adjustment(adjustments(OUT_STEPS), breach)
    assert (None if step is None else step.scaling_adjustment) == expected


@pytest.mark.parametrize(
    ("breach", "expected"),
    [
        (0.0, -1),  # upper bound inclusive below the threshold
        (-5.0, -1),
        (-9.999, -1),
        (-10.0, -2),  # lower bound exclusive (so -10 is the next step's inclusive upper)
        (-10.001, -2),
        (-1e9, -2),
        (0.5, None),
    ],
)
def test_step_bounds_below_the_threshold(breach: float, expected: int | None) -> None:
    step = step_adjustment(adjustments(IN_STEPS), breach)
    assert (None if step is None else step.scaling_adjustment) == expected


def test_a_breach_of_zero_takes_the_step_starting_at_zero_when_both_sides_have_steps() -> None:
    both = adjustments([*OUT_STEPS, *IN_STEPS])
    step = step_adjustment(both, 0.0)
    assert step is not None
    assert step.scaling_adjustment == 1
    step = step_adjustment(both, -0.1)
    assert step is not None
    assert step.scaling_adjustment == -1


@pytest.mark.parametrize(
    ("capacity", "percent", "magnitude", "expected"),
    [
        (10, 25, None, 2),  # 2.5 rounds down
        (100, 12.7, None, 12),
        (4, 25, None, 1),
        (2, 25, None, 1),  # 0.5: between 0 and 1 is 1
        (3, 20, None, 1),  # 0.6
        (2, -25, None, -1),  # -0.5 is -1
        (100, -6.67, None, -6),  # -6.67 rounds toward zero
        (4, 25, 2, 2),  # AWS's example: 25 % of 4 with MinAdjustmentMagnitude 2 is 2
        (40, 25, 2, 10),
        (8, -10, 3, -3),
        (10, 0, 3, 0),
        (0, 50, None, 0),
        (0, 50, 2, 2),
        (10, 100, None, 10),
        (10, 200, None, 20),
    ],
)
def test_percent_change_rounding(
    capacity: int, percent: float, magnitude: int | None, expected: int
) -> None:
    assert percent_change(capacity, percent, magnitude) == expected


def breach(value: float, threshold: float = 50.0) -> Breach:
    return Breach("high-latency", value, threshold)


@pytest.mark.parametrize(
    ("config", "capacity", "value", "expected"),
    [
        ({}, 2, 55.0, 3),
        ({}, 2, 65.0, 4),
        ({}, 2, 95.0, 5),
        ({"AdjustmentType": "ChangeInCapacity"}, 4, 71.0, 7),
        ({"AdjustmentType": "ExactCapacity"}, 4, 55.0, 1),
        ({"AdjustmentType": "ExactCapacity"}, 4, 95.0, 3),
        ({"AdjustmentType": "PercentChangeInCapacity"}, 10, 55.0, 11),  # 10 % of 10 is 1
        ({"AdjustmentType": "PercentChangeInCapacity"}, 10, 75.0, 13),  # 30 % of 10 is 3
        ({"AdjustmentType": "PercentChangeInCapacity", "MinAdjustmentMagnitude": 2}, 4, 55, 6),
        ({}, 2, 45.0, None),  # below the threshold: no step
    ],
)
def test_step_scaling_adjustment_types(
    config: dict[str, Any], capacity: int, value: float, expected: int | None
) -> None:
    steps = OUT_STEPS
    if config.get("AdjustmentType") == "PercentChangeInCapacity":
        steps = [{**s, "ScalingAdjustment": s["ScalingAdjustment"] * 10} for s in OUT_STEPS]
    policy = stepping(steps, **config)
    proposal = step_scale(policy, breach(value), capacity, NOW, FRESH)
    assert proposal.capacity == expected, proposal.reason


def test_step_scaling_cause_names_the_alarm() -> None:
    proposal = step_scale(stepping(OUT_STEPS, name="burst"), breach(62.0), 2, NOW, FRESH)
    assert proposal.reason.startswith(
        "monitor alarm high-latency in state ALARM triggered policy burst"
    )


def test_step_scale_in_is_clamped_by_decide_and_never_below_zero() -> None:
    policy = stepping(IN_STEPS)
    proposal = step_scale(policy, breach(10.0), 1, NOW, FRESH)
    assert proposal.capacity == 0
    assert decide(target(1, 10), 1, [proposal]).capacity is None
    assert decide(target(0, 10), 1, [proposal]).capacity == 0


def test_step_scaling_leaves_zero_target_tracking_does_not() -> None:
    step = step_scale(stepping(OUT_STEPS), breach(51.0), 0, NOW, FRESH)
    assert decide(target(0, 5), 0, [step]).capacity == 1
    tracked = tt(tracking(100.0), steady(500), 0)
    assert decide(target(0, 5), 0, [tracked]).capacity is None
    assert "step scaling" in tracked.reason


def test_step_scale_out_in_its_cooldown_counts_the_last_scale_out() -> None:
    """AWS's example: +2, then during the cooldown the alarm fires at the +3 step: only 1 more."""
    policy = stepping(OUT_STEPS, Cooldown=300)
    history = FRESH.scaled(2, 4, NOW - 60)
    assert step_scale(policy, breach(75.0), 4, NOW, history).capacity == 5
    # the same +2 step again during the cooldown: nothing
    assert step_scale(policy, breach(65.0), 4, NOW, history).capacity is None
    # after the cooldown, +2 on the current capacity
    assert step_scale(policy, breach(65.0), 4, NOW + 240, history).capacity == 6


def test_step_scale_in_waits_for_its_cooldown_scale_out_does_not() -> None:
    history = FRESH.scaled(6, 4, NOW - 60)
    scale_in = stepping(IN_STEPS, Cooldown=120)
    assert step_scale(scale_in, breach(45.0), 4, NOW, history).capacity is None
    assert step_scale(scale_in, breach(45.0), 4, NOW + 60, history).capacity == 3
    scale_out = stepping(OUT_STEPS, Cooldown=120)
    assert step_scale(scale_out, breach(55.0), 4, NOW, history).capacity == 5


def test_step_scale_in_is_held_by_a_target_tracking_policy_near_its_target() -> None:
    step = step_scale(stepping(IN_STEPS), breach(45.0), 4, NOW, FRESH)
    held = tt(tracking(100.0), steady(95), 4)
    assert decide(target(), 4, [step, held]).capacity is None
    disabled = tt(tracking(100.0, DisableScaleIn=True), steady(95), 4)
    assert decide(target(), 4, [step, disabled]).capacity == 3


def test_a_policy_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ValueError, match="not a target tracking policy"):
        track_target(stepping(OUT_STEPS), steady(1), 1, NOW, FRESH)
    with pytest.raises(ValueError, match="not a step scaling policy"):
        step_scale(tracking(), breach(60), 1, NOW, FRESH)


def test_exports() -> None:
    assert sorted(scaling_math.__all__) == sorted(
        [
            "SCALE_IN_FRACTION",
            "SCALE_IN_INTERVALS",
            "SCALE_OUT_INTERVALS",
            "Breach",
            "Decision",
            "MetricWindows",
            "Proposal",
            "ScalingHistory",
            "decide",
            "per_minute",
            "percent_change",
            "step_adjustment",
            "step_scale",
            "track_target",
        ]
    )
