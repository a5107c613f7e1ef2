"""The deployment live view, one frame at a time, from the deployment view's JSON."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from shipway.cli.progress import outcome, render_deployment
from shipway.domain.endpoint import DescribeEndpointOutput
from shipway.domain.shape import parse


def frame(**changes: Any) -> str:
    view: dict[str, Any] = {
        "EndpointStatus": "Updating",
        "EndpointConfigName": "v2",
        "DeploymentConfig": {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                    "WaitIntervalInSeconds": 300,
                },
                "TerminationWaitInSeconds": 120,
            }
        },
        "Steps": [
            {"Share": 0.1, "NewCounts": {"AllTraffic": 2}, "OldCounts": {"AllTraffic": 2}},
            {"Share": 1.0, "NewCounts": {"AllTraffic": 2}, "OldCounts": {"AllTraffic": 2}},
        ],
        "Step": 0,
        "Phase": "Baking",
        "PhaseStarted": "2026-11-21T12:00:00+00:00",
        "Now": "2026-11-21T12:01:23+00:00",
        "Share": 0.1,
        "BakeSeconds": 300,
        "TerminationWaitSeconds": 120,
        "Alarms": [{"AlarmName": "e-5xx", "StateValue": "OK"}],
    }
    view.update(changes)
    console = Console(width=100, record=True, color_system=None)
    console.print(render_deployment(view))
    return console.export_text()


def test_a_bake_in_progress_shows_its_clock_the_share_and_the_alarms() -> None:
    text = frame()
    assert "Updating to v2 — blue/green, canary 10%" in text
    assert "1/2   10%" in text
    assert "baking 1:23 / 5:00" in text
    assert "10%" in text.splitlines()[-2]  # the traffic bar
    assert "alarms: e-5xx OK" in text


def test_the_termination_wait_and_a_rollback_say_what_happens() -> None:
    waiting = frame(Phase="TerminationWait", Step=1, Share=1.0)
    assert "old fleet kept for a fast rollback: 1:23 / 2:00" in waiting
    assert waiting.count("done") == 2
    rolling_back = frame(
        Phase="RollingBack", EndpointStatus="RollingBack", Reason="Alarm e-5xx went into ALARM"
    )
    assert "rolling back: Alarm e-5xx went into ALARM" in rolling_back


def test_the_outcome_line() -> None:
    described = {
        "EndpointName": "e",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e",
        "EndpointConfigName": "v1",
        "EndpointStatus": "InService",
        "CreationTime": 0,
        "LastModifiedTime": 0,
    }
    assert outcome(parse(DescribeEndpointOutput, described)) == (
        "[green]Deployed[/green]: endpoint e is InService on v1.",
        True,
    )
    message, ok = outcome(
        parse(DescribeEndpointOutput, {**described, "FailureReason": "Alarm x fired."})
    )
    assert not ok
    assert "rolled back" in message
    assert "Alarm x fired." in message
