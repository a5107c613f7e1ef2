"""``shipway async`` and ``invoke --async`` without a server: how outcomes, queues and
durations read, and the bad uses of ``invoke --async`` refused before anything is sent (the
URL points where nothing listens, so a request that went out would exit 1, not 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipway.cli.async_invocations import duration, print_async_endpoint, print_outcome
from shipway.cli.main import app
from shipway.domain.async_inference import AsyncInferenceConfig, AsyncInvocation, QueueSummary
from shipway.domain.shape import parse

NOWHERE = "http://127.0.0.1:9"
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def invocation(**changes: Any) -> AsyncInvocation:
    fields: dict[str, Any] = {
        "RequestId": "r1",
        "InferenceId": "scores-7",
        "EndpointName": "churn",
        "InputLocation": "s3://in/rows.json",
        "OutputLocation": "s3://out/scores-7.out",
        "FailureLocation": "s3://failures/scores-7-error.out",
        "EnqueuedTime": T0,
        "StartTime": T0 + timedelta(seconds=2.5),
        "EndTime": T0 + timedelta(seconds=75),
        "Attempts": 1,
        "Status": "Completed",
    }
    fields.update(changes)
    return AsyncInvocation.model_validate(fields)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-1.0, "0.0 s"), (0.04, "0.0 s"), (9.94, "9.9 s"), (10.0, "10 s"), (59.9, "59 s"),
     (60, "1 min 0 s"), (3599, "59 min 59 s"), (3600, "1 h 0 min"), (7_380, "2 h 3 min")],
)  # fmt: skip
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_a_completed_request_says_where_its_answer_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert print_outcome(invocation()) is True
    assert capsys.readouterr().out == (
        "Completed: request scores-7 answered in 1 min 15 s (2.5 s queued)\n"
        "The answer is at s3://out/scores-7.out\n"
    )


def test_a_failed_request_says_why_and_where(capsys: pytest.CaptureFixture[str]) -> None:
    failed = invocation(Status="Failed", Attempts=2, FailureReason="Inference timed out [soon].")
    assert print_outcome(failed) is False
    assert capsys.readouterr().out == (
        "Failed: request scores-7 in 1 min 15 s (2.5 s queued, 2 attempts): "
        "Inference timed out [soon].\n"
        "The failure is at s3://failures/scores-7-error.out\n"
    )
    expired = invocation(Status="Failed", StartTime=None, FailureReason=None)
    assert print_outcome(expired) is False
    assert "Failed: request scores-7 in 1 min 15 s: no failure reason was recorded" in (
        capsys.readouterr().out
    )


def test_an_async_endpoint_shows_its_queue_paths_and_topics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = parse(
        AsyncInferenceConfig,
        {
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
            "OutputConfig": {
                "S3OutputPath": "s3://out",
                "NotificationConfig": {
                    "SuccessTopic": "arn:aws:sns:us-east-1:123456789012:done",
                    "ErrorTopic": "arn:aws:sns:us-east-1:123456789012:failed",
                    "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"],
                },
            },
        },
    )
    queue = QueueSummary(
        endpoint_name="churn",
        approximate_backlog_size=1,
        in_progress=0,
        approximate_age_of_oldest_request=125.0,
    )
    print_async_endpoint(config, queue)
    assert capsys.readouterr().out == (
        "Asynchronous inference\n"
        "  Backlog        1 request, 0 in progress\n"
        "  Oldest         queued 2 min 5 s ago\n"
        "  Output path    s3://out\n"
        "  Failure path   s3://out\n"  # failures go with the answers without S3FailurePath
        "  Success topic  arn:aws:sns:us-east-1:123456789012:done\n"
        "  Error topic    arn:aws:sns:us-east-1:123456789012:failed\n"
        "  Answer sent to SUCCESS_NOTIFICATION_TOPIC\n"
        "  Concurrency    4 requests per instance\n"
    )
    print_async_endpoint(config, "ResourceNotFound: gone")
    assert "  Backlog        unknown: ResourceNotFound: gone\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--body", "{}", "--wait"], "give --async with it"),
        (["--body", "{}", "--inference-id", "x"], "give --async with it"),
        (["--async", "--body", "{}", "--target-variant", "Blue"], "by their weights"),
        (["--async", "--body", "{}", "--input-location", "s3://in/x"], "not both"),
        (["--async", "--body", "x" * 128_001], "takes at most 128,000 inline"),
        (["--async", "--body", "not json nor csv"], "--content-type"),
    ],
)
def test_bad_uses_of_async_are_refused_before_sending(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["--url", NOWHERE, "invoke", "e", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_an_inline_body_of_the_limit_is_sent(tmp_path: Path) -> None:
    body = tmp_path / "body.csv"
    body.write_text("1\n" * 64_000)  # 128,000 bytes exactly
    result = CliRunner().invoke(
        app, ["--url", NOWHERE, "invoke", "e", "--async", "--file", str(body)]
    )
    assert result.exit_code == 1, result.output
    assert "cannot reach Shipway at http://127.0.0.1:9" in result.stderr
