"""Safe deployments under steady load, driven through boto3, with a clock the test moves.

Each policy — blue/green all-at-once, canary, linear, and rolling — moves a two-instance
endpoint from model version 1 to version 2 while four client threads invoke it. Every request
must succeed; the versions that answer show the traffic split at each step; bakes last exactly
as configured (the clock is advanced to one second short, then past); the old fleet is gone
after the termination wait. Real-time runs of each policy are in test_deployments_realtime.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.models import pack
from tests.fixtures.platform import RunningPlatform, running_platform
from tests.integration.rollouts import (
    ROLE,
    Load,
    Timeline,
    VersionedModel,
    aws,
    create_config,
    create_model,
    put_alarm,
    unpacked,
    versioned_model,
    wait_until,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> VersionedModel:
    return versioned_model(tmp_path_factory.mktemp("versioned"))


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    with running_platform(tmp_path / "home") as running:
        yield running


@pytest.fixture
def sagemaker(platform: RunningPlatform) -> Any:
    return aws(platform.url, "sagemaker")


def wait_in_service(sagemaker: Any, name: str, timeout: float = 90) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        described: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)
        return described if described["EndpointStatus"] == "InService" else None

    result: dict[str, Any] = wait_until(done, timeout, f"endpoint {name} InService")
    return result


@pytest.fixture
def endpoint(sagemaker: Any, model: VersionedModel) -> str:
    return v1_endpoint(sagemaker, model)


def v1_endpoint(sagemaker: Any, model: VersionedModel) -> str:
    """Endpoint ``e`` on config ``v1`` (two instances of version 1); configs ``v2`` ready."""
    create_model(sagemaker, model, "m1", MODEL_VERSION="1")
    create_model(sagemaker, model, "m2", MODEL_VERSION="2")
    create_config(sagemaker, "v1", "m1")
    create_config(sagemaker, "v2", "m2")
    sagemaker.create_endpoint(EndpointName="e", EndpointConfigName="v1")
    wait_in_service(sagemaker, "e")
    return "e"


def deployment(platform: RunningPlatform, name: str = "e") -> dict[str, Any] | None:
    with platform.client() as client:
        response = client.get(f"/api/endpoints/{name}/deployment")
    return response.json() if response.status_code == 200 else None


def wait_phase(
    platform: RunningPlatform, phase: str, step: int, timeout: float = 60
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        d = deployment(platform)
        return d if d is not None and (d["Phase"], d["Step"]) == (phase, step) else None

    result: dict[str, Any] = wait_until(reached, timeout, f"{phase} of step {step + 1}")
    return result


def share_of_v2(load: Load, count: int = 1000) -> float:
    """The fraction of the next ``count`` successful answers given by version 2.

    The first answer of each load worker is left out: it may have been routed before the weights
    being measured took effect."""
    fresh = load.wait_for(count + load.workers, load.mark())[load.workers :]
    answers = [o for o in fresh if o.status == 200]
    return sum(o.version == "2" for o in answers) / len(answers)


def settled_share_of_v2(load: Load, count: int = 1000) -> float:
    """``share_of_v2`` once the router has the new weights: the deployment's state is stored a
    moment before the routing table changes, so first wait for 200 answers in a row from
    version 2 (at most 10 s), then measure ``count`` more."""
    deadline = time.monotonic() + 10
    while share_of_v2(load, 200) != 1.0 and time.monotonic() < deadline:
        pass
    return share_of_v2(load, count)


def generations(platform: RunningPlatform, name: str = "e") -> dict[int, int]:
    with platform.client() as client:
        instances = client.get(f"/api/endpoints/{name}/instances").json()["Instances"]
    counts: dict[int, int] = {}
    for instance in instances:
        counts[instance["Generation"]] = counts.get(instance["Generation"], 0) + 1
    return counts


def body(model: VersionedModel) -> bytes:
    return json.dumps(model.rows).encode()


@contextmanager
def watcher(url: str, name: str) -> Iterator[subprocess.Popen[str]]:
    """``shipway endpoints watch`` in the background; killed if the test fails before it ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "shipway", "--url", url, "endpoints", "watch", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        for stream in (process.stdout, process.stderr):
            assert stream is not None
            stream.close()
        process.wait()


