"""``shipway scaling`` against a real ``shipway server`` with a real scikit-learn endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fixtures.models import Trained, train_sklearn
from tests.fixtures.server import ShipwayServer, start_server
from tests.integration.deploy import deploy
from tests.integration.test_cli import error, shipway


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    model: Trained = train_sklearn(tmp_path_factory.mktemp("model") / "breast-cancer")
    running = start_server(
        tmp_path_factory.mktemp("cli-scaling") / "home",
        {"SHIPWAY_AUTOSCALING_INTERVAL_SECONDS": "1"},
    )
    try:
        deploy(running, "orders", str(model.folder), model.image)
        deploy(
            running,
            "canary",
            str(model.folder),
            model.image,
            variants=[("Blue", 1, 1.0), ("Green", 1, 1.0)],
        )
        yield running
    finally:
        running.stop()
    assert "Traceback" not in running.log(), running.log()


def test_register_policies_show_activities_and_deregister(server: ShipwayServer) -> None:
    url = server.url
    first = shipway(url, "scaling", "register", "orders", "--max", "3", code=1)
    assert "MinCapacity must be given" in error(first)
    unregistered = shipway(url, "scaling", "policy", "orders", "busy", "--target-value", "70",
                           code=1)  # fmt: skip
    assert "ObjectNotFoundException: No scalable target registered" in error(unregistered)

    registered = shipway(url, "scaling", "register", "orders", "--min", "1", "--max", "3")
    assert "Variant AllTraffic of orders scales between 1 and 3 (instances)" in registered.stdout
    bad = shipway(url, "scaling", "register", "orders", "--min", "4", code=1)
    assert "MinCapacity (4) must be less than or equal to MaxCapacity (3)" in error(bad)

    invocations = shipway(url, "scaling", "policy", "orders", "busy", "--target-value", "70",
                          "--scale-in-cooldown", "120")  # fmt: skip
    assert "Policy busy holds SageMakerVariantInvocationsPerInstance at 70" in invocations.stdout
    assert "AlarmHigh" in invocations.stdout
    cpu = shipway(url, "scaling", "policy", "orders", "cpu", "--target-value", "50",
                  "--metric", "cpu", "--disable-scale-in")  # fmt: skip
    assert "/aws/sagemaker/Endpoints CPUUtilization (Average)" in cpu.stdout
    backlog = shipway(url, "scaling", "policy", "orders", "backlog", "--target-value", "5",
                      "--metric", "AWS/SageMaker:ApproximateBacklogSizePerInstance",
                      "--statistic", "Maximum")  # fmt: skip
    assert "AWS/SageMaker ApproximateBacklogSizePerInstance (Maximum)" in backlog.stdout
    wrong = shipway(url, "scaling", "policy", "orders", "x", "--target-value", "1",
                    "--metric", "bogus", code=2)  # fmt: skip
    assert "'bogus' is not one of invocations" in wrong.stderr
    mismatched = shipway(url, "scaling", "policy", "orders", "x", "--target-value", "1",
                         "--metric", "provisioned", code=1)  # fmt: skip
    assert "is for sagemaker:variant:DesiredProvisionedConcurrency" in error(mismatched)

    shown = shipway(url, "scaling", "show", "orders")
    for text in ("AllTraffic", "busy: target tracking SageMakerVariantInvocationsPerInstance at 70",
                 "INSUFFICIENT_DATA TargetTracking-endpoint/orders/variant/AllTraffic-AlarmHigh-",
                 "(cooldowns: out 300 s, in 120 s)", "in disabled"):  # fmt: skip
        assert text in shown.stdout, shown.stdout
    document = json.loads(shipway(url, "scaling", "show", "orders", "--json").stdout)
    [variant] = document["Variants"]
    assert variant["ScalableTarget"]["ResourceId"] == "endpoint/orders/variant/AllTraffic"
    assert [p["PolicyName"] for p in variant["ScalingPolicies"]] == ["busy", "cpu", "backlog"]
    assert len(variant["Alarms"]) == 5  # busy and backlog: high and low; cpu: high only
    assert variant["DesiredCapacity"] == 1

    # raising --min scales out: an activity tells it
    shipway(url, "scaling", "register", "orders", "--min", "2", "--suspend-in")
    listed = shipway(url, "scaling", "activities", "orders")
    assert "Successful" in listed.stdout
    assert "minimum capacity was set to 2" in listed.stdout
    activities = json.loads(shipway(url, "scaling", "activities", "orders", "--json").stdout)
    assert (
        activities["ScalingActivities"][0]["Description"] == "Setting desired instance count to 2."
    )
    suspended = json.loads(shipway(url, "scaling", "show", "orders", "--json").stdout)
    target = suspended["Variants"][0]["ScalableTarget"]
    assert target["SuspendedState"] == {
        "DynamicScalingInSuspended": True,
        "DynamicScalingOutSuspended": False,
        "ScheduledScalingSuspended": False,
    }
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 3)

    assert (
        "Deleted scaling policy cpu"
        in shipway(url, "scaling", "delete-policy", "orders", "cpu").stdout
    )
    missing = shipway(url, "scaling", "delete-policy", "orders", "cpu", code=1)
    assert "No scaling policy found" in error(missing)
    assert "deregistered" in shipway(url, "scaling", "deregister", "orders").stdout
    assert "No variant of orders is registered" in shipway(url, "scaling", "show", "orders").stdout
    gone = shipway(url, "scaling", "deregister", "orders", code=1)
    assert "ObjectNotFoundException" in error(gone)


def test_several_variants_need_one_named(server: ShipwayServer) -> None:
    url = server.url
    ambiguous = shipway(url, "scaling", "register", "canary", "--min", "1", "--max", "2", code=1)
    assert "endpoint canary has 2 variants (Blue, Green): give --variant" in error(ambiguous)
    shipway(url, "scaling", "register", "canary", "--variant", "Green", "--min", "1", "--max", "2")
    unknown = shipway(url, "scaling", "register", "canary", "--variant", "Red", "--min", "1",
                      "--max", "2", code=1)  # fmt: skip
    assert "Variant Red of ResourceId endpoint/canary/variant/Red" in error(unknown)
    shown = shipway(url, "scaling", "show", "canary").stdout
    assert "Green" in shown
    assert "Blue" not in shown
    assert "No scaling activities." in shipway(url, "scaling", "activities", "canary").stdout
    nowhere = shipway(url, "scaling", "show", "nope", code=1)
    assert "ResourceNotFound" in error(nowhere)


def test_watch_shows_instance_counts_and_activities_as_they_change(server: ShipwayServer) -> None:
    """A capacity change made during the watch (RegisterScalableTarget's clamp, an activity)
    shows as lines: the variant serving 2, and the activity."""
    import threading
    import time

    from tests.integration.rollouts import aws

    autoscaling = aws(server.url, "application-autoscaling")
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/canary/variant/Blue",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }

    def scale() -> None:
        time.sleep(1.5)
        autoscaling.register_scalable_target(**target, MinCapacity=2, MaxCapacity=3)

    changer = threading.Thread(target=scale)
    changer.start()
    try:
        watched = shipway(server.url, "scaling", "watch", "canary", "--seconds", "8",
                          "--every", "0.2")  # fmt: skip
    finally:
        changer.join()
        autoscaling.deregister_scalable_target(**target)
    lines = watched.stdout.splitlines()
    assert (
        "InService  Blue: 1/1 instances in service  Green: 1/1 instances in service" in (lines[0])
    ), lines
    # (Blue at 1/2 may come and go between two looks: a forked instance starts in ~0.1 s)
    assert any("Blue: 2/2 instances in service" in line for line in lines), lines
    assert any("Setting desired instance count to 2." in line for line in lines), lines
