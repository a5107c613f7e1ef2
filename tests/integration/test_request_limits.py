"""Request bodies are held to their limits on a real server, with authentication on and off.

With keys configured, a request is authenticated from its headers before its body is read, so a
gigabyte sent with a real key id and a wrong signature, or with no signature at all, costs the
server no memory. Without keys the same limits hold: ``max_request_bytes`` for everything but
invocations (413 in each wire's error format), ``max_payload_bytes`` for invocations.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import cbor2
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.fixtures.server import ShipwayServer, start_secured_server, start_server

AKID = "AKIDSHIPWAYLIMITS"
SECRET = "limits/secret+Key0123456789abcdefghijkl"
REGION = "us-east-1"
GIB = 1 << 30
MIB = 1 << 20
SMALL_LIMIT = 64 * 1024
NO_RETRIES = Config(retries={"max_attempts": 1})


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    """A server with authentication on and the default limits."""
    root = tmp_path_factory.mktemp("limits-auth")
    running = start_secured_server(root, AKID, SECRET)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    """A server with authentication off and a small request limit."""
    root = tmp_path_factory.mktemp("limits-open")
    running = start_server(
        root / "home",
        env={"SHIPWAY_MAX_REQUEST_BYTES": str(SMALL_LIMIT), "SHIPWAY_MAX_PAYLOAD_BYTES": str(MIB)},
    )
    yield running
    running.stop()


def memory(server: ShipwayServer) -> dict[str, int]:
    """The server process's resident set now and at its peak, in bytes."""
    assert server.process is not None
    found: dict[str, int] = {}
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


def gigabyte() -> Iterator[bytes]:
    """1 GiB, one MiB at a time, never held whole."""
    piece = b"\0" * MIB
    for _ in range(GIB // MIB):
        yield piece


def wrongly_signed(url: str, target: str | None, content_type: str) -> dict[str, str]:
    """Headers of a request signed with the real key id and the wrong secret."""
    headers = {"Content-Type": content_type}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url=url, data=b"{}", headers=headers)
    SigV4Auth(Credentials(AKID, "not-the-secret"), "sagemaker", REGION).add_auth(request)
    prepared = request.prepare()
    return {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}


def post_gigabyte(url: str, headers: dict[str, str], declared: bool) -> httpx.Response:
    if declared:
        headers = {**headers, "Content-Length": str(GIB)}
    with httpx.Client(timeout=120) as client:
        return client.post(url, content=gigabyte(), headers=headers)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_gigabyte_with_a_wrong_signature_costs_no_memory(
    guarded: ShipwayServer, declared: bool
) -> None:
    before = memory(guarded)
    wire = post_gigabyte(
        guarded.url + "/",
        wrongly_signed(guarded.url + "/", "SageMaker.CreateModel", "application/x-amz-json-1.1"),
        declared,
    )
    assert wire.status_code == 413, wire.text
    assert wire.json()["__type"] == "ValidationException"
    url = guarded.url + "/endpoints/ep/invocations"
    runtime = post_gigabyte(url, wrongly_signed(url, None, "text/csv"), declared)
    assert runtime.status_code == 413, runtime.text
    assert runtime.headers["x-amzn-errortype"] == "ValidationError"
    after = memory(guarded)
    assert after["VmHWM"] - before["VmHWM"] < 100 * MIB, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < 100 * MIB, (before, after)


def test_an_unauthenticated_gigabyte_to_the_rest_api_costs_no_memory(
    guarded: ShipwayServer,
) -> None:
    before = memory(guarded)
    response = post_gigabyte(
        guarded.url + "/api/models", {"Content-Type": "application/json"}, declared=False
    )
    assert response.status_code == 403
    assert response.json()["code"] == "MissingAuthenticationTokenException"
    after = memory(guarded)
    assert after["VmHWM"] - before["VmHWM"] < 100 * MIB, (before, after)


