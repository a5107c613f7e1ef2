"""Rollouts: a deployment's plan, and the pure function that moves it one step.

A deployment is a traffic-weight target the controller's loop moves step by step (not a second
engine). :func:`plan` turns a ``DeploymentConfig`` into :class:`~shipway.domain.deployment.Step`\\ s
when UpdateEndpoint is accepted — each step is the new fleet's share of traffic, the new
instances it needs first, and the old instances kept after its bake:

    blue/green ALL_AT_ONCE   full new fleet, then 100 %                    (old fleet kept whole)
    blue/green CANARY        full new fleet, then the canary's share, then 100 %
    blue/green LINEAR        full new fleet, then n x step, ..., 100 %
    rolling                  batch by batch: k new instances → k / M of the traffic → bake →
                             old fleet cut to its remaining share

:func:`advance` is the state machine, called on every reconcile pass with what the controller
observes:

    Provisioning ──the step's new instances in service──► Baking (share moved)
    Baking ──bake over──► Provisioning (next step) │ TerminationWait │ DeletingOldFleet
    TerminationWait ──wait over──► DeletingOldFleet ──old instances drained, stopped──► completed
    any phase with traffic on the new fleet ──alarm in ALARM──► RollingBack
    Provisioning ──a new instance fails to start──► RollingBack
    any ──MaximumExecutionTimeout passed──► RollingBack
    RollingBack ──old instances back (in batches for rolling), then all traffic──► rolled back
    RollingBack ──an old instance cannot start again──► rollback failed (UpdateRollbackFailed)

Traffic only ever moves onto instances that are in service: a shift waits for its instances,
and a rollback takes traffic off the new fleet only as fast as old instances are back up.

Every bake lasts WaitIntervalInSeconds, the last one too (AWS leaves open whether canary and
linear bake after the final shift; we do, and say so in the design notes). Alarms are watched
from the first shift until the old fleet is gone, TerminationWait included: that window exists
for a fast rollback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shipway.domain.deployment import (
    DEFAULT_MAXIMUM_EXECUTION_TIMEOUT,
    CapacitySize,
    CapacitySizeType,
    Deployment,
    DeploymentConfig,
    DeploymentPhase,
    Step,
    TrafficRoutingType,
)
from shipway.domain.errors import ValidationError

__all__ = ["FleetObservation", "Outcome", "Plan", "advance", "plan"]


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    bake_seconds: float
    termination_wait_seconds: float
    maximum_execution_seconds: float
    rollback_batch: dict[str, int] | None


def plan(
    policy: DeploymentConfig,
    *,
    old_counts: Mapping[str, int],
    new_counts: Mapping[str, int],
    old_production: Sequence[str],
    new_production: Sequence[str],
) -> Plan:
    """The steps of a deployment from the old fleet to the new one, or a ValidationError.

    Counts are per variant (shadow variants included); the ``*_production`` names say which
    variants take production traffic.
    """
    if policy.guarded and sorted(old_production) != sorted(new_production):
        raise ValidationError(
            "A deployment with a BlueGreenUpdatePolicy or RollingUpdatePolicy must keep the "
            f"same production variant names: the endpoint has {_names(old_production)}, the "
            f"new endpoint configuration has {_names(new_production)}."
        )
    if policy.rolling_update_policy is not None:
        return _plan_rolling(policy, old_counts, new_counts, old_production, new_production)
    blue_green = policy.blue_green_update_policy
    routing = blue_green.traffic_routing_configuration if blue_green is not None else None
    total = sum(new_counts[v] for v in new_production)
    shares: list[float] = [1.0]
    if routing is not None and routing.type is TrafficRoutingType.CANARY:
        assert routing.canary_size is not None
        canary = _fraction(routing.canary_size, total, "CanarySize", 1, 50)
        shares = [canary, 1.0]
    elif routing is not None and routing.type is TrafficRoutingType.LINEAR:
        assert routing.linear_step_size is not None
        step = _fraction(routing.linear_step_size, total, "LinearStepSize", 10, 50)
        count = math.ceil(1 / step - 1e-9)
        shares = [min(1.0, round(step * (i + 1), 6)) for i in range(count)]
        shares[-1] = 1.0
    bake = float(routing.wait_interval_in_seconds) if routing is not None else 0.0
    termination = float(blue_green.termination_wait_in_seconds or 0) if blue_green else 0.0
    maximum = blue_green.maximum_execution_timeout_in_seconds if blue_green else None
    _check_timeout(maximum, len(shares) * bake + termination, "BlueGreenUpdatePolicy")
    steps = [
        Step(share=s, new_counts=dict(new_counts), old_counts=dict(old_counts)) for s in shares
    ]
    return Plan(
        steps=steps,
        bake_seconds=bake,
        termination_wait_seconds=termination,
        maximum_execution_seconds=float(maximum or DEFAULT_MAXIMUM_EXECUTION_TIMEOUT),
        rollback_batch=None,
    )


def _plan_rolling(
    policy: DeploymentConfig,
    old_counts: Mapping[str, int],
    new_counts: Mapping[str, int],
    old_production: Sequence[str],
    new_production: Sequence[str],
) -> Plan:
    rolling = policy.rolling_update_policy
    assert rolling is not None
    if len(new_production) != 1 or len(old_counts) != 1 or len(new_counts) != 1:
        raise ValidationError(
            "RollingUpdatePolicy works on endpoints with exactly one variant (no shadow "
            f"variant); this update has {len(new_counts)}. Use a BlueGreenUpdatePolicy."
        )
    name = new_production[0]
    old, new = old_counts[old_production[0]], new_counts[name]
    if old != new:
        raise ValidationError(
            f"RollingUpdatePolicy replaces instances one for one: the new configuration asks for "
            f"{new} instance(s) of {name} and the endpoint runs {old}. Change the count with "
            "UpdateEndpointWeightsAndCapacities, or deploy with a BlueGreenUpdatePolicy."
        )
    batch = _batch(rolling.maximum_batch_size, new, "MaximumBatchSize")
    steps = []
    up = 0
    while up < new:
        up = min(new, up + batch)
        share = up / new
        remaining = 0 if up == new else math.ceil(old * (1 - share) - 1e-9)
        steps.append(Step(share=share, new_counts={name: up}, old_counts={name: remaining}))
    bake = float(rolling.wait_interval_in_seconds)
    maximum = rolling.maximum_execution_timeout_in_seconds
    _check_timeout(maximum, len(steps) * bake, "RollingUpdatePolicy")
    rollback = rolling.rollback_maximum_batch_size
    return Plan(
        steps=steps,
        bake_seconds=bake,
        termination_wait_seconds=0.0,
        maximum_execution_seconds=float(maximum or DEFAULT_MAXIMUM_EXECUTION_TIMEOUT),
        rollback_batch=(
            {name: _batch(rollback, old, "RollbackMaximumBatchSize", limit=False)}
            if rollback is not None
            else None
        ),
    )


def _fraction(size: CapacitySize, total: int, field: str, low: int, high: int) -> float:
    """A canary or linear step as a share of the new fleet's capacity, checked to lie in
    [low %, high %]."""
    if size.type is CapacitySizeType.CAPACITY_PERCENT:
        if not low <= size.value <= high:
            raise ValidationError(
                f"{field} of {size.value}% is out of range: it must be between {low}% and "
                f"{high}% of the new fleet's capacity."
            )
        return size.value / 100
    share = size.value / total
    if not low / 100 - 1e-9 <= share <= high / 100 + 1e-9:
        raise ValidationError(
            f"{field} of {size.describe()} is {share:.0%} of the new fleet's {total} "
            f"instances; it must be between {low}% and {high}% of the capacity."
        )
    return share


def _batch(size: CapacitySize, count: int, field: str, *, limit: bool = True) -> int:
    """A rolling batch in instances: 5 to 50 % of the variant's instances, at least one."""
    if size.type is CapacitySizeType.CAPACITY_PERCENT:
        if limit and not 5 <= size.value <= 50:
            raise ValidationError(
                f"{field} of {size.value}% is out of range: it must be between 5% and 50% of "
                "the variant's instances."
            )
        if size.value > 100:
            raise ValidationError(f"{field} of {size.value}% is more than 100%.")
        return max(1, math.floor(count * size.value / 100))
    if limit and size.value > max(1, count // 2):
        raise ValidationError(
            f"{field} of {size.describe()} is more than half of the variant's {count} "
            f"instance{'s' if count != 1 else ''}; it must be at most {max(1, count // 2)}."
        )
    return size.value


def _check_timeout(maximum: int | None, waits: float, policy: str) -> None:
    """The deployment's waits must fit in its MaximumExecutionTimeout, given or default."""
    if maximum is not None and maximum <= waits:
        raise ValidationError(
            f"MaximumExecutionTimeoutInSeconds ({maximum}) of the {policy} must be longer than "
            f"the deployment's waits, {waits:.0f} seconds in all (every bake, and the "
            "termination wait)."
        )
    if maximum is None and waits >= DEFAULT_MAXIMUM_EXECUTION_TIMEOUT:
        raise ValidationError(
            f"The deployment's waits add up to {waits:.0f} seconds (every bake, and the "
            f"termination wait); a deployment may last at most {DEFAULT_MAXIMUM_EXECUTION_TIMEOUT} "
            "seconds (MaximumExecutionTimeoutInSeconds). Use fewer or shorter steps."
        )


def _names(names: Sequence[str]) -> str:
    return ", ".join(sorted(names)) or "none"


# --- the state machine -----------------------------------------------------------------------


class Outcome(StrEnum):
    CONTINUE = "Continue"
    COMPLETED = "Completed"
    ROLLED_BACK = "RolledBack"
    ROLLBACK_FAILED = "RollbackFailed"
    """The old fleet cannot be brought back: both fleets stay as they are (mixed)."""


@dataclass(frozen=True)
class FleetObservation:
    """What the controller sees of both fleets: instances in service, per variant."""

    old_in_service: Mapping[str, int]
    new_in_service: Mapping[str, int]
    new_failure: str | None = None
    """Why a new instance could not start (its model failed to load...), if one could not."""
    old_live: Mapping[str, int] = field(default_factory=dict)
    """Old instances not yet gone (starting, in service or draining), per variant."""
    old_failure: str | None = None
    """Why an old instance could not start again (during a rollback), if one could not."""


def advance(
    deployment: Deployment,
    seen: FleetObservation,
    now: datetime,
    firing: Sequence[str] = (),
) -> tuple[Deployment, Outcome]:
    """The deployment after this pass, and whether it ended. ``firing``: rollback alarms that
    are in ALARM now."""
    d = deployment
    if d.phase is DeploymentPhase.ROLLING_BACK:
        return _roll_back(d, seen, now)
    if d.phase is DeploymentPhase.DELETING_OLD_FLEET:
        if any(seen.old_live.values()):
            return d, Outcome.CONTINUE
        return d, Outcome.COMPLETED
    elapsed = (now - d.started).total_seconds()
    if elapsed > d.maximum_execution_seconds:
        return _start_rollback(
            d,
            seen,
            now,
            f"The deployment did not finish within MaximumExecutionTimeoutInSeconds "
            f"({d.maximum_execution_seconds:.0f} seconds).",
        )
    if firing and d.share > 0:
        names = ", ".join(firing)
        return _start_rollback(
            d,
            seen,
            now,
            f"Alarm{'s' if len(firing) > 1 else ''} {names} went into ALARM state during the "
            f"deployment (step {d.step + 1} of {len(d.steps)}, {d.share:.0%} of traffic on the "
            "new fleet); traffic was sent back to the old fleet.",
        )
    if seen.new_failure is not None:
        return _start_rollback(d, seen, now, f"The new fleet failed: {seen.new_failure}")
    step = d.current_step
    if d.phase is not DeploymentPhase.PROVISIONING and not _ready(
        seen.new_in_service, step.new_counts
    ):
        # the new fleet lost instances it had (a crash, or a restart of the server, which
        # starts every instance again): its bake starts over once it is whole again
        return _with(d, phase_started=now), Outcome.CONTINUE
    in_phase = (now - d.phase_started).total_seconds()
    if d.phase is DeploymentPhase.PROVISIONING:
        if _ready(seen.new_in_service, step.new_counts):
            return _with(d, phase=DeploymentPhase.BAKING, phase_started=now, share=step.share), (
                Outcome.CONTINUE
            )
        return _with(d, new_counts=step.new_counts), Outcome.CONTINUE
    if d.phase is DeploymentPhase.BAKING:
        if in_phase < d.bake_seconds:
            return d, Outcome.CONTINUE
        if d.step + 1 < len(d.steps):
            following = d.steps[d.step + 1]
            return _with(
                d,
                step=d.step + 1,
                phase=DeploymentPhase.PROVISIONING,
                phase_started=now,
                old_counts=step.old_counts,
                new_counts=following.new_counts,
            ), Outcome.CONTINUE
        if d.termination_wait_seconds > 0:
            return _with(d, phase=DeploymentPhase.TERMINATION_WAIT, phase_started=now), (
                Outcome.CONTINUE
            )
        return _delete_old_fleet(d, now), Outcome.CONTINUE
    # TerminationWait
    if in_phase < d.termination_wait_seconds:
        return d, Outcome.CONTINUE
    return _delete_old_fleet(d, now), Outcome.CONTINUE


def _delete_old_fleet(d: Deployment, now: datetime) -> Deployment:
    return _with(
        d,
        phase=DeploymentPhase.DELETING_OLD_FLEET,
        phase_started=now,
        old_counts=dict.fromkeys(d.old_counts, 0),
    )


def _start_rollback(
    d: Deployment, seen: FleetObservation, now: datetime, reason: str
) -> tuple[Deployment, Outcome]:
    rolling_back = _with(d, phase=DeploymentPhase.ROLLING_BACK, phase_started=now, reason=reason)
    return _roll_back(rolling_back, seen, now)


def _roll_back(d: Deployment, seen: FleetObservation, now: datetime) -> tuple[Deployment, Outcome]:
    """Bring the old fleet back (in batches for rolling), moving traffic as it comes up."""
    full = d.old_full_counts
    production = [v for v in d.old_production if v in full] or list(full)
    total = max(1, sum(full[v] for v in production))
    up = sum(min(seen.old_in_service.get(v, 0), d.old_counts.get(v, 0)) for v in production)
    done = _with(d, share=0.0, new_counts=dict.fromkeys(d.new_counts, 0))
    if d.rollback_batch is None:
        # blue/green: the old fleet was kept whole; traffic goes back as fast as its instances
        # are in service (all at once, normally), and one that fails is retried, not given up
        share = min(d.share, max(0.0, 1 - up / total))
        if share == 0.0:
            return done, Outcome.ROLLED_BACK
        return _with(d, share=share, old_counts=dict(full)), Outcome.CONTINUE
    if seen.old_failure is not None:
        reason = f"{d.reason} The rollback failed too: {seen.old_failure}"
        return _with(d, reason=reason[:1024]), Outcome.ROLLBACK_FAILED
    if not _ready(seen.old_in_service, d.old_counts):
        return d, Outcome.CONTINUE  # the batch asked for last is still starting
    if all(d.old_counts.get(v, 0) >= n for v, n in full.items()):
        return done, Outcome.ROLLED_BACK
    share = min(d.share, max(0.0, 1 - up / total))
    batch = d.rollback_batch
    old_counts = {v: min(n, d.old_counts.get(v, 0) + batch.get(v, n)) for v, n in full.items()}
    new_total = {v.variant_name: v.desired_instance_count for v in d.variants}
    new_counts = {
        v: min(d.new_counts.get(v, 0), math.ceil(n * share - 1e-9)) for v, n in new_total.items()
    }
    return _with(d, share=share, old_counts=old_counts, new_counts=new_counts), Outcome.CONTINUE


def _ready(in_service: Mapping[str, int], wanted: Mapping[str, int]) -> bool:
    return all(in_service.get(v, 0) >= n for v, n in wanted.items())


def _with(d: Deployment, **changes: object) -> Deployment:
    return d.model_copy(update=changes)
