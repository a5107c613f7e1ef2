"""Deploying through the REST API, as the integration tests do it again and again."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np

from tests.fixtures.server import ShipwayServer

__all__ = ["deploy", "invoke_json"]


def deploy(
    server: ShipwayServer,
    name: str,
    model_data: str,
    image: str,
    *,
    variants: list[tuple[str, int, float]] | None = None,
    instance_type: str = "ml.t2.medium",
    environment: dict[str, str] | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    """Model ``name``, config ``name``, endpoint ``name``; variants are (name, count, weight)."""
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": model_data}
    if environment:
        container["Environment"] = environment
    with server.client() as client:
        created = client.post(
            "/api/models", json={"ModelName": name, "PrimaryContainer": container}
        )
        assert created.status_code == 201, created.text
        created = client.post(
            "/api/endpoint-configs",
            json={
                "EndpointConfigName": name,
                "ProductionVariants": [
                    {
                        "VariantName": variant,
                        "ModelName": name,
                        "InstanceType": instance_type,
                        "InitialInstanceCount": count,
                        "InitialVariantWeight": weight,
                    }
                    for variant, count, weight in (variants or [("AllTraffic", 1, 1.0)])
                ],
            },
        )
        assert created.status_code == 201, created.text
        created = client.post(
            "/api/endpoints", json={"EndpointName": name, "EndpointConfigName": name}
        )
        assert created.status_code == 201, created.text
    if not wait:
        return {}
    return server.wait_for_endpoint(name)


def invoke_json(client: httpx.Client, name: str, rows: np.ndarray) -> httpx.Response:
    return client.post(
        f"/endpoints/{name}/invocations",
        content=json.dumps(rows.tolist()),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
