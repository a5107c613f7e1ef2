"""Each deployment policy once more in real time, on a real ``shipway server`` process: bakes of
a few seconds measured by the wall clock, the split measured inside each bake, no failed
request; and a server killed with SIGKILL in the middle of a linear deployment."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.server import ShipwayServer, start_server
from tests.integration.rollouts import (
    Load,
    Timeline,
    VersionedModel,
    aws,
    create_config,
    create_model,
    put_alarm,
    versioned_model,
    wait_until,
)

pytestmark = pytest.mark.slow

BAKE = 4
"""Seconds: long enough for about a thousand answers inside each bake, so the measured split
is within 5 % of the policy's with a margin of three standard deviations."""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> VersionedModel:
    return versioned_model(tmp_path_factory.mktemp("versioned"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ShipwayServer]:
    running = start_server(tmp_path / "home", {"SHIPWAY_RECONCILE_INTERVAL_SECONDS": "0.2"})
    yield running
    running.stop()


def deploy_v1(server: ShipwayServer, model: VersionedModel, count: int = 2) -> Any:
    sagemaker = aws(server.url, "sagemaker")
    for version in ("1", "2"):
        create_model(sagemaker, model, f"m{version}", MODEL_VERSION=version)
        create_config(sagemaker, f"v{version}", f"m{version}", count)
    sagemaker.create_endpoint(EndpointName="e", EndpointConfigName="v1")
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="e", WaiterConfig={"Delay": 1, "MaxAttempts": 90}
    )
    return sagemaker


def blue_green(routing: dict[str, Any], termination: int = 0) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {**routing, "WaitIntervalInSeconds": BAKE},
            "TerminationWaitInSeconds": termination,
        }
    }


ROLLING = {
    "RollingUpdatePolicy": {
        "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
        "WaitIntervalInSeconds": BAKE,
    }
}


@pytest.mark.parametrize(
    ("deployment_config", "shares", "termination"),
    [
        pytest.param(blue_green({"Type": "ALL_AT_ONCE"}, 2), [1.0], 2, id="all-at-once"),
        pytest.param(
            blue_green({"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT",
                                                         "Value": 20}}, 2),
            [0.2, 1.0], 2, id="canary",
        ),
        pytest.param(
            blue_green({"Type": "LINEAR", "LinearStepSize": {"Type": "CAPACITY_PERCENT",
                                                             "Value": 50}}),
            [0.5, 1.0], 0, id="linear",
        ),
        pytest.param(ROLLING, [0.5, 1.0], 0, id="rolling"),
    ],
)  # fmt: skip
def test_each_policy_in_real_time(
    server: ShipwayServer,
    model: VersionedModel,
    deployment_config: dict[str, Any],
    shares: list[float],
    termination: int,
) -> None:
    sagemaker = deploy_v1(server, model)
    with Load(server.url, "e", json.dumps(model.rows).encode()) as load:
        load.wait_for(50, 0)
        with Timeline(server.url, "e") as timeline:
            sagemaker.update_endpoint(
                EndpointName="e", EndpointConfigName="v2", DeploymentConfig=deployment_config
            )
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName="e", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        gone = time.monotonic()
        load.wait_for(50, load.mark())

    assert load.failures() == []
    bakes = timeline.windows("Baking")
    assert [round(mark.share, 6) for mark, _ in bakes] == shares
    for mark, end in bakes:
        assert end - mark.at == pytest.approx(BAKE, abs=0.7)
        inside = [o for o in load.outcomes if mark.at + 0.3 < o.at < end - 0.3]
        assert len(inside) > 100
        assert sum(o.version == "2" for o in inside) / len(inside) == pytest.approx(
            mark.share, abs=0.05
        )
    waits = timeline.windows("TerminationWait")
    if termination:
        (mark, end), *_ = waits
        assert end - mark.at == pytest.approx(termination, abs=0.7)
    else:
        assert waits == []
    with server.client() as client:
        instances = client.get("/api/endpoints/e/instances").json()["Instances"]
    assert {i["Generation"] for i in instances} == {2}
    assert timeline.ended is not None
    assert gone >= timeline.ended - 0.5
    described = sagemaker.describe_endpoint(EndpointName="e")
    assert described["EndpointConfigName"] == "v2"