def test_canary_moves_traffic_in_two_steps_with_bakes_then_removes_the_old_fleet(
    platform: RunningPlatform, sagemaker: Any, endpoint: str, model: VersionedModel
) -> None:
    with ExitStack() as stack:  # the watcher is killed if the test fails before it ends
        with Load(platform.url, endpoint, body(model)) as load:
            load.wait_for(50, 0)
            sagemaker.update_endpoint(
                EndpointName=endpoint,
                EndpointConfigName="v2",
                DeploymentConfig={
                    "BlueGreenUpdatePolicy": {
                        "TrafficRoutingConfiguration": {
                            "Type": "CANARY",
                            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                            "WaitIntervalInSeconds": 300,
                        },
                        "TerminationWaitInSeconds": 120,
                        "MaximumExecutionTimeoutInSeconds": 1800,
                    }
                },
            )
            described = sagemaker.describe_endpoint(EndpointName=endpoint)
            assert described["EndpointStatus"] == "Updating"
            assert described["PendingDeploymentSummary"]["EndpointConfigName"] == "v2"

            wait_phase(platform, "Baking", 0)
            described = sagemaker.describe_endpoint(EndpointName=endpoint)
            pending = described["PendingDeploymentSummary"]["ProductionVariants"][0]
            assert pending["VariantStatus"][0]["Status"] == "Baking"
            assert pending["CurrentWeight"] == pytest.approx(0.25)
            assert described["ProductionVariants"][0]["CurrentWeight"] == pytest.approx(0.75)
            assert share_of_v2(load) == pytest.approx(0.25, abs=0.05)
            shown = shipway(platform, "endpoints", "describe", endpoint)
            assert shown.returncode == 0, shown.stderr
            assert "Deploying v2" in shown.stdout
            assert "Baking: 25% of traffic on the new fleet (step 1 of 2)" in " ".join(
                shown.stdout.split()
            )

            watching = stack.enter_context(watcher(platform.url, "e"))

            platform.clock.advance(299)
            load.wait_for(50, load.mark())
            assert deployment(platform)["Phase"] == "Baking"  # type: ignore[index]
            platform.clock.advance(1)
            wait_phase(platform, "Baking", 1)
            assert settled_share_of_v2(load) == 1.0

            platform.clock.advance(300)
            wait_phase(platform, "TerminationWait", 1)
            assert generations(platform) == {1: 2, 2: 2}  # the old fleet waits, idle
            described = sagemaker.describe_endpoint(EndpointName=endpoint)
            assert described["ProductionVariants"][0]["VariantStatus"][0]["Status"] == "Deleting"
            platform.clock.advance(120)
            described = wait_in_service(sagemaker, endpoint)
            wait_until(lambda: generations(platform) == {2: 2}, 30, "the old fleet to go")
            assert share_of_v2(load, 100) == 1.0

        assert load.failures() == []
        assert described["EndpointConfigName"] == "v2"
        assert "PendingDeploymentSummary" not in described
        watched, live = watching.communicate(timeout=30)
        assert watching.returncode == 0, live
        assert "Deployed: endpoint e is InService on v2." in watched
        assert "Updating to v2 — blue/green, canary 25%" in live  # the live view, on stderr
        assert (
            described["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"]
            == 120
        )


def test_linear_moves_a_quarter_of_the_traffic_per_step(
    platform: RunningPlatform, sagemaker: Any, endpoint: str, model: VersionedModel
) -> None:
    with Load(platform.url, endpoint, body(model)) as load:
        sagemaker.update_endpoint(
            EndpointName=endpoint,
            EndpointConfigName="v2",
            DeploymentConfig={
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "LINEAR",
                        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                        "WaitIntervalInSeconds": 60,
                    }
                }
            },
        )
        for step, share in enumerate([0.25, 0.5, 0.75, 1.0]):
            wait_phase(platform, "Baking", step)
            assert share_of_v2(load) == pytest.approx(share, abs=0.05)
            platform.clock.advance(59)
            assert deployment(platform)["Step"] == step  # type: ignore[index]
            platform.clock.advance(1)
        wait_in_service(sagemaker, endpoint)
        wait_until(lambda: generations(platform) == {2: 2}, 30, "the old fleet to go")
    assert load.failures() == []


