"""An endpoint's metrics through a real server: ``/api/metrics`` without a variant (or times)
combines every production variant, and ``/metrics`` forgets an endpoint when it is deleted and a
variant when a deployment removes it."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, module_server
from tests.integration.deploy import deploy

server = module_server("metrics")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    return models.train_sklearn(tmp_path_factory.mktemp("model") / "model")


def invoke(client: httpx.Client, name: str, model: models.Trained, variant: str = "") -> str:
    """One invocation that must succeed; the variant that answered."""
    headers = {"Content-Type": "application/json"}
    if variant:
        headers["X-Amzn-SageMaker-Target-Variant"] = variant
    response = client.post(
        f"/endpoints/{name}/invocations", content=json.dumps(model.rows.tolist()), headers=headers
    )
    assert response.status_code == 200, response.text
    return response.headers["x-amzn-invoked-production-variant"]


def statistic(client: httpx.Client, **params: Any) -> tuple[list[str], float | None]:
    """The variants combined and the one datapoint of an hour-long period (None: no data)."""
    response = client.get("/api/metrics", params={"period": 3600, **params})
    assert response.status_code == 200, response.text
    answer = response.json()
    points = answer["Datapoints"]
    assert len(points) <= 1, points
    name = params.get("statistic", "Sum")
    return answer["Variants"], points[0][name] if points else None


def series_of(client: httpx.Client, endpoint: str) -> list[str]:
    """The lines of ``/metrics`` about this endpoint."""
    text = client.get("/metrics").text
    return [line for line in text.splitlines() if f'endpoint_name="{endpoint}"' in line]


def wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what}: not after {timeout} s")


def test_the_readme_query_needs_no_variant_nor_times(
    server: ShipwayServer, model: models.Trained
) -> None:
    deploy(server, "pair", str(model.folder), "sklearn",
           variants=[("Blue", 1, 1.0), ("Green", 1, 1.0)])  # fmt: skip
    with server.client() as client:
        answered = Counter(invoke(client, "pair", model) for _ in range(30))
        answered.update(invoke(client, "pair", model, "Green") for _ in range(5))
        assert set(answered) == {"Blue", "Green"}, answered
        # what the README shows: metric and endpoint, nothing else
        response = client.get("/api/metrics", params={"metric": "Invocations", "endpoint": "pair"})
        assert response.status_code == 200, response.text
        assert response.json()["Variants"] == ["Blue", "Green"]
        assert sum(p["Sum"] for p in response.json()["Datapoints"]) == 35
        for variant in ("Blue", "Green"):
            assert statistic(client, metric="Invocations", endpoint="pair", variant=variant) == (
                [variant],
                answered[variant],
            )
        latency = {"metric": "ModelLatency", "endpoint": "pair"}
        per_variant = {
            (variant, name): statistic(client, **latency, variant=variant, statistic=name)[1]
            for variant in ("Blue", "Green")
            for name in ("Sum", "SampleCount", "Minimum", "Maximum")
        }
        blue = {name: value for (v, name), value in per_variant.items() if v == "Blue"}
        green = {name: value for (v, name), value in per_variant.items() if v == "Green"}
        assert statistic(client, **latency, statistic="SampleCount")[1] == 35
        assert statistic(client, **latency, statistic="Sum")[1] == pytest.approx(
            blue["Sum"] + green["Sum"]
        )
        assert statistic(client, **latency, statistic="Average")[1] == pytest.approx(
            (blue["Sum"] + green["Sum"]) / 35
        )
        assert statistic(client, **latency, statistic="Minimum")[1] == min(
            blue["Minimum"], green["Minimum"]
        )
        assert statistic(client, **latency, statistic="Maximum")[1] == max(
            blue["Maximum"], green["Maximum"]
        )
        median = statistic(client, **latency, statistic="p50")[1]
        assert min(blue["Minimum"], green["Minimum"]) <= median
        assert median <= max(blue["Maximum"], green["Maximum"])
        # an explicit window still works; one in the past has nothing
        assert statistic(
            client, metric="Invocations", endpoint="pair", start=time.time() - 600
        ) == (["Blue", "Green"], 35)
        assert statistic(
            client, metric="Invocations", endpoint="pair", end="2020-01-01T00:00:00Z"
        ) == (["Blue", "Green"], None)
        assert statistic(client, metric="Invocations", endpoint="never-made") == ([], None)


def test_a_shadow_variant_is_not_counted_with_production(
    server: ShipwayServer, model: models.Trained
) -> None:
    variant = {"ModelName": "mirrored", "InstanceType": "ml.t2.medium", "InitialInstanceCount": 1}
    with server.client() as client:
        created = client.post(
            "/api/models",
            json={
                "ModelName": "mirrored",
                "PrimaryContainer": {"Image": "sklearn", "ModelDataUrl": str(model.folder)},
            },
        )
        assert created.status_code == 201, created.text
        created = client.post(
            "/api/endpoint-configs",
            json={
                "EndpointConfigName": "mirrored",
                "ProductionVariants": [{**variant, "VariantName": "Prod"}],
                "ShadowProductionVariants": [{**variant, "VariantName": "Shadow"}],
            },
        )
        assert created.status_code == 201, created.text
        created = client.post(
            "/api/endpoints", json={"EndpointName": "mirrored", "EndpointConfigName": "mirrored"}
        )
        assert created.status_code == 201, created.text
        assert server.wait_for_endpoint("mirrored")["EndpointStatus"] == "InService"
        for _ in range(10):
            invoke(client, "mirrored", model)
        shadow = {"metric": "Invocations", "endpoint": "mirrored", "variant": "Shadow"}
        wait_for(lambda: statistic(client, **shadow)[1] == 10, "every copy at the shadow")
        assert statistic(client, metric="Invocations", endpoint="mirrored") == (["Prod"], 10)


def test_deleting_an_endpoint_takes_its_series_out_of_prometheus(
    server: ShipwayServer, model: models.Trained
) -> None:
    deploy(server, "fleeting", str(model.folder), "sklearn",
           variants=[("Blue", 1, 1.0), ("Green", 1, 1.0)])  # fmt: skip
    deploy(server, "staying", str(model.folder), "sklearn")
    with server.client() as client:
        for _ in range(6):
            invoke(client, "fleeting", model)
        invoke(client, "staying", model)
        lines = series_of(client, "fleeting")
        assert any(line.startswith("shipway_invocations_total") for line in lines), lines
        assert {re.search(r'variant_name="(\w+)"', line)[1] for line in lines} == {  # type: ignore[index]
            "Blue",
            "Green",
        }
        assert client.delete("/api/endpoints/fleeting").status_code == 204
        wait_for(lambda: client.get("/api/endpoints/fleeting").status_code == 404, "the deletion")
        wait_for(lambda: series_of(client, "fleeting") == [], "the series gone from /metrics")
        assert series_of(client, "staying"), "another endpoint's series went too"
        # the same name again: its counters start from zero
        created = client.post(
            "/api/endpoints", json={"EndpointName": "fleeting", "EndpointConfigName": "fleeting"}
        )
        assert created.status_code == 201, created.text
        assert server.wait_for_endpoint("fleeting")["EndpointStatus"] == "InService"
        invoke(client, "fleeting", model, "Green")
        invoke(client, "fleeting", model, "Green")
        counters = [
            line for line in series_of(client, "fleeting") if "shipway_invocations_total" in line
        ]
        assert counters == [
            'shipway_invocations_total{endpoint_name="fleeting",variant_name="Green"} 2.0'
        ]


def test_a_deployment_that_drops_a_variant_takes_its_series_out_of_prometheus(
    server: ShipwayServer, model: models.Trained
) -> None:
    deploy(server, "moving", str(model.folder), "sklearn", variants=[("Blue", 1, 1.0)])
    with server.client() as client:
        for _ in range(3):
            invoke(client, "moving", model)
        assert any('variant_name="Blue"' in line for line in series_of(client, "moving"))
        created = client.post(
            "/api/endpoint-configs",
            json={
                "EndpointConfigName": "moving-green",
                "ProductionVariants": [
                    {
                        "VariantName": "Green",
                        "ModelName": "moving",
                        "InstanceType": "ml.t2.medium",
                        "InitialInstanceCount": 1,
                    }
                ],
            },
        )
        assert created.status_code == 201, created.text
        updated = client.put("/api/endpoints/moving", json={"EndpointConfigName": "moving-green"})
        assert updated.status_code == 200, updated.text
        described = server.wait_for_endpoint("moving", timeout=120)
        assert described["EndpointStatus"] == "InService", described
        assert described["EndpointConfigName"] == "moving-green"
        wait_for(
            lambda: not any('variant_name="Blue"' in line for line in series_of(client, "moving")),
            "the removed variant's series gone from /metrics",
        )
        assert invoke(client, "moving", model) == "Green"
        assert any('variant_name="Green"' in line for line in series_of(client, "moving"))
        # the history stays queryable: the endpoint's total covers both variants
        assert statistic(client, metric="Invocations", endpoint="moving") == (
            ["Blue", "Green"],
            4,
        )
