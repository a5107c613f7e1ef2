"""The quick start's sample deployment: a scikit-learn pipeline on the breast-cancer data set.

``shipway server --demo`` trains it (a second or so), saves it in the data dir and deploys it to
the endpoint ``demo`` through the same services every API uses, unless it is there already.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from shipway.domain.endpoint import CreateEndpointInput
from shipway.domain.endpoint_config import CreateEndpointConfigInput
from shipway.domain.model import CreateModelInput
from shipway.domain.shape import parse
from shipway.platform import Platform

__all__ = ["DEMO_ENDPOINT", "deploy_demo", "sample_request"]

DEMO_ENDPOINT = "demo"


_TRAIN = """
import json, sys
from pathlib import Path

import joblib
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

folder = Path(sys.argv[1])
x, y = load_breast_cancer(return_X_y=True)
if not (folder / "model.joblib").exists():
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
rows = [[round(float(v), 4) for v in row] for row in x[:2]]
(folder.parent / "demo-request.json").write_text(json.dumps(rows))
"""
"""Trains the model (unless it is there) and saves a sample request, in a process of its own:
scikit-learn (with pandas and scipy, about 130 MB) is then never held by the server."""


def _train(folder: Path) -> None:
    subprocess.run([sys.executable, "-c", _TRAIN, str(folder)], check=True)


def sample_request(home: Path, rows: int = 2) -> str:
    """A JSON body of ``rows`` rows (at most 2) of the breast-cancer features, as saved when the
    model was trained."""
    saved: list[list[float]] = json.loads((home / "demo-request.json").read_text())
    return json.dumps(saved[:rows])


async def deploy_demo(platform: Platform) -> str:
    """Deploy the sample model to the endpoint ``demo`` (once); return the endpoint's name."""
    folder = platform.settings.home / "demo-model"
    if (
        not (folder / "model.joblib").exists()
        or not (platform.settings.home / "demo-request.json").exists()
    ):
        await asyncio.to_thread(_train, folder)  # the model, unless there, and the request
    if platform.store.endpoints.get(DEMO_ENDPOINT) is not None:
        return DEMO_ENDPOINT
    if platform.store.models.get(DEMO_ENDPOINT) is None:
        platform.models.create_model(
            parse(
                CreateModelInput,
                {
                    "ModelName": DEMO_ENDPOINT,
                    "PrimaryContainer": {"Image": "sklearn", "ModelDataUrl": str(folder)},
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