def test_all_at_once_is_the_default_and_may_rename_variants(
    platform: RunningPlatform, sagemaker: Any, endpoint: str, model: VersionedModel
) -> None:
    sagemaker.create_endpoint_config(
        EndpointConfigName="renamed",
        ProductionVariants=[
            {"VariantName": "Blue", "ModelName": "m2", "InstanceType": "ml.t2.medium",
             "InitialInstanceCount": 1},
        ],
    )  # fmt: skip
    with Load(platform.url, endpoint, body(model)) as load:
        sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName="renamed")
        described = wait_in_service(sagemaker, endpoint)
        assert share_of_v2(load, 100) == 1.0
    assert load.failures() == []
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Blue"]
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    wait_until(lambda: generations(platform) == {2: 1}, 30, "the old fleet to go")


def test_rolling_replaces_one_instance_per_batch(
    platform: RunningPlatform, sagemaker: Any, endpoint: str, model: VersionedModel
) -> None:
    with Load(platform.url, endpoint, body(model)) as load:
        sagemaker.update_endpoint(
            EndpointName=endpoint,
            EndpointConfigName="v2",
            DeploymentConfig={
                "RollingUpdatePolicy": {
                    "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
                    "WaitIntervalInSeconds": 120,
                }
            },
        )
        wait_phase(platform, "Baking", 0)
        assert generations(platform) == {1: 2, 2: 1}
        assert share_of_v2(load) == pytest.approx(0.5, abs=0.05)
        platform.clock.advance(120)
        wait_phase(platform, "Baking", 1)
        wait_until(lambda: generations(platform) == {1: 1, 2: 2}, 30, "one old instance to go")
        assert settled_share_of_v2(load) == 1.0
        platform.clock.advance(120)
        described = wait_in_service(sagemaker, endpoint)
        wait_until(lambda: generations(platform) == {2: 2}, 30, "the old fleet to go")
    assert load.failures() == []
    assert described["EndpointConfigName"] == "v2"


def test_retain_all_variant_properties_keeps_the_live_instance_count(
    platform: RunningPlatform, sagemaker: Any, endpoint: str
) -> None:
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}],
    )
    wait_in_service(sagemaker, endpoint)
    sagemaker.update_endpoint(
        EndpointName=endpoint, EndpointConfigName="v2", RetainAllVariantProperties=True
    )
    described = wait_in_service(sagemaker, endpoint)
    assert described["ProductionVariants"][0]["DesiredInstanceCount"] == 1

    sagemaker.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName="v1",
        RetainAllVariantProperties=True,
        ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredInstanceCount"}],
    )
    described = wait_in_service(sagemaker, endpoint)
    assert described["EndpointConfigName"] == "v1"
    assert described["ProductionVariants"][0]["DesiredInstanceCount"] == 2


def test_a_new_fleet_that_cannot_start_is_rolled_back(
    platform: RunningPlatform, sagemaker: Any, endpoint: str, model: VersionedModel, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    (broken / "code").mkdir(parents=True)
    (broken / "code" / "inference.py").write_text(
        "def model_fn(model_dir):\n    raise RuntimeError('weights are corrupt')\n"
    )
    sagemaker.create_model(
        ModelName="broken",
        PrimaryContainer={
            "Image": "python",
            "ModelDataUrl": str(pack(broken, tmp_path / "broken.tar.gz")),
        },
        ExecutionRoleArn=ROLE,
    )
    create_config(sagemaker, "broken", "broken")
    with Load(platform.url, endpoint, body(model)) as load:
        sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName="broken")
        described = wait_in_service(sagemaker, endpoint)
        load.wait_for(20, load.mark())
    assert load.failures() == []
    assert described["EndpointConfigName"] == "v1"
    assert "The new fleet failed" in described["FailureReason"]
    assert "weights are corrupt" in described["FailureReason"]
    assert "PendingDeploymentSummary" not in described


CANARY = {
    "TrafficRoutingConfiguration": {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
        "WaitIntervalInSeconds": 300,
    }
}


