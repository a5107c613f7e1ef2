"""The quick start's sample deployment: a scikit-learn pipeline on the breast-cancer data set.

``shipway server --demo`` trains it (a second or so), saves it in the data dir and deploys it to
the endpoint ``demo`` through the same services every API uses, unless it is there already.
"""

from __future__ import annotations

import asyncio
import json

from shipway.domain.endpoint import CreateEndpointInput
from shipway.domain.endpoint_config import CreateEndpointConfigInput
from shipway.domain.model import CreateModelInput
from shipway.domain.shape import parse
from shipway.platform import Platform

__all__ = ["DEMO_ENDPOINT", "deploy_demo", "sample_request"]

DEMO_ENDPOINT = "demo"


def _train(folder: str) -> None:
    from pathlib import Path

    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    Path(folder).mkdir(parents=True, exist_ok=True)
    joblib.dump(model, Path(folder) / "model.joblib")


def sample_request(rows: int = 2) -> str:
    """A JSON body of ``rows`` rows of the breast-cancer features."""
    from sklearn.datasets import load_breast_cancer

    x, _ = load_breast_cancer(return_X_y=True)
    return json.dumps([[round(float(v), 4) for v in row] for row in x[:rows]])


async def deploy_demo(platform: Platform) -> str:
    """Deploy the sample model to the endpoint ``demo`` (once); return the endpoint's name."""
    if platform.store.endpoints.get(DEMO_ENDPOINT) is not None:
        return DEMO_ENDPOINT
    folder = str(platform.settings.home / "demo-model")
    await asyncio.to_thread(_train, folder)
    if platform.store.models.get(DEMO_ENDPOINT) is None:
        platform.models.create_model(
            parse(
                CreateModelInput,
                {
                    "ModelName": DEMO_ENDPOINT,
                    "PrimaryContainer": {"Image": "sklearn", "ModelDataUrl": folder},
                },
            )
        )
    if platform.store.endpoint_configs.get(DEMO_ENDPOINT) is None:
        platform.endpoint_configs.create_endpoint_config(
            parse(
                CreateEndpointConfigInput,
                {
                    "EndpointConfigName": DEMO_ENDPOINT,
                    "ProductionVariants": [
                        {
                            "VariantName": "AllTraffic",
                            "ModelName": DEMO_ENDPOINT,
                            "InstanceType": "ml.m5.large",
                            "InitialInstanceCount": 1,
                        }
                    ],
                },
            )
        )
    platform.endpoints.create_endpoint(
        CreateEndpointInput(endpoint_name=DEMO_ENDPOINT, endpoint_config_name=DEMO_ENDPOINT)
    )
    return DEMO_ENDPOINT