def test_a_correctly_signed_request_within_the_limit_still_works(guarded: ShipwayServer) -> None:
    sagemaker = boto3.client(
        "sagemaker",
        endpoint_url=guarded.url,
        region_name=REGION,
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        config=NO_RETRIES,
    )
    assert sagemaker.list_models()["Models"] == []
    with pytest.raises(ClientError) as caught:
        sagemaker.add_tags(
            ResourceArn="arn:aws:sagemaker:us-east-1:123456789012:model/m",
            Tags=[{"Key": "k", "Value": "v" * 256}] * 50 + [{"Key": "x" * 128, "Value": "y"}],
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"


# --- authentication off -------------------------------------------------------------------------


def test_rest_bodies_over_the_limit_are_413(open_server: ShipwayServer) -> None:
    body = json.dumps({"ModelName": "m", "Pad": "x" * SMALL_LIMIT}).encode()
    with open_server.client() as client:
        declared = client.post("/api/models", content=body)
        assert declared.status_code == 413
        assert declared.json() == {
            "code": "ValidationException",
            "message": f"The request body of {len(body)} bytes or more exceeds the limit of "
            f"{SMALL_LIMIT} bytes.",
        }

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(body), 4096):
                yield body[start : start + 4096]

        streamed = client.post("/api/models", content=chunks())
        assert streamed.status_code == 413
        assert streamed.json()["code"] == "ValidationException"
        # within the limit, the same route answers as before
        fits = client.post("/api/models", json={"ModelName": "m"})
        assert fits.status_code == 400
        assert "primaryContainer" in fits.json()["message"] or "Containers" in fits.text


def client(server: ShipwayServer, service: str, **config: Any) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=NO_RETRIES.merge(Config(**config)) if config else NO_RETRIES,
    )


def test_boto3_requests_over_the_limit_are_413_in_their_wire_format(
    open_server: ShipwayServer,
) -> None:
    tags = [{"Key": f"k{i}", "Value": "v" * 256} for i in range(50)]
    big_env = {f"V{i}": "x" * 1024 for i in range(80)}
    with pytest.raises(ClientError) as sagemaker:
        client(open_server, "sagemaker").create_model(
            ModelName="big",
            PrimaryContainer={"Image": "sklearn", "Environment": big_env},
            Tags=tags,
        )
    assert sagemaker.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert sagemaker.value.response["Error"]["Code"] == "ValidationException"

    metric_data = [
        {"MetricName": f"m{i}", "Value": 1.0, "Dimensions": [{"Name": "d", "Value": "x" * 1000}]}
        for i in range(100)
    ]
    with pytest.raises(ClientError) as cloudwatch:
        client(open_server, "cloudwatch").put_metric_data(Namespace="Big", MetricData=metric_data)
    assert cloudwatch.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert cloudwatch.value.response["Error"]["Code"] == "RequestEntityTooLarge"

    runtime = client(open_server, "sagemaker-runtime")
    with pytest.raises(runtime.exceptions.ValidationError) as invocation:
        runtime.invoke_endpoint(EndpointName="nowhere", Body=b"1" * (MIB + 1))
    assert invocation.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    # an invocation within max_payload_bytes (but over max_request_bytes) is no body problem
    with pytest.raises(runtime.exceptions.ValidationError) as fits:
        runtime.invoke_endpoint(EndpointName="nowhere", Body=b"1" * (SMALL_LIMIT * 2))
    assert fits.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_the_cbor_wire_answers_413_in_cbor(open_server: ShipwayServer) -> None:
    body = bytes(cbor2.dumps({"Namespace": "x" * (SMALL_LIMIT + 1)}))
    response = httpx.post(
        open_server.url + "/service/GraniteServiceVersion20100801/operation/PutMetricData",
        content=body,
        headers={"Content-Type": "application/cbor", "Smithy-Protocol": "rpc-v2-cbor"},
    )
    assert response.status_code == 413
    assert cbor2.loads(response.content)["__type"] == "RequestEntityTooLarge"


def test_boto3_compressed_metric_data_is_read_and_held_to_the_limit_once_inflated(
    open_server: ShipwayServer,
) -> None:
    cloudwatch = client(open_server, "cloudwatch")
    # botocore gzips PutMetricData bodies over 10 KiB
    metric_data = [
        {"MetricName": "Big", "Value": float(i), "Dimensions": [{"Name": "d", "Value": "x" * 200}]}
        for i in range(60)
    ]
    cloudwatch.put_metric_data(Namespace="Compressed", MetricData=metric_data)
    listed = cloudwatch.list_metrics(Namespace="Compressed")["Metrics"]
    assert [m["MetricName"] for m in listed] == ["Big"]
    bomb = [
        {"MetricName": f"m{i}", "Value": 1.0, "Dimensions": [{"Name": "d", "Value": "x" * 1000}]}
        for i in range(100)
    ]
    with pytest.raises(ClientError) as caught:
        cloudwatch.put_metric_data(Namespace="Big", MetricData=bomb)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert caught.value.response["Error"]["Code"] == "RequestEntityTooLarge"