@pytest.fixture(scope="module")
def untouched(
    tmp_path_factory: pytest.TempPathFactory, model: VersionedModel
) -> Iterator[tuple[RunningPlatform, Any]]:
    """One endpoint for the tests of refused updates, which must all leave it as it is."""
    with running_platform(tmp_path_factory.mktemp("untouched") / "home") as running:
        sagemaker = aws(running.url, "sagemaker")
        v1_endpoint(sagemaker, model)
        sagemaker.create_endpoint_config(
            EndpointConfigName="renamed",
            ProductionVariants=[
                {"VariantName": "Blue", "ModelName": "m2", "InstanceType": "ml.t2.medium",
                 "InitialInstanceCount": 2},
            ],
        )  # fmt: skip
        yield running, sagemaker


@pytest.mark.parametrize(
    ("config_name", "deployment_config", "message"),
    [
        pytest.param(
            "v2",
            {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
                "Type": "LINEAR", "WaitIntervalInSeconds": 60,
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 70}}}},
            "LinearStepSize of 70% is out of range", id="linear-step-too-big",
        ),
        pytest.param(
            "v2",
            {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
                "Type": "CANARY", "WaitIntervalInSeconds": 60,
                "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 2}}}},
            "CanarySize of 2 instances is 100%", id="canary-too-big",
        ),
        pytest.param(
            "v2",
            {"RollingUpdatePolicy": {"MaximumBatchSize": {"Type": "CAPACITY_PERCENT",
                                                           "Value": 90},
                                     "WaitIntervalInSeconds": 60}},
            "MaximumBatchSize of 90% is out of range", id="rolling-batch-too-big",
        ),
        pytest.param(
            "v2",
            {"BlueGreenUpdatePolicy": CANARY,
             "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "no-such-alarm"}]}},
            "alarm that does not exist: no-such-alarm", id="unknown-alarm",
        ),
        pytest.param(
            "v2",
            {"BlueGreenUpdatePolicy": {**CANARY, "MaximumExecutionTimeoutInSeconds": 600}},
            r"MaximumExecutionTimeoutInSeconds \(600\)", id="timeout-shorter-than-waits",
        ),
        pytest.param(
            "renamed", {"BlueGreenUpdatePolicy": CANARY},
            "must keep the same production variant names", id="renamed-under-guardrails",
        ),
        pytest.param(
            "v2",
            {"BlueGreenUpdatePolicy": CANARY,
             "RollingUpdatePolicy": {"MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
                                     "WaitIntervalInSeconds": 60}},
            "not both", id="two-policies",
        ),
        pytest.param("missing", None, "Could not find endpoint configuration",
                     id="unknown-config"),
    ],
)  # fmt: skip
def test_bad_deployments_are_validation_errors_and_leave_the_endpoint_alone(
    untouched: tuple[RunningPlatform, Any],
    config_name: str,
    deployment_config: dict[str, Any] | None,
    message: str,
) -> None:
    platform, sagemaker = untouched
    endpoint = "e"
    before = sagemaker.describe_endpoint(EndpointName=endpoint)
    extra = {"DeploymentConfig": deployment_config} if deployment_config else {}
    with pytest.raises(sagemaker.exceptions.ClientError) as raised:
        sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=config_name, **extra)
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert message in error["Message"] or __import__("re").search(message, error["Message"])
    after = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert after["EndpointStatus"] == "InService"
    assert after["EndpointConfigName"] == "v1"
    assert after["LastModifiedTime"] == before["LastModifiedTime"]
    assert deployment(platform) is None
    assert generations(platform) == {1: 2}


def test_a_second_update_while_one_is_in_progress_is_refused(
    platform: RunningPlatform, sagemaker: Any, endpoint: str
) -> None:
    sagemaker.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName="v2",
        DeploymentConfig={"BlueGreenUpdatePolicy": CANARY},
    )
    with pytest.raises(sagemaker.exceptions.ClientError) as raised:
        sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName="v1")
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "while it is Updating (a deployment is in progress)" in error["Message"]
    assert deployment(platform)["EndpointConfigName"] == "v2"  # type: ignore[index]


