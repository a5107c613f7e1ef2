"""The autoscaler's policy math: from a target's metrics, capacity and policies to the capacity it
should have, and why. Pure functions of plain values: no store, no clock, no I/O (the loop,
:mod:`shipway.control.autoscaler`, reads the metrics and writes the capacity).

*Capacity* is the target's desired count now (instances, or a serverless variant's provisioned
concurrency). Each policy gives a :class:`Proposal` (:func:`track_target`, :func:`step_scale`);
:func:`decide` combines a target's proposals into one :class:`Decision`.

**Per-minute values at any evaluation interval.** Application Auto Scaling works on one-minute
datapoints: ``SageMakerVariantInvocationsPerInstance`` is invocations per instance *per minute*.
The loop evaluates every ``interval`` seconds (``SHIPWAY_AUTOSCALING_INTERVAL_SECONDS``) and reads
each policy's metric per interval; :func:`per_minute` turns an interval's statistic into its
one-minute meaning (Sum and SampleCount * 60 / interval; Average, Minimum and Maximum as they
are). So a TargetValue keeps its meaning whether the interval is 60 s or 1 s.

**Two windows, as AWS's two alarms.** Target tracking on AWS is driven by an AlarmHigh (3 of 3
one-minute datapoints above TargetValue) and an AlarmLow (15 of 15 below 90 % of it). Here, with
the per-minute value of each evaluation interval that has data, oldest first:

- *scale out* looks at the last :data:`SCALE_OUT_INTERVALS` (3) intervals. When every one of them
  is above TargetValue, the capacity becomes ``ceil(measured * mean / TargetValue)``: the
  load the window saw, spread so that each instance is at or under the target.
- *scale in* looks at the last :data:`SCALE_IN_INTERVALS` (15). When every one of them is below
  :data:`SCALE_IN_FRACTION` (90 %) of TargetValue, the capacity becomes
  ``ceil(measured * max / (0.9 * TargetValue))``: even the busiest interval of the window would
  keep the smaller fleet at or under 90 % of the target.

``measured`` is how many instances the per-instance values were measured over (the current
capacity unless the loop knows better: instances still starting after a scale-out take no
share yet). Intervals without data are left out, as CloudWatch's ``missing`` treatment does; a
window with no data at all decides nothing (no data, no change). A metric of zero scales in to
MinCapacity.

**Why it does not oscillate.** Scaling out sizes the fleet to the target, scaling in to 90 % of
it: with a steady load L (per-instance value L / n), a scale-out to ``ceil(L / T)`` leaves each
instance at or under T, so no further scale-out, and a scale-in would ask for
``ceil(L / 0.9 T)``, at least as many, so none; a scale-in to ``ceil(L / 0.9 T)`` leaves each
instance at or under 0.9 T, below the target, so no scale-out. A steady load thus settles
between ``ceil(L / T)`` (reached from below) and ``ceil(L / 0.9 T)`` (from above), and stays.
Once scaled in, only a load more than 11 % above the busiest interval that allowed it scales out
again; and scale-out needs every short interval above the target, scale-in every long interval
below 90 % of it, so noise does not flap the fleet either.

**Cooldowns** (:class:`ScalingHistory` holds when the target last scaled, whichever policy did
it). During ScaleOutCooldown after a scale-out, target tracking scales out further only to a
capacity above the one that scale-out set (AWS: the capacity it added counts as part of the next
desired capacity); step scaling applies its adjustment to the capacity *before* that scale-out,
so an alarm firing again at a larger step adds only the difference. Scale-in waits
ScaleInCooldown (step scaling: ``Cooldown``) after any scaling activity, out or in; scale-out
never waits for a scale-in cooldown.

**Several policies on one target**: the largest capacity wins. A policy whose metric is within
its band, has no data or is in its scale-in cooldown *holds* the current capacity, so the target
scales in only when every policy agrees. A policy with ``DisableScaleIn`` never votes to scale
in and never holds: it only scales out (another policy, step scaling say, may scale in). A step
policy whose alarm is not in ALARM has no say.

**Step scaling.** The breach is the alarm's metric value minus its threshold. A step adjustment's
bounds are relative to the threshold, a missing lower bound is -infinity and a missing upper one
+infinity. Above the threshold the lower bound is inclusive and the upper exclusive; below it,
the lower bound is exclusive and the upper inclusive (AWS's rule); a breach of exactly 0 takes
the step starting at 0, else the one ending at 0. AdjustmentType ``ChangeInCapacity`` adds the
adjustment, ``ExactCapacity`` sets it, ``PercentChangeInCapacity`` adds that percentage of the
capacity (:func:`percent_change`: between 0 and 1 rounds to 1, larger values round toward zero,
at least ``MinAdjustmentMagnitude``).

**The bounds and SuspendedState** apply to the combined result (:func:`decide`): it is clamped to
[MinCapacity, MaxCapacity], and ``DynamicScalingOutSuspended`` / ``DynamicScalingInSuspended``
stop a change in that direction. Target tracking never scales out from a capacity of 0 (there is
no instance to measure): only step scaling leaves 0, as on AWS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from shipway.domain.scaling import (
    AdjustmentType,
    MetricStatistic,
    NotScaledReason,
    ScalableTarget,
    ScalingPolicy,
    StepAdjustment,
    StepScalingPolicyConfiguration,
    TargetTrackingScalingPolicyConfiguration,
)

__all__ = [
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

SCALE_OUT_INTERVALS = 3
"""Evaluation intervals the scale-out decision looks at (AWS's AlarmHigh: 3 datapoints)."""
SCALE_IN_INTERVALS = 15
"""Evaluation intervals the scale-in decision looks at (AWS's AlarmLow: 15 datapoints)."""
SCALE_IN_FRACTION = 0.9
"""Scale in only while every interval is below this fraction of TargetValue (AWS's AlarmLow
threshold)."""
_EPSILON = 1e-9
"""Slack for floating-point products (3 * 0.1 / 0.1 is 3.0000000000000004, which is 3)."""


@dataclass(frozen=True)
class MetricWindows:
    """A target tracking policy's metric as the loop read it: the per-minute value of each
    evaluation interval that had data, oldest first, over the two windows."""

    scale_out: Sequence[float]
    """The last :data:`SCALE_OUT_INTERVALS` intervals."""
    scale_in: Sequence[float]
    """The last :data:`SCALE_IN_INTERVALS` intervals."""
    measured: float | None = None
    """How many instances the per-instance values were measured over; None: the capacity."""


@dataclass(frozen=True)
class Breach:
    """What a step scaling policy acts on: an alarm in ALARM and its latest metric value."""

    alarm_name: str
    value: float
    threshold: float

    @property
    def amount(self) -> float:
        """The metric's distance from the threshold (negative below it)."""
        return self.value - self.threshold


@dataclass(frozen=True)
class ScalingHistory:
    """When a target last scaled, for the cooldowns (epoch seconds)."""

    scale_out_time: float | None = None
    scale_out_from: int = 0
    """The capacity before the last scale-out."""
    scale_out_to: int = 0
    """The capacity the last scale-out set."""
    scale_in_time: float | None = None

    @property
    def last_time(self) -> float | None:
        """When the target last scaled, either way."""
        times = [t for t in (self.scale_out_time, self.scale_in_time) if t is not None]
        return max(times) if times else None

    def scaled(self, old: int, new: int, now: float) -> ScalingHistory:
        """The history once the capacity went from ``old`` to ``new`` at ``now``."""
        if new > old:
            return replace(self, scale_out_time=now, scale_out_from=old, scale_out_to=new)
        if new < old:
            return replace(self, scale_in_time=now)
        return self

    def in_scale_out_cooldown(self, cooldown: float, now: float) -> bool:
        return self.scale_out_time is not None and now - self.scale_out_time < cooldown

    def in_scale_in_cooldown(self, cooldown: float, now: float) -> bool:
        last = self.last_time
        return last is not None and now - last < cooldown


@dataclass(frozen=True)
class Proposal:
    """One policy's say: the capacity it wants (the current one: it holds), or None (it has no
    say), and why."""

    policy_name: str
    capacity: int | None
    reason: str


@dataclass(frozen=True)
class Decision:
    """What the target's policies decided together."""

    capacity: int | None
    """The new capacity, or None to keep the current one."""
    cause: str
    """Why: a scaling activity's Cause (or a not-scaled activity's)."""
    policy_name: str | None = None
    """The policy whose proposal won, if one did."""
    wanted: int | None = None
    """The capacity the winning policy asked for, before the bounds."""
    not_scaled: NotScaledReason | None = None
    """Set when a policy asked for a change that the bounds turned into none."""


def per_minute(value: float, statistic: MetricStatistic | str, interval_seconds: float) -> float:
    """An interval's statistic in its one-minute meaning: a Sum or SampleCount over
    ``interval_seconds`` scaled to 60 s; an Average, Minimum or Maximum as it is."""
    if statistic in (MetricStatistic.SUM, MetricStatistic.SAMPLE_COUNT):
        return value * 60.0 / interval_seconds
    return value


def _ceil(value: float) -> int:
    return max(0, math.ceil(value - _EPSILON))


def _shown(value: float) -> str:
    """A metric value for a cause: four significant digits, and no exponent below 10^15
    (69520 invocations a minute, not 6.952e+04)."""
    if value == 0 or abs(value) >= 1e15:
        return f"{value:.4g}"
    digits = max(0, 3 - math.floor(math.log10(abs(value))))
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _label(config: TargetTrackingScalingPolicyConfiguration) -> str:
    if config.predefined_metric_specification is not None:
        return config.predefined_metric_specification.predefined_metric_type.value
    custom = config.customized_metric_specification
    assert custom is not None  # the shape requires one of the two
    return f"{custom.metric_name} ({custom.statistic})"


def _alarm(policy: ScalingPolicy, kind: str) -> str | None:
    """The name of the policy's AlarmHigh or AlarmLow, when it has one."""
    return next((a.alarm_name for a in policy.alarms or [] if f"-{kind}-" in a.alarm_name), None)


def _triggered(policy: ScalingPolicy, alarm: str | None) -> str:
    """AWS's wording of a scaling activity's cause."""
    if alarm is None:
        return f"policy {policy.policy_name} triggered"
    return f"monitor alarm {alarm} in state ALARM triggered policy {policy.policy_name}"


def track_target(
    policy: ScalingPolicy,
    metric: MetricWindows,
    capacity: int,
    now: float,
    history: ScalingHistory,
) -> Proposal:
    """A target tracking policy's proposal (module doc: windows, cooldowns, DisableScaleIn)."""
    config = policy.target_tracking_scaling_policy_configuration
    if config is None:
        raise ValueError(f"policy {policy.policy_name} is not a target tracking policy")
    name = policy.policy_name
    target = config.target_value
    label = _label(config)
    measured = capacity if metric.measured is None else metric.measured
    hold = None if config.disable_scale_in else capacity

    if metric.scale_out and min(metric.scale_out) > target:
        mean = sum(metric.scale_out) / len(metric.scale_out)
        wanted = _ceil(measured * mean / target)
        seen = (
            f"{label} {_shown(mean)} above the target {target:g} in each of the last "
            f"{len(metric.scale_out)} intervals with data"
        )
        floor = capacity
        if history.in_scale_out_cooldown(config.scale_out_cooldown_seconds, now):
            floor = max(capacity, history.scale_out_to)
        if wanted > floor:
            cause = f"{_triggered(policy, _alarm(policy, 'AlarmHigh'))} ({seen})"
            return Proposal(name, wanted, cause)
        if capacity == 0:
            return Proposal(name, hold, f"{name}: {seen}, but target tracking cannot scale out "
                            "from 0 (no instance to measure): use step scaling")  # fmt: skip
        return Proposal(name, hold, f"{name}: {seen}; capacity {floor} already covers it")

    if not metric.scale_in:
        return Proposal(name, hold, f"{name}: no data for {label}")
    low = SCALE_IN_FRACTION * target
    busiest = max(metric.scale_in)
    if busiest >= low:
        return Proposal(name, hold, f"{name}: {label} {_shown(busiest)} near the target {target:g}")
    seen = (
        f"{label} at most {_shown(busiest)}, below {low:g} (90 % of the target {target:g}), "
        f"in each of the last {len(metric.scale_in)} intervals with data"
    )
    wanted = _ceil(measured * busiest / low)
    if config.disable_scale_in:
        return Proposal(name, None, f"{name}: {seen}; scale-in is disabled")
    if wanted >= capacity:
        return Proposal(name, capacity, f"{name}: {seen}; a smaller fleet would be over {low:g}")
    if history.in_scale_in_cooldown(config.scale_in_cooldown_seconds, now):
        return Proposal(name, capacity, f"{name}: {seen}; in its scale-in cooldown")
    return Proposal(name, wanted, f"{_triggered(policy, _alarm(policy, 'AlarmLow'))} ({seen})")


def step_adjustment(adjustments: Sequence[StepAdjustment], breach: float) -> StepAdjustment | None:
    """The step adjustment whose interval holds ``breach`` (metric minus threshold), by AWS's
    rules (module doc), or None."""

    def bounds(step: StepAdjustment) -> tuple[float, float]:
        lower = step.metric_interval_lower_bound
        upper = step.metric_interval_upper_bound
        return (-math.inf if lower is None else lower, math.inf if upper is None else upper)

    if breach == 0:
        starting = [s for s in adjustments if bounds(s)[0] == 0]
        ending = [s for s in adjustments if bounds(s)[1] == 0]
        if starting or ending:
            return (starting or ending)[0]
    for step in adjustments:
        lower, upper = bounds(step)
        inside = lower <= breach < upper if breach >= 0 else lower < breach <= upper
        if inside:
            return step
    return None


def percent_change(capacity: int, percent: float, min_magnitude: int | None = None) -> int:
    """The change in capacity PercentChangeInCapacity asks for: ``capacity * percent / 100``,
    where a value between 0 and 1 (or 0 and -1) becomes 1 (-1) and a larger one is rounded
    toward zero (12.7 → 12, -6.67 → -6); at least ``min_magnitude`` either way."""
    if percent == 0:
        return 0
    sign = 1 if percent > 0 else -1
    exact = abs(capacity * percent / 100.0)
    magnitude = 0 if exact == 0 else max(1, int(exact + _EPSILON))  # toward zero, at least 1
    return sign * max(magnitude, min_magnitude or 0)


def _adjusted(config: StepScalingPolicyConfiguration, base: int, adjustment: int) -> int:
    kind = config.adjustment_type or AdjustmentType.CHANGE_IN_CAPACITY
    if kind is AdjustmentType.EXACT_CAPACITY:
        return adjustment
    if kind is AdjustmentType.PERCENT_CHANGE_IN_CAPACITY:
        return base + percent_change(base, adjustment, config.min_adjustment_magnitude)
    return base + adjustment


def step_scale(
    policy: ScalingPolicy,
    breach: Breach,
    capacity: int,
    now: float,
    history: ScalingHistory,
) -> Proposal:
    """A step scaling policy's proposal while ``breach.alarm_name`` is in ALARM (module doc:
    bounds, adjustment types, Cooldown)."""
    config = policy.step_scaling_policy_configuration
    if config is None:
        raise ValueError(f"policy {policy.policy_name} is not a step scaling policy")
    name = policy.policy_name
    seen = f"metric {_shown(breach.value)} against the threshold {breach.threshold:g}"
    step = step_adjustment(config.step_adjustments or [], breach.amount)
    if step is None:
        return Proposal(name, None, f"{name}: no step adjustment for {seen}")
    cooldown = config.cooldown_seconds
    cause = f"monitor alarm {breach.alarm_name} in state ALARM triggered policy {name} ({seen})"
    wanted = max(0, _adjusted(config, capacity, step.scaling_adjustment))
    if wanted > capacity and history.in_scale_out_cooldown(cooldown, now):
        # the capacity the last scale-out added counts toward this one
        wanted = max(0, _adjusted(config, history.scale_out_from, step.scaling_adjustment))
        if wanted <= capacity:
            return Proposal(name, None, f"{name}: {seen}; in its cooldown, already scaled out")
    if wanted < capacity and history.in_scale_in_cooldown(cooldown, now):
        return Proposal(name, None, f"{name}: {seen}; in its cooldown")
    if wanted == capacity:
        return Proposal(name, None, f"{name}: {seen}; already at capacity {capacity}")
    return Proposal(name, wanted, cause)


def decide(target: ScalableTarget, capacity: int, proposals: Sequence[Proposal]) -> Decision:
    """The target's new capacity from its policies' proposals: the largest wins, clamped to
    [MinCapacity, MaxCapacity]; a change in a direction SuspendedState suspends is not made."""
    voting = [p for p in proposals if p.capacity is not None]
    if not voting:
        reasons = "; ".join(p.reason for p in proposals) or "no scaling policy"
        return Decision(None, reasons)
    best = max(voting, key=lambda p: p.capacity or 0)
    assert best.capacity is not None
    wanted = best.capacity
    low, high = target.min_capacity, target.max_capacity
    new = min(max(wanted, low), high)
    suspended = target.suspended_state
    if new > capacity and suspended is not None and suspended.dynamic_scaling_out_suspended:
        return Decision(None, f"{best.reason}; dynamic scale-out is suspended", best.policy_name)
    if new < capacity and suspended is not None and suspended.dynamic_scaling_in_suspended:
        return Decision(None, f"{best.reason}; dynamic scale-in is suspended", best.policy_name)
    if new == capacity:
        if wanted == capacity:
            held = [p.reason for p in voting if p.capacity == capacity]
            return Decision(None, "; ".join(held), best.policy_name)
        code = "AlreadyAtMaxCapacity" if wanted > capacity else "AlreadyAtMinCapacity"
        reason = NotScaledReason(
            code=code, max_capacity=high, min_capacity=low, current_capacity=capacity
        )
        limit = f"MaxCapacity {high}" if wanted > capacity else f"MinCapacity {low}"
        return Decision(
            None, f"{best.reason}; already at {limit}", best.policy_name, wanted, reason
        )
    cause = best.reason
    if new != wanted:
        cause += f"; {wanted} kept within [{low}, {high}]"
    return Decision(new, cause, best.policy_name, wanted)