def test_kill_9_in_the_middle_of_a_linear_deployment_then_it_finishes(
    server: ShipwayServer, model: VersionedModel
) -> None:
    kill_9_in_the_middle_of_a_linear_deployment(server, model)


@pytest.mark.postgres
def test_on_postgresql_kill_9_in_the_middle_of_a_linear_deployment(
    tmp_path: Path, postgres_url: str, model: VersionedModel
) -> None:
    """The scale-out store: the deployment's state survives in PostgreSQL."""
    env = {"SHIPWAY_DATABASE_URL": postgres_url, "SHIPWAY_RECONCILE_INTERVAL_SECONDS": "0.2"}
    server = start_server(tmp_path / "home", env)
    try:
        kill_9_in_the_middle_of_a_linear_deployment(server, model)
        assert not (tmp_path / "home" / "shipway.db").exists()
    finally:
        server.stop()


def kill_9_in_the_middle_of_a_linear_deployment(
    server: ShipwayServer, model: VersionedModel
) -> None:
    """SIGKILL during the second of four linear steps; after a restart the deployment resumes
    and finishes, and from the moment the endpoint serves again no request fails."""
    sagemaker = deploy_v1(server, model)
    sagemaker.update_endpoint(
        EndpointName="e",
        EndpointConfigName="v2",
        DeploymentConfig=blue_green(
            {"Type": "LINEAR", "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25}}
        ),
    )

    def baking() -> bool:
        response = httpx.get(f"{server.url}/api/endpoints/e/deployment")
        return response.status_code == 200 and response.json()["Step"] == 1

    wait_until(baking, 60, "the second linear step")
    server.stop(signal.SIGKILL)
    server.start()

    # from the moment it serves again, every request succeeds: none reaches a stopped instance
    body = json.dumps(model.rows).encode()
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def serving() -> bool:
            response = client.post("/endpoints/e/invocations", content=body,
                                   headers={"Content-Type": "application/json"})  # fmt: skip
            assert "stopped while handling" not in response.text
            return response.status_code == 200

        wait_until(serving, 60, "the endpoint to serve again")
    with Load(server.url, "e", body) as load:
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName="e", WaiterConfig={"Delay": 1, "MaxAttempts": 90}
        )
        load.wait_for(50, load.mark())
    assert load.failures() == []
    described = sagemaker.describe_endpoint(EndpointName="e")
    assert described["EndpointConfigName"] == "v2"
    assert {o.version for o in load.outcomes[-50:]} == {"2"}


def test_auto_rollback_in_real_time(server: ShipwayServer, model: VersionedModel) -> None:
    """The guardrails script as users run it: a CloudWatch alarm, then UpdateEndpoint with
    AutoRollbackConfiguration; the new model fails, the alarm fires, traffic goes back."""
    sagemaker = deploy_v1(server, model)
    create_model(sagemaker, model, "bad", MODEL_VERSION="3", MODEL_FAIL="on purpose")
    create_config(sagemaker, "bad", "bad")
    cloudwatch = aws(server.url, "cloudwatch")
    period = 10
    put_alarm(cloudwatch, "e-5xx", "Invocation5XXErrors", 1, period=period)
    with Load(server.url, "e", json.dumps(model.rows).encode()) as load:
        load.wait_for(50, 0)
        sagemaker.update_endpoint(
            EndpointName="e",
            EndpointConfigName="bad",
            DeploymentConfig={
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "CANARY",
                        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                        "WaitIntervalInSeconds": 60,  # longer than the alarm's period
                    }
                },
                "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "e-5xx"}]},
            },
        )
        wait_until(
            lambda: sagemaker.describe_endpoint(EndpointName="e")["EndpointStatus"] == "InService",
            60,
            "the rollback",
        )
        ended = time.monotonic()
        time.sleep(0.5)
        after = load.mark()
        load.wait_for(100, after)

    failures = load.failures()
    assert failures
    assert all("model version 3 is broken" in f.error for f in failures)
    # all traffic back on the old fleet within one alarm period plus one second of the
    # first error the canary served
    assert failures[-1].at - failures[0].at <= period + 1
    assert ended - failures[0].at <= period + 1.5
    assert load.failures(after) == []
    assert {o.version for o in load.since(after)} == {"1"}
    described = sagemaker.describe_endpoint(EndpointName="e")
    assert described["EndpointConfigName"] == "v1"
    assert "Alarm e-5xx went into ALARM state" in described["FailureReason"]