def shipway(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipway", "--url", platform.url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_the_cli_deploys_with_a_canary_and_shows_it_live(
    platform: RunningPlatform, sagemaker: Any, endpoint: str
) -> None:
    done = shipway(
        platform, "endpoints", "update", endpoint, "--config", "v2",
        "--canary", "50%", "--bake", "0s", "--termination-wait", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Deployed: endpoint e is InService on v2." in done.stdout
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    routing = described["LastDeploymentConfig"]["BlueGreenUpdatePolicy"][
        "TrafficRoutingConfiguration"
    ]
    assert routing == {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 0,
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--canary", "ten"], "--canary takes a share of capacity like 10%"),
        (["--canary", "10%", "--linear", "20%"], "choose one of --canary, --linear"),
        (["--bake", "5 minutes"], "--bake takes seconds, or 90s, 5m, 1h"),
        (["--linear", "70%"], "LinearStepSize of 70% is out of range"),
        (["--canary", "10%", "--alarm", "nope"], "alarm that does not exist: nope"),
    ],
)
def test_the_cli_explains_a_bad_update(
    untouched: tuple[RunningPlatform, Any], args: list[str], message: str
) -> None:
    platform, endpoint = untouched[0], "e"
    done = shipway(platform, "endpoints", "update", endpoint, "--config", "v2", *args)
    assert done.returncode != 0
    assert message in " ".join((done.stdout + done.stderr).split())
    assert deployment(platform) is None


@pytest.mark.parametrize(
    ("environment", "alarm"),
    [
        pytest.param({"MODEL_FAIL": "canary"}, ("Invocation5XXErrors", 1.0, {}), id="errors"),
        pytest.param(
            {"MODEL_SLOW_MS": "250"},
            ("ModelLatency", 200_000.0, {"Statistic": "Maximum"}),
            id="latency",
        ),
    ],
)
def test_an_alarm_during_the_canary_bake_rolls_everything_back(
    platform: RunningPlatform,
    sagemaker: Any,
    endpoint: str,
    model: VersionedModel,
    environment: dict[str, str],
    alarm: tuple[str, float, dict[str, Any]],
) -> None:
    create_model(sagemaker, model, "bad", MODEL_VERSION="3", **environment)
    create_config(sagemaker, "bad", "bad")
    cloudwatch = aws(platform.url, "cloudwatch")
    metric, threshold, fields = alarm
    put_alarm(cloudwatch, "e-guard", metric, threshold, **fields)
    with Load(platform.url, endpoint, body(model)) as load:
        sagemaker.update_endpoint(
            EndpointName=endpoint,
            EndpointConfigName="bad",
            DeploymentConfig={
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "CANARY",
                        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                        "WaitIntervalInSeconds": 600,
                    },
                },
                "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "e-guard"}]},
            },
        )
        wait_phase(platform, "Baking", 0)
        load.wait_for(200, load.mark())  # the canary serves its share, badly
        state = cloudwatch.describe_alarms(AlarmNames=["e-guard"])["MetricAlarms"][0]
        assert state["StateValue"] == "OK"  # the period with the errors has not ended yet

        platform.clock.advance(10)  # ... now it has: the alarm fires at its next evaluation
        advanced = time.monotonic()
        wait_until(lambda: deployment(platform) is None, 10, "the rollback")
        rolled_back = time.monotonic()
        time.sleep(0.5)  # requests already on the slow canary finish
        after = load.mark()
        load.wait_for(200, after)

    alarm_state = cloudwatch.describe_alarms(AlarmNames=["e-guard"])["MetricAlarms"][0]
    assert alarm_state["StateValue"] == "ALARM"
    # one evaluation interval (1 s) plus one second, from the moment the alarm could fire
    assert rolled_back - advanced <= 2.0
    assert {o.version for o in load.since(after)} == {"1"}
    # only requests the canary served failed (or were slow), and none since the rollback
    assert load.failures(after) == []
    if "MODEL_FAIL" in environment:
        assert load.failures()
        assert all("model version 3 is broken" in f.error for f in load.failures())
    else:
        assert load.failures() == []
    described = wait_in_service(sagemaker, endpoint)
    assert described["EndpointConfigName"] == "v1"
    assert "Alarm e-guard went into ALARM state" in described["FailureReason"]
    assert "PendingDeploymentSummary" not in described
    wait_until(lambda: generations(platform) == {1: 2}, 30, "the canary fleet to go")
    history = cloudwatch.describe_alarm_history(AlarmName="e-guard", HistoryItemType="StateUpdate")
    assert any("to ALARM" in h["HistorySummary"] for h in history["AlarmHistoryItems"])


