"""Body limits: the limit of a request, reading within it, and the platform's guard."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
import pytest
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.serialize import create_serializer

from shipway.api import body_limit
from shipway.api.body_limit import BodyLimits, BodyTooLarge, Disconnected, guard_body, read_body
from shipway.api.wire import SIGNING_NAMES, RequestWire, Wire, wire_of
from shipway.settings import Settings

LIMITS = BodyLimits(request=1024, invocation=4096)


def scope(path: str = "/api/models", headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    return {"type": "http", "method": "POST", "path": path, "headers": headers or []}


class Stream:
    """A ``receive`` over a list of body pieces; counts what was taken."""

    def __init__(self, *pieces: bytes, disconnect: bool = False) -> None:
        self.messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
            for i, p in enumerate(pieces)
        ]
        if disconnect:
            self.messages[-1]["more_body"] = True
            self.messages.append({"type": "http.disconnect"})
        self.taken = 0

    async def __call__(self) -> dict[str, Any]:
        self.taken += 1
        return self.messages.pop(0)


def guard(request: Any, receive: Stream, limit: int = 1024) -> tuple[Any, list[Any]]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def main() -> Any:
        guarded = await guard_body(request, receive, send, limit)
        if guarded is None:
            return None
        return [await guarded()]

    return asyncio.run(main()), sent


def test_invocations_take_the_payload_limit_and_everything_else_the_request_limit() -> None:
    assert LIMITS.of(scope("/endpoints/ep/invocations")) == 4096
    assert LIMITS.of(scope("/endpoints/ep/invocations-response-stream")) == 4096
    assert LIMITS.of(scope("/")) == 1024
    assert LIMITS.of({**scope("/endpoints/ep/invocations"), "method": "GET"}) == 1024


def test_a_body_is_read_and_hashed_within_its_limit() -> None:
    digest = hashlib.sha256()
    body = asyncio.run(read_body(Stream(b"ab", b"", b"cd"), 4, digest))
    assert body == b"abcd"
    assert digest.hexdigest() == hashlib.sha256(b"abcd").hexdigest()
    stream = Stream(b"ab", b"cd", b"e", b"f")
    with pytest.raises(BodyTooLarge) as caught:
        asyncio.run(read_body(stream, 4))
    assert (caught.value.size, caught.value.limit, stream.taken) == (5, 4, 3)
    with pytest.raises(Disconnected):
        asyncio.run(read_body(Stream(b"ab", disconnect=True), 4))


def test_a_declared_length_within_the_limit_passes_untouched() -> None:
    stream = Stream(b"x" * 1024)
    request = scope(headers=[(b"content-length", b"1024")])
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    assert asyncio.run(guard_body(request, stream, send, 1024)) is stream
    assert stream.taken == 0
    assert sent == []


def test_a_declared_length_over_the_limit_is_answered_unread() -> None:
    stream = Stream(b"x")
    request = scope(headers=[(b"content-length", b"1025")])
    result, sent = guard(request, stream)
    assert result is None
    assert stream.taken == 0
    assert sent[0]["status"] == 413
    assert orjson.loads(sent[1]["body"]) == {
        "code": "ValidationException",
        "message": "The request body of 1025 bytes or more exceeds the limit of 1024 bytes.",
    }


def test_a_body_without_a_length_is_read_within_the_limit_and_replayed() -> None:
    result, sent = guard(scope(), Stream(b"a" * 512, b"b" * 512))
    assert result == [{"type": "http.request", "body": b"a" * 512 + b"b" * 512, "more_body": False}]
    assert sent == []
    stream = Stream(b"a" * 512, b"b" * 513, b"never read")
    result, sent = guard(scope(), stream)
    assert result is None
    assert stream.taken == 2
    assert sent[0]["status"] == 413
    assert guard(scope(), Stream(b"a", disconnect=True)) == (None, [])


@pytest.mark.parametrize(
    ("request_scope", "code", "content_type"),
    [
        (
            scope("/", [(b"x-amz-target", b"SageMaker.CreateModel")]),
            "ValidationException",
            b"application/x-amz-json-1.1",
        ),
        (
            scope("/", [(b"x-amz-target", b"GraniteServiceVersion20100801.PutMetricData")]),
            "RequestEntityTooLarge",
            b"application/x-amz-json-1.1",
        ),
        (
            scope("/service/GraniteServiceVersion20100801/operation/PutMetricData"),
            "RequestEntityTooLarge",
            b"application/cbor",
        ),
        (
            scope("/", [(b"content-type", b"application/x-www-form-urlencoded")]),
            "RequestEntityTooLarge",
            b"text/xml",
        ),
        (scope("/endpoints/ep/invocations"), "ValidationError", b"application/json"),
    ],
)
def test_too_large_answers_in_the_wire_format(
    request_scope: Any, code: str, content_type: bytes
) -> None:
    request_scope["headers"].append((b"content-length", b"2000"))
    _, sent = guard(request_scope, Stream(b""))
    assert sent[0]["status"] == 413
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == content_type
    assert code.encode() in sent[1]["body"] or headers.get(b"x-amzn-errortype") == code.encode()


def test_each_wire_names_its_service_and_signing_name() -> None:
    assert wire_of(scope("/", [(b"x-amz-target", b"SageMaker.ListModels")])) == RequestWire(
        Wire.JSON, "SageMaker"
    )
    cbor = wire_of(scope("/service/GraniteServiceVersion20100801/operation/ListMetrics"))
    assert cbor == RequestWire(Wire.CBOR, "GraniteServiceVersion20100801")
    assert cbor.signing_name == "monitoring"
    assert wire_of(scope("/endpoints/ep/invocations")).signing_name == "sagemaker"
    assert wire_of(scope("/api/models")).signing_name == "sagemaker"
    unknown = wire_of(scope("/", [(b"x-amz-target", b"Nobody.Op")]))
    assert unknown.signing_name == "sagemaker"  # the SageMaker adapter answers it


def test_the_signing_names_are_botocores() -> None:
    loader = Loader()
    names = {
        "SageMaker": "sagemaker",
        "GraniteServiceVersion20100801": "cloudwatch",
        "AnyScaleFrontendService": "application-autoscaling",
    }
    for target, service in names.items():
        metadata = loader.load_service_model(service, "service-2")["metadata"]
        assert metadata.get("targetPrefix") == target
        signing_name = metadata.get("signingName", metadata["endpointPrefix"])
        assert SIGNING_NAMES[(Wire.JSON, target)] == signing_name
    runtime = loader.load_service_model("sagemaker-runtime", "service-2")["metadata"]
    assert SIGNING_NAMES[(Wire.RUNTIME, "")] == runtime["signingName"]


def test_the_largest_legitimate_create_model_fits_the_default_limit_twice() -> None:
    """15 containers with every member at its length limit, 32 KB of environment and 50 tags
    in non-ASCII text (boto3 escapes each such character into 6 bytes)."""
    model = ServiceModel(Loader().load_service_model("sagemaker", "service-2"), "sagemaker")
    containers = []
    for i in range(15):
        env = {f"K{i}_{j}": "\u20ac" * 1000 for j in range(2)}
        env[f"K{i}_2"] = "\u20ac" * (32 * 1024 // 15 - 2000 - 15)
        containers.append(
            {
                "ContainerHostname": "h" * 63,
                "Image": "i" * 255,
                "ImageConfig": {
                    "RepositoryAccessMode": "Vpc",
                    "RepositoryAuthConfig": {"RepositoryCredentialsProviderArn": "a" * 2048},
                },
                "ModelDataUrl": "s3://" + "b" * 1019,
                "AdditionalModelDataSources": [
                    {
                        "ChannelName": "c" * 64,
                        "S3DataSource": {
                            "S3Uri": "s3://" + "b" * 1019,
                            "S3DataType": "S3Prefix",
                            "CompressionType": "None",
                        },
                    }
                ]
                * 5,
                "Environment": env,
                "ModelPackageName": "p" * 176,
                "InferenceSpecificationName": "n" * 63,
            }
        )
    params = {
        "ModelName": "m" * 63,
        "Containers": containers,
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/" + "r" * 2000,
        "Tags": [{"Key": "\u20ac" * 128, "Value": "\u20ac" * 256}] * 50,
        "VpcConfig": {"SecurityGroupIds": ["sg-" + "0" * 29] * 5, "Subnets": ["subnet-1"] * 16},
    }
    request = create_serializer("json").serialize_to_request(
        params, model.operation_model("CreateModel")
    )
    size = len(request["body"])
    assert 400_000 < size < Settings.model_fields["max_request_bytes"].default / 2


def test_the_public_surface_is_pinned() -> None:
    assert sorted(body_limit.__all__) == [
        "BodyLimits",
        "BodyTooLarge",
        "Disconnected",
        "declared_length",
        "guard_body",
        "read_body",
        "refuse_too_large",
        "replay",
    ]
