"""The SageMaker Python SDK against a real server, as a user runs it.

v2 (``sagemaker`` 2.x): ``Model(...).deploy()``, ``Predictor.predict()`` with the CSV and JSON
serializers, ``delete_model()`` and ``delete_endpoint()`` (which deletes the configuration before
the endpoint). v3's resource classes (``Model.create``, ``EndpointConfig.create``,
``Endpoint.create``, ``Endpoint.get(...).invoke``) come from ``sagemaker_core.resources``, the
package sagemaker 2.x depends on; they find Shipway only through ``AWS_ENDPOINT_URL`` (one
process-wide client), so they run in a process of their own, as a user's script would.

No other service is needed: the role ARN is passed (no IAM lookup), model data is a local
folder (no default S3 bucket), and telemetry is opted out in the SDK's config (it would call STS
and an AWS bucket); every request the SDK sends is checked to reach Shipway.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import joblib
import pytest
from botocore.exceptions import ClientError
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.fixtures.optional import absent
from tests.fixtures.server import ShipwayServer, start_server

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
CLASSES = [0, 2]
NO_TELEMETRY = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}

# The SDK's deploy() polls every 30 s, and each test starts an endpoint: tens of seconds.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    for module in ("sagemaker", "sagemaker_core"):
        if importlib.util.find_spec(module) is None:  # importing v2 warns: found, not imported
            absent(f"{module} is not installed (pip install -e '.[dev,clients]')")
    running = start_server(tmp_path_factory.mktemp("sdk") / "home")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("iris")
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), folder / "model.joblib")
    return folder


def boto_session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
    )


def sdk_env(server: ShipwayServer, home: Path) -> dict[str, str]:
    """What a v3 script needs to reach Shipway: AWS_ENDPOINT_URL, any key, a region (and a
    HOME of the test's own, for whatever the SDK reads or writes there)."""
    return {
        **os.environ,
        "HOME": str(home),
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
    }


def said(stdout: str, label: str) -> str:
    """What a script printed after ``label`` (the SDK logs to stdout too)."""
    lines = [line for line in stdout.splitlines() if line.startswith(label + " ")]
    assert lines, stdout
    return lines[-1].removeprefix(label + " ")


def gone(sagemaker: Any, name: str) -> None:
    """Endpoint, configuration and model ``name`` no longer exist."""
    sagemaker.get_waiter("endpoint_deleted").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    for call, argument in (
        (sagemaker.describe_endpoint_config, "EndpointConfigName"),
        (sagemaker.describe_model, "ModelName"),
    ):
        with pytest.raises(ClientError) as missing:
            call(**{argument: name})
        assert missing.value.response["Error"]["Code"] == "ValidationException"


@pytest.mark.slow(seconds=45)
def test_sdk_v2_deploy_predict_and_delete(server: ShipwayServer, iris: Path) -> None:
    boto = boto_session()
    sent: list[str] = []
    # every request of every client made from this session, the SDK's own included
    boto.events.register("before-send", lambda request, **_: sent.append(request.url))
    with warnings.catch_warnings():  # v2 says it is on its way to deprecation at every use
        warnings.simplefilter("ignore", FutureWarning)  # SageMakerV2DeprecationWarning
        from sagemaker.deserializers import JSONDeserializer
        from sagemaker.model import Model
        from sagemaker.predictor import Predictor
        from sagemaker.serializers import CSVSerializer, JSONSerializer
        from sagemaker.session import Session

        session = Session(
            boto_session=boto,
            sagemaker_client=boto.client("sagemaker", endpoint_url=server.url),
            sagemaker_runtime_client=boto.client("sagemaker-runtime", endpoint_url=server.url),
            sagemaker_config=NO_TELEMETRY,
        )
        model = Model(
            image_uri="sklearn",
            model_data=str(iris),
            role=ROLE,
            predictor_cls=Predictor,
            sagemaker_session=session,
        )
        # deploy() waits for InService, polling every 30 s (the SDK's interval)
        predictor = model.deploy(
            initial_instance_count=1,
            instance_type="ml.m5.large",
            endpoint_name="iris-sdk-v2",
            serializer=CSVSerializer(),
            deserializer=JSONDeserializer(),
        )
        assert predictor is not None
        assert predictor.predict(ROWS) == CLASSES
        as_json = Predictor(
            "iris-sdk-v2",
            sagemaker_session=session,
            serializer=JSONSerializer(),
            deserializer=JSONDeserializer(),
        )
        assert as_json.predict(ROWS) == CLASSES

        # the SDK's documented order: the model (found through the endpoint's configuration),
        # then the endpoint, whose configuration the SDK deletes first
        predictor.delete_model()
        predictor.delete_endpoint()

    gone(boto.client("sagemaker", endpoint_url=server.url), "iris-sdk-v2")
    assert sent
    assert [url for url in sent if not url.startswith(server.url + "/")] == []


V3_SCRIPT = """
import json, sys
from sagemaker_core.resources import Endpoint, EndpointConfig, Model
from sagemaker_core.shapes import ContainerDefinition, ProductionVariant

role, model_data, body = sys.argv[1:]
model = Model.create(
    model_name="iris-sdk-v3",
    primary_container=ContainerDefinition(image="sklearn", model_data_url=model_data),
    execution_role_arn=role,
)
config = EndpointConfig.create(
    endpoint_config_name="iris-sdk-v3",
    production_variants=[
        ProductionVariant(
            variant_name="AllTraffic",
            model_name="iris-sdk-v3",
            instance_type="ml.m5.large",
            initial_instance_count=1,
        )
    ],
)
endpoint = Endpoint.create(endpoint_name="iris-sdk-v3", endpoint_config_name="iris-sdk-v3")
endpoint.wait_for_status("InService", poll=1)
answer = Endpoint.get(endpoint_name="iris-sdk-v3").invoke(body=body, content_type="text/csv")
print("ANSWER", json.dumps(json.loads(answer.body.read())))
endpoint.delete()
endpoint.wait_for_delete(poll=1)
config.delete()
model.delete()
"""


def test_sdk_v3_resource_classes_create_invoke_and_delete(
    server: ShipwayServer, iris: Path, tmp_path: Path
) -> None:
    body = "\n".join(",".join(str(v) for v in row) for row in ROWS)
    ran = subprocess.run(
        [sys.executable, "-c", V3_SCRIPT, ROLE, str(iris), body],
        env=sdk_env(server, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(said(ran.stdout, "ANSWER")) == CLASSES
    gone(boto_session().client("sagemaker", endpoint_url=server.url), "iris-sdk-v3")


def test_sdk_v3_endpoint_get_invoke_of_an_endpoint_made_with_boto3(
    server: ShipwayServer, iris: Path, tmp_path: Path
) -> None:
    sagemaker = boto_session().client("sagemaker", endpoint_url=server.url)
    sagemaker.create_model(
        ModelName="iris-boto-v3",
        PrimaryContainer={"Image": "sklearn", "ModelDataUrl": str(iris)},
        ExecutionRoleArn=ROLE,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="iris-boto-v3",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "iris-boto-v3",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="iris-boto-v3", EndpointConfigName="iris-boto-v3")
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="iris-boto-v3", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    script = (
        "import sys\n"
        "from sagemaker_core.resources import Endpoint\n"
        "endpoint = Endpoint.get(endpoint_name='iris-boto-v3')\n"
        "print('STATUS', endpoint.endpoint_status)\n"
        "answer = endpoint.invoke(body=sys.argv[1], content_type='application/json')\n"
        "print('ANSWER', answer.body.read().decode())\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script, json.dumps(ROWS)],
        env=sdk_env(server, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert said(ran.stdout, "STATUS") == "InService"
    assert json.loads(said(ran.stdout, "ANSWER")) == CLASSES
    sagemaker.delete_endpoint(EndpointName="iris-boto-v3")
    sagemaker.delete_endpoint_config(EndpointConfigName="iris-boto-v3")
    sagemaker.delete_model(ModelName="iris-boto-v3")
    gone(sagemaker, "iris-boto-v3")
