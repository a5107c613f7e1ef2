"""Real SageMaker image URIs end to end: models packaged for SageMaker's own containers deploy
through the REST API and answer with those containers' conventions."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import boto3
import numpy as np
import pytest

from tests.fixtures import models
from tests.fixtures.s3 import S3Bucket
from tests.fixtures.server import ShipwayServer, module_server, start_server
from tests.integration.deploy import deploy

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
PYTORCH_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1.0-cpu-py310"

# code/inference.py as the AWS scikit-learn examples write it: the container requires model_fn;
# the other three handlers replace its JSON/CSV/NPY defaults.
INFERENCE_PY = textwrap.dedent(
    """
    import json
    import os
    from io import StringIO

    import joblib
    import numpy as np


    def model_fn(model_dir):
        return joblib.load(os.path.join(model_dir, "model.joblib"))


    def input_fn(request_body, request_content_type):
        if request_content_type == "text/csv":
            return np.loadtxt(StringIO(request_body), delimiter=",", ndmin=2)
        if request_content_type == "application/json":
            return np.asarray(json.loads(request_body)["instances"])
        raise ValueError(f"unsupported content type {request_content_type}")


    def predict_fn(input_data, model):
        return model.predict_proba(input_data)[:, 1]


    def output_fn(prediction, content_type):
        if content_type == "text/csv":
            return "\\n".join(str(p) for p in prediction), "text/csv"
        return json.dumps({"predictions": prediction.tolist()}), "application/json"
    """
)


server = module_server("framework-images")


def header_less_csv(rows: np.ndarray) -> str:
    return "\n".join(",".join(repr(float(v)) for v in row) for row in rows)


def sklearn_tarball(folder: Path, archive: Path) -> tuple[Path, models.Trained]:
    """model.tar.gz as the sagemaker-scikit-learn container takes it: model.joblib + code/."""
    trained = models.train_sklearn(folder)
    (folder / "code").mkdir()
    (folder / "code" / "inference.py").write_text(INFERENCE_PY)
    return models.pack(folder, archive), trained


@pytest.mark.parametrize(
    "submit_directory",
    ["/opt/ml/model/code", "s3://sagemaker-us-east-1-123456789012/job/source/sourcedir.tar.gz"],
    ids=["repacked", "sourcedir-on-s3"],
)
def test_scikit_learn_model_packaged_for_the_sagemaker_container(
    server: ShipwayServer, tmp_path: Path, submit_directory: str
) -> None:
    archive, trained = sklearn_tarball(tmp_path / "model", tmp_path / "model.tar.gz")
    name = "sklearn-" + ("repacked" if submit_directory.startswith("/") else "s3")
    environment = {  # what the SageMaker SDK's SKLearnModel sets
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": submit_directory,
        "SAGEMAKER_REGION": "us-east-1",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
    }
    described = deploy(server, name, str(archive), SKLEARN_IMAGE, environment=environment)
    assert described["EndpointStatus"] == "InService", described
    expected = trained.model.predict_proba(trained.rows)[:, 1]

    with server.client() as client:
        as_json = client.post(
            f"/endpoints/{name}/invocations",
            content=json.dumps({"instances": trained.rows.tolist()}),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        as_csv = client.post(
            f"/endpoints/{name}/invocations",
            content=header_less_csv(trained.rows),
            headers={"Content-Type": "text/csv", "Accept": "text/csv"},
        )

    assert as_json.status_code == 200, as_json.text
    np.testing.assert_allclose(as_json.json()["predictions"], expected, rtol=1e-6)
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    np.testing.assert_allclose([float(v) for v in as_csv.text.split()], expected, rtol=1e-6)


def test_xgboost_model_packaged_for_the_builtin_algorithm(
    server: ShipwayServer, tmp_path: Path
) -> None:
    trained = models.train_xgboost(tmp_path / "model")  # a Booster in `xgboost-model`
    archive = models.pack(trained.folder, tmp_path / "model.tar.gz")
    described = deploy(server, "xgboost-builtin", str(archive), XGBOOST_IMAGE)
    assert described["EndpointStatus"] == "InService", described
    body = header_less_csv(trained.rows)

    with server.client() as client:
        default = client.post(
            "/endpoints/xgboost-builtin/invocations",
            content=body,
            headers={"Content-Type": "text/csv"},
        )
        as_json = client.post(
            "/endpoints/xgboost-builtin/invocations",
            content=body,
            headers={"Content-Type": "text/csv", "Accept": "application/json"},
        )

    # No Accept: the algorithm's CSV, the predictions on one line as its container writes them.
    assert default.status_code == 200, default.text
    assert default.headers["content-type"].startswith("text/csv")
    np.testing.assert_allclose(
        np.array(default.text.split(","), dtype=float), trained.expected, rtol=1e-6
    )
    assert as_json.status_code == 200, as_json.text
    np.testing.assert_allclose(as_json.json(), trained.expected, rtol=1e-6)


def test_torchscript_model_on_the_pytorch_image(server: ShipwayServer, tmp_path: Path) -> None:
    trained = models.train_torch(tmp_path / "model")  # TorchScript model.pt, no script
    archive = models.pack(trained.folder, tmp_path / "model.tar.gz")
    described = deploy(server, "pytorch-ts", str(archive), PYTORCH_IMAGE)
    assert described["EndpointStatus"] == "InService", described

    with server.client() as client:
        response = client.post(
            "/endpoints/pytorch-ts/invocations",
            content=json.dumps(trained.rows.tolist()),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )

    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json(), trained.expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "image",
    ["763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.13-cpu", "nginx:latest"],
)
def test_an_image_no_runtime_serves_is_a_validation_error(
    server: ShipwayServer, tmp_path: Path, image: str
) -> None:
    trained = models.train_sklearn(tmp_path / "model")
    with server.client() as client:
        response = client.post(
            "/api/models",
            json={
                "ModelName": "unsupported",
                "PrimaryContainer": {"Image": image, "ModelDataUrl": str(trained.folder)},
            },
        )
        missing = client.get("/api/models/unsupported")

    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == "ValidationException"
    assert error["message"].startswith(f"Image '{image}' matches no runtime. Supported:")
    for supported in ("sklearn", "xgboost", "sagemaker-scikit-learn", "sagemaker-xgboost"):
        assert supported in error["message"]
    assert "pytorch-inference" in error["message"]
    assert missing.status_code == 404


def test_the_builtin_xgboost_script_of_a_sagemaker_user_runs_unchanged(
    server: ShipwayServer, tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    """boto3 from end to end, the model in S3, as the classic SageMaker XGBoost notebook does."""
    trained = models.train_xgboost(tmp_path / "model")
    archive = models.pack(trained.folder, tmp_path / "model.tar.gz")
    s3 = start_server(tmp_path / "home-s3", env=s3_bucket.env)
    try:
        session = boto3.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
        )
        sm = session.client("sagemaker", endpoint_url=s3.url)
        runtime = session.client("sagemaker-runtime", endpoint_url=s3.url)
        sm.create_model(
            ModelName="xgb-notebook",
            PrimaryContainer={
                "Image": XGBOOST_IMAGE,
                "ModelDataUrl": s3_bucket.upload(archive, "xgboost/output/model.tar.gz"),
            },
            ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
        )
        sm.create_endpoint_config(
            EndpointConfigName="xgb-notebook",
            ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "xgb-notebook",
                                 "InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 1}],
        )  # fmt: skip
        sm.create_endpoint(EndpointName="xgb-notebook", EndpointConfigName="xgb-notebook")
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName="xgb-notebook", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        answer = runtime.invoke_endpoint(
            EndpointName="xgb-notebook",
            ContentType="text/csv",
            Body=header_less_csv(trained.rows),
        )
        predictions = answer["Body"].read().decode().split(",")
        np.testing.assert_allclose(np.array(predictions, dtype=float), trained.expected, rtol=1e-6)
    finally:
        s3.stop()
