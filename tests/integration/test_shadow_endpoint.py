"""Shadow variants end to end: an endpoint configuration with ShadowProductionVariants, created
through boto3, serving 1,000 requests; callers only ever see production; the shadow report
(REST and CLI) accounts for every mirrored request."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.platform import RunningPlatform, running_platform
from tests.integration.rollouts import (
    VersionedModel,
    aws,
    create_config,
    create_model,
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


def shadowed_endpoint(
    platform: RunningPlatform, model: VersionedModel, shadow_weight: float, **shadow_env: str
) -> Any:
    sagemaker = aws(platform.url, "sagemaker")
    create_model(sagemaker, model, "prod", MODEL_VERSION="1")
    create_model(sagemaker, model, "shadow", **shadow_env)
    create_config(
        sagemaker, "shadowed", "prod", 1, ModelName="shadow", InitialVariantWeight=shadow_weight
    )
    sagemaker.create_endpoint(EndpointName="e", EndpointConfigName="shadowed")
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="e", WaiterConfig={"Delay": 0.5, "MaxAttempts": 120}
    )
    return sagemaker


def invoke(platform: RunningPlatform, model: VersionedModel, count: int) -> list[dict[str, Any]]:
    answers = []
    body = json.dumps(model.rows)
    with httpx.Client(base_url=platform.url, timeout=30) as client:
        for _ in range(count):
            response = client.post(
                "/endpoints/e/invocations",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 200, response.text
            assert response.headers["x-amzn-invoked-production-variant"] == "AllTraffic"
            answers.append(response.json())
    return answers


def report(platform: RunningPlatform, **params: Any) -> dict[str, Any]:
    with platform.client() as client:
        response = client.get("/api/endpoints/e/shadow-report", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def settled(platform: RunningPlatform) -> dict[str, Any]:
    """The report once no mirrored request is still under way."""
    result: dict[str, Any] = wait_until(
        lambda: (r := report(platform))["InFlight"] == 0 and r, 30, "the shadow copies"
    )
    return result


def test_a_thousand_requests_mirrored_to_an_identical_shadow(
    platform: RunningPlatform, model: VersionedModel
) -> None:
    sagemaker = shadowed_endpoint(platform, model, 1.0, MODEL_VERSION="1")
    described = sagemaker.describe_endpoint(EndpointName="e")
    assert [v["VariantName"] for v in described["ShadowProductionVariants"]] == ["Shadow"]
    assert described["ShadowProductionVariants"][0]["CurrentInstanceCount"] == 1

    answers = invoke(platform, model, 1000)

    assert {a["version"] for a in answers} == {"1"}
    (pair,) = settled(platform)["Pairs"]
    assert (pair["ProductionVariant"], pair["ShadowVariant"]) == ("AllTraffic", "Shadow")
    assert pair["Sampled"] == 1000
    assert (
        pair["Skipped"] + pair["Compared"] + pair["ProductionErrors"] + pair["ShadowErrors"] == 1000
    )
    # skips only when copies pile up past SHIPWAY_MAX_SHADOW_IN_FLIGHT (a burst, or a shadow
    # instance starved of CPU on a loaded machine)
    assert pair["Compared"] == pair["Agreeing"] > 800
    assert pair["AgreementRate"] == 1.0
    assert pair["ShadowLatency"]["P50"] > 0

    cli = subprocess.run(
        [sys.executable, "-m", "shipway", "--url", platform.url,
         "endpoints", "shadow-report", "e"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "Shadow" in cli.stdout
    assert "100" in cli.stdout


def test_a_failing_shadow_never_fails_a_caller_and_a_lower_weight_samples_less(
    platform: RunningPlatform, model: VersionedModel
) -> None:
    shadowed_endpoint(platform, model, 0.5, MODEL_VERSION="2", MODEL_FAIL="shadow only")

    invoke(platform, model, 1000)

    (pair,) = settled(platform)["Pairs"]
    assert pair["SamplingFraction"] == 0.5
    assert 400 <= pair["Sampled"] <= 600
    assert pair["ShadowErrors"] + pair["Skipped"] == pair["Sampled"]
    assert pair["ProductionErrors"] == pair["Compared"] == 0
    # the shadow's own metrics count its errors under its variant name
    with platform.client() as client:
        now = time.time()
        errors = client.get(
            "/api/metrics",
            params={
                "metric": "Invocation5XXErrors",
                "endpoint": "e",
                "variant": "Shadow",
                "statistic": "Sum",
                "period": 3600,
                "start": now - 3600,
                "end": now + 3600,
            },
        ).json()
    assert sum(d["Sum"] for d in errors["Datapoints"]) == pair["ShadowErrors"]
