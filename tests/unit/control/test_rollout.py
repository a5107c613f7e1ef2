"""The deployment plan and state machine, as pure functions: every policy, bake, rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipway.control.rollout import FleetObservation, Outcome, advance, plan
from shipway.domain.deployment import Deployment, DeploymentConfig, DeploymentPhase, VariantState
from shipway.domain.endpoint_config import EndpointConfig
from shipway.domain.errors import ValidationError
from shipway.domain.shape import parse

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def policy(**fields: Any) -> DeploymentConfig:
    return parse(DeploymentConfig, fields)


def blue_green(kind: str = "ALL_AT_ONCE", wait: int = 60, **fields: Any) -> DeploymentConfig:
    routing: dict[str, Any] = {"Type": kind, "WaitIntervalInSeconds": wait}
    size = fields.pop("size", None)
    if kind == "CANARY":
        routing["CanarySize"] = size
    if kind == "LINEAR":
        routing["LinearStepSize"] = size
    return policy(
        BlueGreenUpdatePolicy={"TrafficRoutingConfiguration": routing, **fields},
        AutoRollbackConfiguration={"Alarms": [{"AlarmName": "errors"}]},
    )


def rolling(batch: dict[str, Any], wait: int = 60, **fields: Any) -> DeploymentConfig:
    return policy(
        RollingUpdatePolicy={"MaximumBatchSize": batch, "WaitIntervalInSeconds": wait, **fields}
    )


def percent(value: int) -> dict[str, Any]:
    return {"Type": "CAPACITY_PERCENT", "Value": value}


def count(value: int) -> dict[str, Any]:
    return {"Type": "INSTANCE_COUNT", "Value": value}


def shares(config: DeploymentConfig, old: int = 4, new: int = 4) -> list[float]:
    steps = plan(config, old_counts={"v": old}, new_counts={"v": new},
                 old_production=["v"], new_production=["v"]).steps  # fmt: skip
    return [s.share for s in steps]


# --- plan ------------------------------------------------------------------------------------


def test_no_deployment_config_is_blue_green_all_at_once_without_a_bake() -> None:
    planned = plan(DeploymentConfig(), old_counts={"a": 2}, new_counts={"b": 3},
                   old_production=["a"], new_production=["b"])  # fmt: skip
    assert [(s.share, s.new_counts, s.old_counts) for s in planned.steps] == [
        (1.0, {"b": 3}, {"a": 2})
    ]
    assert planned.bake_seconds == 0
    assert planned.termination_wait_seconds == 0


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (blue_green(), [1.0]),
        (blue_green("CANARY", size=percent(10)), [0.1, 1.0]),
        (blue_green("CANARY", size=count(1)), [0.25, 1.0]),
        (blue_green("LINEAR", size=percent(25)), [0.25, 0.5, 0.75, 1.0]),
        (blue_green("LINEAR", size=percent(30)), [0.3, 0.6, 0.9, 1.0]),
        (blue_green("LINEAR", size=count(2)), [0.5, 1.0]),
        (rolling(count(1)), [0.25, 0.5, 0.75, 1.0]),
        (rolling(percent(50)), [0.5, 1.0]),
    ],
)
def test_traffic_shares_of_each_policy(config: DeploymentConfig, expected: list[float]) -> None:
    assert shares(config) == pytest.approx(expected)


def test_blue_green_keeps_the_whole_old_fleet_until_the_end() -> None:
    planned = plan(blue_green("LINEAR", size=percent(50)), old_counts={"v": 2},
                   new_counts={"v": 3}, old_production=["v"], new_production=["v"])  # fmt: skip
    assert [s.new_counts for s in planned.steps] == [{"v": 3}, {"v": 3}]
    assert [s.old_counts for s in planned.steps] == [{"v": 2}, {"v": 2}]


def test_rolling_replaces_the_old_fleet_batch_by_batch() -> None:
    planned = plan(rolling(count(1), RollbackMaximumBatchSize=count(2)), old_counts={"v": 3},
                   new_counts={"v": 3}, old_production=["v"], new_production=["v"])  # fmt: skip
    assert [s.new_counts["v"] for s in planned.steps] == [1, 2, 3]
    assert [s.old_counts["v"] for s in planned.steps] == [2, 1, 0]
    assert planned.rollback_batch == {"v": 2}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (blue_green("CANARY", size=percent(60)), "CanarySize of 60% is out of range"),
        (blue_green("CANARY", size=count(3)), "CanarySize of 3 instances is 75%"),
        (blue_green("LINEAR", size=percent(5)), "LinearStepSize of 5% is out of range"),
        (blue_green("LINEAR", size=count(3)), "LinearStepSize of 3 instances is 75%"),
        (rolling(percent(80)), "MaximumBatchSize of 80% is out of range"),
        (rolling(count(3)), "MaximumBatchSize of 3 instances is more than half"),
        (
            blue_green("CANARY", wait=300, size=percent(10), MaximumExecutionTimeoutInSeconds=600),
            r"MaximumExecutionTimeoutInSeconds \(600\) .* 600 seconds in all",
        ),
        (
            blue_green(
                wait=300, TerminationWaitInSeconds=300, MaximumExecutionTimeoutInSeconds=600
            ),
            "must be longer than the deployment's waits",
        ),
        (
            rolling(count(1), wait=200, MaximumExecutionTimeoutInSeconds=700),
            "800 seconds in all",
        ),
    ],
)
def test_invalid_sizes_and_timeouts(config: DeploymentConfig, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        shares(config)


def test_guardrails_keep_the_variant_names() -> None:
    with pytest.raises(ValidationError, match="must keep the same production variant names"):
        plan(blue_green(), old_counts={"a": 1}, new_counts={"b": 1},
             old_production=["a"], new_production=["b"])  # fmt: skip


def test_rolling_needs_a_single_variant() -> None:
    with pytest.raises(ValidationError, match="exactly one variant"):
        plan(rolling(count(1)), old_counts={"a": 2, "b": 2}, new_counts={"a": 2, "b": 2},
             old_production=["a", "b"], new_production=["a", "b"])  # fmt: skip


def test_policy_takes_one_update_policy() -> None:
    with pytest.raises(Exception, match="not both"):
        policy(
            BlueGreenUpdatePolicy={
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
            },
            RollingUpdatePolicy={"MaximumBatchSize": count(1), "WaitIntervalInSeconds": 0},
        )


# --- advance ---------------------------------------------------------------------------------


def deployment(config: DeploymentConfig, old: int = 4, new: int = 4) -> Deployment:
    planned = plan(config, old_counts={"v": old}, new_counts={"v": new},
                   old_production=["v"], new_production=["v"])  # fmt: skip
    endpoint_config = parse(
        EndpointConfig,
        {
            "EndpointConfigName": "new",
            "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/new",
            "CreationTime": T0,
            "ProductionVariants": [
                {"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large",
                 "InitialInstanceCount": new}
            ],
        },
    )  # fmt: skip
    return Deployment(
        endpoint_config_name="new",
        config=endpoint_config,
        variants=[VariantState(variant_name="v", desired_weight=1, desired_instance_count=new)],
        generation=2,
        deployment_config=config,
        steps=planned.steps,
        bake_seconds=planned.bake_seconds,
        termination_wait_seconds=planned.termination_wait_seconds,
        maximum_execution_seconds=planned.maximum_execution_seconds,
        rollback_batch=planned.rollback_batch,
        started=T0,
        phase_started=T0,
        new_counts=planned.steps[0].new_counts,
        old_counts={"v": old},
        old_full_counts={"v": old},
    )


def seen(old: int, new: int, failure: str | None = None) -> FleetObservation:
    return FleetObservation({"v": old}, {"v": new}, failure)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_canary_walks_every_step_and_bake_then_waits_to_terminate() -> None:
    d = deployment(blue_green("CANARY", wait=60, size=percent(10), TerminationWaitInSeconds=30))
    d, outcome = advance(d, seen(4, 2), at(5))
    assert (d.phase, d.share, outcome) == (DeploymentPhase.PROVISIONING, 0.0, Outcome.CONTINUE)
    d, _ = advance(d, seen(4, 4), at(10))
    assert (d.phase, d.share, d.phase_started) == (DeploymentPhase.BAKING, 0.1, at(10))
    d, _ = advance(d, seen(4, 4), at(69.9))
    assert (d.phase, d.step) == (DeploymentPhase.BAKING, 0)
    d, _ = advance(d, seen(4, 4), at(70))
    assert (d.phase, d.step, d.share) == (DeploymentPhase.PROVISIONING, 1, 0.1)
    d, _ = advance(d, seen(4, 4), at(71))
    assert (d.phase, d.share) == (DeploymentPhase.BAKING, 1.0)
    d, _ = advance(d, seen(4, 4), at(131))
    assert d.phase is DeploymentPhase.TERMINATION_WAIT
    assert d.old_counts == {"v": 4}
    d, outcome = advance(d, seen(4, 4), at(160))
    assert outcome is Outcome.CONTINUE
    d, outcome = advance(d, seen(4, 4), at(161))
    assert (d.phase, outcome) == (DeploymentPhase.DELETING_OLD_FLEET, Outcome.CONTINUE)
    assert d.old_counts == {"v": 0}
    draining = FleetObservation({"v": 0}, {"v": 4}, old_live={"v": 1})
    d, outcome = advance(d, draining, at(162), firing=["errors"])
    assert outcome is Outcome.CONTINUE  # too late to roll back: the old fleet is going
    d, outcome = advance(d, seen(0, 4), at(163))
    assert outcome is Outcome.COMPLETED


def test_an_alarm_during_a_bake_sends_all_traffic_back_at_once() -> None:
    d = deployment(blue_green("CANARY", wait=60, size=percent(10)))
    d, _ = advance(d, seen(4, 4), at(1))
    assert d.share == 0.1
    d, outcome = advance(d, seen(4, 4), at(20), firing=["errors"])
    assert outcome is Outcome.ROLLED_BACK
    assert d.share == 0.0
    assert d.new_counts == {"v": 0}
    assert d.reason is not None
    assert "Alarm errors went into ALARM state" in d.reason


def test_an_alarm_before_any_traffic_moved_does_not_roll_back() -> None:
    d = deployment(blue_green("CANARY", wait=60, size=percent(10)))
    d, outcome = advance(d, seen(4, 1), at(1), firing=["errors"])
    assert (d.phase, outcome) == (DeploymentPhase.PROVISIONING, Outcome.CONTINUE)


def test_an_alarm_during_the_termination_wait_still_rolls_back() -> None:
    d = deployment(blue_green(wait=0, TerminationWaitInSeconds=60))
    d, _ = advance(d, seen(4, 4), at(1))
    d, _ = advance(d, seen(4, 4), at(2))
    assert d.phase is DeploymentPhase.TERMINATION_WAIT
    d, outcome = advance(d, seen(4, 4), at(30), firing=["errors"])
    assert outcome is Outcome.ROLLED_BACK


def test_a_new_fleet_that_cannot_start_rolls_back() -> None:
    d = deployment(blue_green("LINEAR", size=percent(50)))
    d, outcome = advance(d, seen(4, 0, "the model failed to load"), at(3))
    assert outcome is Outcome.ROLLED_BACK
    assert d.reason == "The new fleet failed: the model failed to load"


def test_the_maximum_execution_timeout_rolls_back() -> None:
    d = deployment(blue_green(wait=60, MaximumExecutionTimeoutInSeconds=600))
    d, outcome = advance(d, seen(4, 1), at(600))
    assert outcome is Outcome.CONTINUE
    d, outcome = advance(d, seen(4, 1), at(601))
    assert outcome is Outcome.ROLLED_BACK
    assert d.reason is not None
    assert "MaximumExecutionTimeoutInSeconds (600 seconds)" in d.reason


def test_rolling_shrinks_the_old_fleet_after_each_bake() -> None:
    d = deployment(rolling(count(1), wait=10))
    trace = []
    now = 0.0
    outcome = Outcome.CONTINUE
    while outcome is Outcome.CONTINUE:
        now += 5
        d, outcome = advance(d, seen(d.old_counts["v"], d.new_counts["v"]), at(now))
        trace.append((d.phase.value[0], d.share, d.new_counts["v"], d.old_counts["v"]))
    assert outcome is Outcome.COMPLETED
    assert trace[:5] == [
        ("B", 0.25, 1, 4),  # batch 1 up at once (observed), traffic moved
        ("B", 0.25, 1, 4),
        ("P", 0.25, 2, 3),  # bake over: one old instance goes, batch 2 starts
        ("B", 0.5, 2, 3),
        ("B", 0.5, 2, 3),
    ]
    assert d.old_counts == {"v": 0}


def test_rolling_rollback_brings_the_old_fleet_back_in_batches() -> None:
    d = deployment(rolling(count(1), wait=10, RollbackMaximumBatchSize=count(1)))
    for now in (1, 11, 12, 22):  # two batches done: 2 new, 2 old
        d, _ = advance(d, seen(d.old_counts["v"], d.new_counts["v"]), at(now))
    assert (d.share, d.old_counts, d.new_counts) == (0.5, {"v": 2}, {"v": 3})
    d, outcome = advance(d, seen(2, 2), at(23), firing=["x"])
    assert d.phase is DeploymentPhase.ROLLING_BACK
    assert (d.share, d.old_counts) == (0.5, {"v": 3})  # one old instance is asked back
    d, _ = advance(d, seen(2, 2), at(24))
    assert (d.share, d.old_counts) == (0.5, {"v": 3})  # not up yet: traffic stays
    d, _ = advance(d, seen(3, 2), at(25))
    assert (d.share, d.old_counts, d.new_counts) == (0.25, {"v": 4}, {"v": 1})
    d, outcome = advance(d, seen(4, 1), at(26))
    assert outcome is Outcome.ROLLED_BACK
    assert (d.share, d.new_counts) == (0.0, {"v": 0})


def test_an_old_instance_that_cannot_come_back_fails_the_rollback() -> None:
    d = deployment(rolling(count(1), wait=10, RollbackMaximumBatchSize=count(1)))
    for now in (1, 11, 12):  # batch 2 provisioned: 2 new, 3 old
        d, _ = advance(d, seen(d.old_counts["v"], d.new_counts["v"]), at(now))
    d, outcome = advance(d, seen(3, 2), at(13), firing=["x"])
    assert (d.phase, outcome) == (DeploymentPhase.ROLLING_BACK, Outcome.CONTINUE)
    broken = FleetObservation({"v": 3}, {"v": 2}, old_failure="the model failed to load")
    d, outcome = advance(d, broken, at(14))
    assert outcome is Outcome.ROLLBACK_FAILED
    assert d.reason is not None
    assert d.reason.endswith("The rollback failed too: the model failed to load")


def test_a_bake_starts_over_when_the_new_fleet_loses_instances() -> None:
    """After a server restart every instance starts again: no bake counts time without them."""
    d = deployment(blue_green(wait=60, TerminationWaitInSeconds=30))
    d, _ = advance(d, seen(4, 4), at(1))
    assert (d.phase, d.phase_started) == (DeploymentPhase.BAKING, at(1))
    d, outcome = advance(d, seen(0, 0), at(200))  # restarted: nothing in service yet
    assert (d.phase, d.phase_started, outcome) == (
        DeploymentPhase.BAKING,
        at(200),
        Outcome.CONTINUE,
    )
    d, _ = advance(d, seen(4, 3), at(210))
    assert d.phase_started == at(210)
    d, _ = advance(d, seen(4, 4), at(269))
    assert d.phase is DeploymentPhase.BAKING
    d, _ = advance(d, seen(4, 4), at(270))
    assert d.phase is DeploymentPhase.TERMINATION_WAIT


def test_a_new_instance_that_cannot_start_during_a_bake_rolls_back() -> None:
    d = deployment(blue_green(wait=60))
    d, _ = advance(d, seen(4, 4), at(1))
    d, outcome = advance(d, seen(4, 3, "the model failed to load"), at(10))
    assert outcome is Outcome.ROLLED_BACK


def test_a_blue_green_rollback_moves_traffic_back_as_old_instances_come_up() -> None:
    d = deployment(blue_green(wait=600, TerminationWaitInSeconds=600))
    d, _ = advance(d, seen(4, 4), at(1))
    d, outcome = advance(d, seen(3, 4), at(10), firing=["errors"])  # one old is restarting
    assert (d.phase, d.share, outcome) == (DeploymentPhase.ROLLING_BACK, 0.25, Outcome.CONTINUE)
    failing = FleetObservation({"v": 3}, {"v": 4}, old_failure="ping failed")
    d, outcome = advance(d, failing, at(20))  # retried, not given up: blue/green kept the fleet
    assert (d.share, outcome) == (0.25, Outcome.CONTINUE)
    d, outcome = advance(d, seen(4, 4), at(30))
    assert (d.share, outcome) == (0.0, Outcome.ROLLED_BACK)


def test_waits_longer_than_the_default_timeout_are_refused() -> None:
    with pytest.raises(ValidationError, match="add up to 36000 seconds"):
        shares(blue_green("LINEAR", wait=3600, size=percent(10)))


def test_rolling_replaces_one_for_one() -> None:
    with pytest.raises(ValidationError, match="replaces instances one for one"):
        shares(rolling(count(1)), old=10, new=2)
