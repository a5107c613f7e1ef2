"""Authentication on a real server: keys from SHIPWAY_ACCESS_KEYS_FILE, real boto3 clients.

With keys configured, a correctly signed request works; unsigned, wrong-secret, unknown-key and
stale requests get 403 with AWS's codes and change nothing. The REST API takes a bearer token
derived from the same key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import botocore
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from shipway.api.auth import bearer_token
from tests.fixtures.server import ShipwayServer, start_secured_server

AKID = "AKIDSHIPWAYINTEG1"
SECRET = "integration/secret+Key0123456789abcdefghij"
REGION = "us-east-1"
NO_RETRIES = Config(retries={"max_attempts": 1})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    root = tmp_path_factory.mktemp("auth")
    running = start_secured_server(root, AKID, SECRET)
    yield running
    running.stop()
    assert SECRET not in running.log()


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    (folder / "model.joblib").write_bytes(b"never loaded: no endpoint is created")
    return folder


def client(
    server: ShipwayServer,
    service: str,
    akid: str = AKID,
    secret: str = SECRET,
    config: Config | None = None,
) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=NO_RETRIES.merge(config) if config else NO_RETRIES,
    )


def unsigned(server: ShipwayServer, service: str) -> Any:
    return client(server, service, config=Config(signature_version=botocore.UNSIGNED))


def rest(server: ShipwayServer, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, timeout=30, headers=headers)


TOKEN = bearer_token(AKID, SECRET)


def refused(call: Any, code: str) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error.response["Error"]["Code"] == code
    return error


def stale_request(server: ShipwayServer, target: str, body: bytes) -> httpx.Response:
    """A request boto3 would have signed 20 minutes ago, sent now."""
    request = AWSRequest(
        method="POST",
        url=server.url + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    signed_at = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=20)
    with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
        SigV4Auth(Credentials(AKID, SECRET), "sagemaker", REGION).add_auth(request)
    prepared = request.prepare()
    return httpx.post(prepared.url, content=body, headers=dict(prepared.headers.items()))


def test_a_correctly_signed_request_works(server: ShipwayServer) -> None:
    assert client(server, "sagemaker").list_models()["Models"] == []
    runtime = client(server, "sagemaker-runtime")
    with pytest.raises(runtime.exceptions.ValidationError) as caught:
        runtime.invoke_endpoint(EndpointName="nowhere", Body=b"1,2", ContentType="text/csv")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_unsigned_requests_are_refused(server: ShipwayServer) -> None:
    error = refused(
        unsigned(server, "sagemaker").list_models, "MissingAuthenticationTokenException"
    )
    assert error.response["Error"]["Message"] == "Missing Authentication Token"
    runtime = unsigned(server, "sagemaker-runtime")
    refused(
        lambda: runtime.invoke_endpoint(EndpointName="nowhere", Body=b"1"),
        "MissingAuthenticationTokenException",
    )


def test_a_wrong_secret_is_refused(server: ShipwayServer) -> None:
    sagemaker = client(server, "sagemaker", secret="not-the-secret")
    refused(sagemaker.list_models, "InvalidSignatureException")
    runtime = client(server, "sagemaker-runtime", secret="not-the-secret")
    refused(
        lambda: runtime.invoke_endpoint(EndpointName="nowhere", Body=b"1"),
        "InvalidSignatureException",
    )


def test_an_unknown_key_is_refused(server: ShipwayServer) -> None:
    sagemaker = client(server, "sagemaker", akid="AKIDNOBODY")
    refused(sagemaker.list_models, "UnrecognizedClientException")
    runtime = client(server, "sagemaker-runtime", akid="AKIDNOBODY")
    refused(
        lambda: runtime.invoke_endpoint(EndpointName="nowhere", Body=b"1"),
        "UnrecognizedClientException",
    )


def test_a_stale_date_is_refused(server: ShipwayServer) -> None:
    response = stale_request(server, "SageMaker.ListModels", b"{}")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    assert response.json()["__type"] == "InvalidSignatureException"
    assert response.json()["message"].startswith("Signature expired: ")


def test_the_rest_api_takes_the_bearer_token(server: ShipwayServer) -> None:
    with rest(server, TOKEN) as api:
        listed = api.get("/api/models")
        assert listed.status_code == 200, listed.text
        assert listed.json() == {"Models": []}
        assert api.get("/metrics").status_code == 200
    with rest(server) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        response = anonymous.get("/api/models")
        assert response.status_code == 403
        assert response.json()["code"] == "MissingAuthenticationTokenException"
    with rest(server, bearer_token(AKID, "wrong")) as wrong:
        assert wrong.get("/api/models").status_code == 403
    with rest(server, TOKEN) as api:
        # The SageMaker wire is SigV4 only, as on AWS.
        wire = api.post(
            "/",
            content=b"{}",
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "SageMaker.ListModels",
            },
        )
        assert wire.status_code == 403
        assert wire.json()["__type"] == "IncompleteSignatureException"


def test_refused_requests_change_nothing(server: ShipwayServer, model_folder: Path) -> None:
    create: dict[str, Any] = {
        "ModelName": "refused",
        "PrimaryContainer": {"Image": "sklearn", "ModelDataUrl": str(model_folder)},
    }
    for sagemaker, code in [
        (unsigned(server, "sagemaker"), "MissingAuthenticationTokenException"),
        (client(server, "sagemaker", secret="not-the-secret"), "InvalidSignatureException"),
        (client(server, "sagemaker", akid="AKIDNOBODY"), "UnrecognizedClientException"),
    ]:
        refused(lambda sagemaker=sagemaker: sagemaker.create_model(**create), code)
    stale = stale_request(server, "SageMaker.CreateModel", json.dumps(create).encode())
    assert stale.status_code == 403
    with rest(server) as anonymous:
        assert anonymous.post("/api/models", json=create).status_code == 403
    with rest(server, bearer_token(AKID, "wrong")) as wrong:
        assert wrong.post("/api/models", json=create).status_code == 403

    with rest(server, TOKEN) as api:
        assert api.get("/api/models").json() == {"Models": []}
    sagemaker = client(server, "sagemaker")
    assert sagemaker.list_models()["Models"] == []

    # The same request, correctly signed, goes through with its body intact.
    created = sagemaker.create_model(**create)
    assert created["ModelArn"].endswith(":model/refused")
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == ["refused"]
    refused(
        lambda: unsigned(server, "sagemaker").delete_model(ModelName="refused"),
        "MissingAuthenticationTokenException",
    )
    with rest(server, TOKEN) as api:
        assert [m["ModelName"] for m in api.get("/api/models").json()["Models"]] == ["refused"]


def test_the_cli_sends_the_token(server: ShipwayServer) -> None:
    from typer.testing import CliRunner

    from shipway.cli.main import app

    runner = CliRunner()
    printed = runner.invoke(app, ["token", "--access-key-id", AKID, "--secret-access-key", SECRET])
    assert printed.exit_code == 0
    assert printed.stdout.strip() == TOKEN
    allowed = runner.invoke(app, ["--url", server.url, "--token", TOKEN, "models", "list"])
    assert allowed.exit_code == 0, allowed.output
    denied = runner.invoke(app, ["--url", server.url, "models", "list"])
    assert denied.exit_code == 1
    assert "MissingAuthenticationTokenException" in denied.output


def test_a_credential_scoped_to_another_region_or_service_is_refused(
    server: ShipwayServer,
) -> None:
    elsewhere = boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name="xx-nowhere-9",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        config=NO_RETRIES,
    )
    error = refused(elsewhere.list_models, "InvalidSignatureException")
    assert error.response["Error"]["Message"] == (
        "Credential should be scoped to a valid region, not 'xx-nowhere-9'."
    )
    body = b"{}"
    request = AWSRequest(
        method="POST",
        url=server.url + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "SageMaker.ListModels",
        },
    )
    SigV4Auth(Credentials(AKID, SECRET), "s3", REGION).add_auth(request)
    prepared = request.prepare()
    response = httpx.post(prepared.url, content=body, headers=dict(prepared.headers.items()))
    assert response.status_code == 403
    assert response.json() == {
        "__type": "InvalidSignatureException",
        "message": "Credential should be scoped to correct service: 'sagemaker'.",
    }


def test_cloudwatch_takes_its_own_signing_name(server: ShipwayServer) -> None:
    cloudwatch = client(server, "cloudwatch")
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []
