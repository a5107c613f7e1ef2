"""Bad input gets a clear error in SageMaker's shape, and the server keeps serving."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, module_server
from tests.integration.deploy import deploy, invoke_json

ARN = "arn:aws:sagemaker:us-east-1:123456789012"


server = module_server("bad")


@pytest.fixture(scope="module")
def healthy(server: ShipwayServer, tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    """An endpoint that must keep answering whatever else goes wrong."""
    model = models.train_sklearn(tmp_path_factory.mktemp("healthy"))
    deploy(server, "healthy", str(model.folder), "sklearn")
    return model


def still_serving(server: ShipwayServer, model: models.Trained) -> None:
    with server.client() as client:
        response = invoke_json(client, "healthy", model.rows)
    assert response.status_code == 200, response.text
    assert response.json() == model.expected.tolist()


def test_unknown_endpoint(server: ShipwayServer, healthy: models.Trained) -> None:
    with server.client() as client:
        response = invoke_json(client, "nowhere", np.zeros((1, 30)))
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"] == "ValidationError"
    assert response.json() == {"message": "Endpoint nowhere of account 123456789012 not found."}
    still_serving(server, healthy)


def test_unknown_model_in_a_config(server: ShipwayServer, healthy: models.Trained) -> None:
    with server.client() as client:
        response = client.post(
            "/api/endpoint-configs",
            json={
                "EndpointConfigName": "ghostly",
                "ProductionVariants": [
                    {
                        "VariantName": "v",
                        "ModelName": "ghost",
                        "InstanceType": "ml.m5.large",
                        "InitialInstanceCount": 1,
                    }
                ],
            },
        )
        assert response.status_code == 404
        assert response.json() == {
            "code": "ResourceNotFound",
            "message": f'Could not find model "{ARN}:model/ghost".',
        }
        assert client.get("/api/endpoint-configs/ghostly").status_code == 404
    still_serving(server, healthy)


def test_duplicate_names(server: ShipwayServer, healthy: models.Trained) -> None:
    with server.client() as client:
        response = client.post(
            "/api/models",
            json={
                "ModelName": "HEALTHY",  # names are unique whatever their case
                "PrimaryContainer": {"Image": "sklearn", "ModelDataUrl": str(healthy.folder)},
            },
        )
        assert response.status_code == 409
        assert response.json()["message"] == (
            f'Cannot create already existing model "{ARN}:model/healthy".'
        )
        response = client.post(
            "/api/endpoints", json={"EndpointName": "healthy", "EndpointConfigName": "healthy"}
        )
        assert response.status_code == 409
    still_serving(server, healthy)


def test_invalid_names_name_the_field(server: ShipwayServer) -> None:
    with server.client() as client:
        response = client.post(
            "/api/models",
            json={"ModelName": "bad_name!", "PrimaryContainer": {"Image": "sklearn"}},
        )
    assert response.status_code == 400
    message = response.json()["message"]
    assert "'modelName'" in message
    assert "regular expression" in message


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b"[[1, 2,"), ("text/csv", b"1,2\n3"), ("application/x-npy", b"nope")],
)
def test_malformed_body_for_its_content_type(
    server: ShipwayServer, healthy: models.Trained, content_type: str, body: bytes
) -> None:
    with server.client() as client:
        response = client.post(
            "/endpoints/healthy/invocations", content=body, headers={"Content-Type": content_type}
        )
    assert response.status_code == 424
    assert response.headers["x-amzn-errortype"] == "ModelError"
    error = response.json()
    assert error["OriginalStatusCode"] == 400
    assert error["OriginalMessage"]
    assert error["OriginalMessage"] in error["Message"]
    still_serving(server, healthy)


def test_wrong_features_is_a_model_error_with_the_models_message(
    server: ShipwayServer, healthy: models.Trained
) -> None:
    with server.client() as client:
        response = invoke_json(client, "healthy", healthy.rows[:, :5])
    assert response.status_code == 424
    assert "expecting 30 features" in response.json()["OriginalMessage"]


def test_a_7_mb_body_is_refused(server: ShipwayServer, healthy: models.Trained) -> None:
    with server.client() as client:
        response = client.post(
            "/endpoints/healthy/invocations",
            content=b"1" * (7 * 1024 * 1024),
            headers={"Content-Type": "text/csv"},
        )
    assert response.status_code == 413
    assert response.headers["x-amzn-errortype"] == "ValidationError"
    assert "6291456" in response.json()["message"]
    still_serving(server, healthy)


def test_a_model_file_that_will_not_load_fails_the_endpoint(
    server: ShipwayServer, healthy: models.Trained, tmp_path: Path
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(b"this is not a pickle")
    deploy(server, "broken", str(folder), "sklearn", wait=False)
    described = server.wait_for_endpoint("broken")
    assert described["EndpointStatus"] == "Failed"
    assert "model.joblib" in described["FailureReason"], described["FailureReason"]
    with server.client() as client:
        response = invoke_json(client, "broken", healthy.rows)
        assert response.status_code == 400
        assert "Failed" in response.json()["message"]
        assert client.delete("/api/endpoints/broken").status_code == 204
    still_serving(server, healthy)


def test_a_tarball_escaping_its_folder_fails_the_endpoint(
    server: ShipwayServer, healthy: models.Trained, tmp_path: Path
) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = b"print('owned')"
        info = tarfile.TarInfo("../evil.py")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    deploy(server, "evil", str(archive), "sklearn", wait=False)
    described = server.wait_for_endpoint("evil")
    assert described["EndpointStatus"] == "Failed"
    assert "../evil.py" in described["FailureReason"]
    assert not (tmp_path / "evil.py").exists()
    still_serving(server, healthy)


def test_deleting_what_an_endpoint_uses_leaves_it_serving(
    server: ShipwayServer, healthy: models.Trained
) -> None:
    with server.client() as client:
        model = client.get("/api/models/healthy").json()
        config = client.get("/api/endpoint-configs/healthy").json()
        assert client.delete("/api/models/healthy").status_code == 204
        assert client.delete("/api/endpoint-configs/healthy").status_code == 204
        assert client.get("/api/models/healthy").status_code == 404
        assert client.get("/api/endpoint-configs/healthy").json()["code"] == "ResourceNotFound"
        assert client.get("/api/endpoints/healthy").json()["EndpointConfigName"] == "healthy"
        still_serving(server, healthy)
        # the names are free again (and the other tests of this module find them as before)
        for field in ("ModelArn", "CreationTime"):
            model.pop(field)
        assert client.post("/api/models", json=model).status_code == 201
        for field in ("EndpointConfigArn", "CreationTime"):
            config.pop(field)
        assert client.post("/api/endpoint-configs", json=config).status_code == 201
    still_serving(server, healthy)


def test_unsupported_media_type_and_accept(server: ShipwayServer, healthy: models.Trained) -> None:
    with server.client() as client:
        response = client.post(
            "/endpoints/healthy/invocations",
            content=json.dumps(healthy.rows.tolist()),
            headers={"Content-Type": "application/json", "Accept": "image/png"},
        )
    assert response.status_code == 424
    assert response.json()["OriginalStatusCode"] == 406


def test_rest_errors_keep_one_shape(server: ShipwayServer) -> None:
    with server.client() as client:
        missing = client.get("/api/no-such-thing")
        wrong_method = client.put("/api/models")
        not_json = client.post(
            "/api/models", content=b"{bad", headers={"Content-Type": "application/json"}
        )
        bad_query = client.get("/api/endpoints", params={"status_equals": "Bogus"})
        types = client.get("/api/instance-types").json()["InstanceTypes"]
    assert missing.status_code == 404
    assert missing.json()["code"] == "NotFound"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "MethodNotAllowed"
    assert not_json.status_code == 400
    assert not_json.json()["message"].startswith("The request body is not valid JSON")
    assert bad_query.status_code == 400
    assert "'statusEquals'" in bad_query.json()["message"]
    assert any(t["Name"] == "ml.m5.large" and t["VCpus"] == 2 for t in types)
