"""Deleting the configuration and model of a running endpoint, as SageMaker allows (and the
SageMaker Python SDK does: ``Predictor.delete_endpoint()`` deletes the configuration first).

The endpoint keeps serving from its own copies: after a killed instance, more capacity, a
server restart and a deployment; the model's cached archive stays until no endpoint runs it;
the names can be used again at once. Through boto3 against a real server."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import joblib
import numpy as np
import pytest
from botocore.exceptions import ClientError
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier

from tests.fixtures.models import Trained, pack, train_sklearn
from tests.fixtures.server import ShipwayServer, start_server

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
FAST = {"Delay": 1, "MaxAttempts": 90}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ShipwayServer]:
    running = start_server(tmp_path / "home")
    yield running
    running.stop()


def clients(server: ShipwayServer) -> tuple[Any, Any]:
    session = boto3.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
    )
    return (
        session.client("sagemaker", endpoint_url=server.url),
        session.client("sagemaker-runtime", endpoint_url=server.url),
    )


def create(sagemaker: Any, name: str, url: str, *, endpoint: bool = True) -> None:
    """Model and configuration ``name`` (and the endpoint, unless not wanted)."""
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "sklearn", "ModelDataUrl": url},
        ExecutionRoleArn=ROLE,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    if endpoint:
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        in_service(sagemaker, name)


def in_service(sagemaker: Any, name: str) -> dict[str, Any]:
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    described: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)
    return described


def serving_count(sagemaker: Any, name: str, count: int) -> bool:
    """Whether the endpoint gets to ``count`` instances in service, InService."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        described = sagemaker.describe_endpoint(EndpointName=name)
        variant = described["ProductionVariants"][0]
        if described["EndpointStatus"] == "InService" and variant["CurrentInstanceCount"] == count:
            return True
        time.sleep(0.2)
    return False


def predictions(runtime: Any, name: str, rows: np.ndarray) -> list[Any]:
    body = "\n".join(",".join(str(v) for v in row) for row in rows)
    answer = runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=body)
    result: list[Any] = json.loads(answer["Body"].read())
    return result


def instances(server: ShipwayServer, name: str) -> list[dict[str, Any]]:
    with server.client() as client:
        found: list[dict[str, Any]] = client.get(f"/api/endpoints/{name}/instances").json()[
            "Instances"
        ]
    return found


def cache_entries(server: ShipwayServer) -> list[str]:
    cache = server.home / "artifacts"
    return sorted(p.name for p in cache.iterdir() if p.name != ".refs") if cache.exists() else []


def no_cache_entries(server: ShipwayServer) -> bool:
    """Whether the cache empties (the controller releases just after it writes the change)."""
    deadline = time.monotonic() + 10
    while cache_entries(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    return cache_entries(server) == []


def constant_model(folder: Path, label: int) -> Path:
    """A model that answers ``label`` for every row: tells apart which model an endpoint runs."""
    x, _ = load_breast_cancer(return_X_y=True)
    model = DummyClassifier(strategy="constant", constant=label).fit(x, np.full(len(x), label))
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    return folder


def error_code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    code: str = caught.value.response["Error"]["Code"]
    return code


def wait_for_replacement(server: ShipwayServer, name: str, gone: set[int]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = instances(server, name)
        serving = [i for i in running if i["Status"] == "InService" and i["Pid"] not in gone]
        if serving:
            return
        time.sleep(0.2)
    raise AssertionError(f"no instance replaced the killed one:\n{server.log()}")


@pytest.mark.slow
def test_an_endpoint_outlives_its_deleted_config_and_model(
    server: ShipwayServer, tmp_path: Path
) -> None:
    sagemaker, runtime = clients(server)
    trained: Trained = train_sklearn(tmp_path / "v1")
    archive = pack(trained.folder, tmp_path / "model.tar.gz")
    expected = trained.expected.tolist()
    create(sagemaker, "kept", str(archive))
    entries = cache_entries(server)
    assert len(entries) == 1

    # the SageMaker Python SDK's order: the configuration, then the model, the endpoint running
    sagemaker.delete_endpoint_config(EndpointConfigName="kept")
    sagemaker.delete_model(ModelName="kept")

    assert error_code(sagemaker.describe_model, ModelName="kept") == "ValidationException"
    assert (
        error_code(sagemaker.describe_endpoint_config, EndpointConfigName="kept")
        == "ValidationException"
    )
    assert sagemaker.list_models()["Models"] == []
    described = sagemaker.describe_endpoint(EndpointName="kept")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == "kept"
    variant = described["ProductionVariants"][0]
    assert variant["DeployedImages"][0]["SpecifiedImage"] == "sklearn"
    assert predictions(runtime, "kept", trained.rows) == expected
    assert cache_entries(server) == entries  # the endpoint still needs the unpacked archive

    # the names are free: a model of that name that answers 7 everywhere, and its config
    create(sagemaker, "kept", str(constant_model(tmp_path / "sevens", 7)), endpoint=False)

    # a dead instance is replaced from the endpoint's own copy of the first model
    victims = {int(i["Pid"]) for i in instances(server, "kept")}
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    wait_for_replacement(server, "kept", victims)
    assert predictions(runtime, "kept", trained.rows) == expected

    # more capacity, from the same copy
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName="kept",
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
    )
    assert serving_count(sagemaker, "kept", 2)

    # a restarted server starts every instance again, from the copies it stored
    server.stop()
    server.start()
    assert serving_count(sagemaker, "kept", 2)  # InService throughout: desired state
    for _ in range(4):
        assert predictions(runtime, "kept", trained.rows) == expected

    # a deployment to the new configuration moves it to the new model; the old archive goes
    sagemaker.update_endpoint(EndpointName="kept", EndpointConfigName="kept")
    assert sagemaker.describe_endpoint(EndpointName="kept")["EndpointStatus"] == "Updating"
    assert serving_count(sagemaker, "kept", 1)
    assert predictions(runtime, "kept", trained.rows) == [7] * len(trained.rows)
    assert no_cache_entries(server)

    sagemaker.delete_endpoint(EndpointName="kept")
    sagemaker.get_waiter("endpoint_deleted").wait(EndpointName="kept", WaiterConfig=FAST)
    sagemaker.delete_endpoint_config(EndpointConfigName="kept")
    sagemaker.delete_model(ModelName="kept")


def test_a_deleted_endpoint_releases_the_archive_of_its_deleted_model(
    server: ShipwayServer, tmp_path: Path
) -> None:
    sagemaker, runtime = clients(server)
    trained = train_sklearn(tmp_path / "v1")
    archive = pack(trained.folder, tmp_path / "model.tar.gz")
    create(sagemaker, "gone", str(archive))
    assert len(cache_entries(server)) == 1

    sagemaker.delete_endpoint_config(EndpointConfigName="gone")
    sagemaker.delete_endpoint(EndpointName="gone")
    sagemaker.delete_model(ModelName="gone")
    sagemaker.get_waiter("endpoint_deleted").wait(EndpointName="gone", WaiterConfig=FAST)

    assert no_cache_entries(server)
    assert archive.exists()
    # every name can be used again, for the same archive
    create(sagemaker, "gone", str(archive))
    assert predictions(runtime, "gone", trained.rows) == trained.expected.tolist()
    assert len(cache_entries(server)) == 1