def roll_to_the_last_batch(platform: RunningPlatform, sagemaker: Any, cloudwatch: Any) -> None:
    """Endpoint e from v1 to v2, rolling one instance at a time guarded by the alarm ``drill``,
    up to the bake of the last batch: one old instance left, all traffic on two new ones."""
    put_alarm(cloudwatch, "drill", "Invocation5XXErrors", 1.0)
    sagemaker.update_endpoint(
        EndpointName="e",
        EndpointConfigName="v2",
        DeploymentConfig={
            "RollingUpdatePolicy": {
                "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
                "WaitIntervalInSeconds": 100,
                "RollbackMaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "drill"}]},
        },
    )
    wait_phase(platform, "Baking", 0)
    platform.clock.advance(100)
    wait_phase(platform, "Baking", 1)
    wait_until(lambda: generations(platform) == {1: 1, 2: 2}, 30, "one old instance left")


def test_a_rollback_drill_with_set_alarm_state_and_a_rollback_that_fails(
    platform: RunningPlatform, sagemaker: Any, model: VersionedModel, tmp_path: Path
) -> None:
    """SetAlarmState ALARM during a rolling bake starts the rollback; when the old model can no
    longer load, the endpoint is UpdateRollbackFailed and keeps serving from what is up."""
    create_model(sagemaker, model, "m1", MODEL_VERSION="1", MODEL_LOAD_GATE="gate")
    create_model(sagemaker, model, "m2", MODEL_VERSION="2")
    create_config(sagemaker, "v1", "m1")
    create_config(sagemaker, "v2", "m2")
    sagemaker.create_endpoint(EndpointName="e", EndpointConfigName="v1")
    wait_in_service(sagemaker, "e")
    cloudwatch = aws(platform.url, "cloudwatch")
    with Load(platform.url, "e", body(model)) as load:
        roll_to_the_last_batch(platform, sagemaker, cloudwatch)
        gate = unpacked(platform.home, model) / "gate"
        gate.touch()  # the old model can no longer load
        cloudwatch.set_alarm_state(AlarmName="drill", StateValue="ALARM", StateReason="drill")

        def failed() -> dict[str, Any] | None:
            described: dict[str, Any] = sagemaker.describe_endpoint(EndpointName="e")
            return described if described["EndpointStatus"] == "UpdateRollbackFailed" else None

        described = wait_until(failed, 30, "UpdateRollbackFailed")
        after = load.mark()
        load.wait_for(200, after)

    assert load.failures() == []
    assert {o.version for o in load.since(after)} == {"1", "2"}  # the mixed fleet serves
    assert "Alarm drill went into ALARM state" in described["FailureReason"]
    assert "The rollback failed too" in described["FailureReason"]
    assert "cannot load" in described["FailureReason"]
    with pytest.raises(sagemaker.exceptions.ClientError, match="Delete it and create it again"):
        sagemaker.update_endpoint(EndpointName="e", EndpointConfigName="v1")
    sagemaker.delete_endpoint(EndpointName="e")
    sagemaker.get_waiter("endpoint_deleted").wait(
        EndpointName="e", WaiterConfig={"Delay": 0.5, "MaxAttempts": 60}
    )


def test_a_rolling_deployment_rolls_back_batch_by_batch(
    platform: RunningPlatform, sagemaker: Any, endpoint: str, model: VersionedModel
) -> None:
    cloudwatch = aws(platform.url, "cloudwatch")
    with Load(platform.url, endpoint, body(model)) as load:
        roll_to_the_last_batch(platform, sagemaker, cloudwatch)
        with Timeline(platform.url, endpoint) as timeline:
            cloudwatch.set_alarm_state(AlarmName="drill", StateValue="ALARM", StateReason="drill")
        described = wait_in_service(sagemaker, endpoint)
        wait_until(lambda: generations(platform) == {1: 2}, 30, "the new fleet to go")
        after = load.mark()
        load.wait_for(200, after)

    assert load.failures() == []
    assert {o.version for o in load.since(after)} == {"1"}
    # one old instance back at a time: traffic went 100 % -> 50 % -> 0 % on the new fleet
    assert [round(m.share, 2) for m in timeline.marks if m.phase == "RollingBack"] == [0.5]
    assert described["EndpointConfigName"] == "v1"
    assert "Alarm drill went into ALARM state" in described["FailureReason"]
