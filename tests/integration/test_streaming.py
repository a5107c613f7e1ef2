"""InvokeEndpointWithResponseStream end to end: a real server, real instances, boto3's own client.

The model's ``transform_fn`` returns a generator: the model server streams it as HTTP chunks, the
router relays them as they arrive, and the runtime API sends each as a ``PayloadPart`` event.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import httpx
import pytest
from botocore.eventstream import EventStreamBuffer

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, module_server, run_model_server, start_server
from tests.integration.deploy import deploy

TOKENS_PY = textwrap.dedent(
    """
    import json
    import time


    def model_fn(model_dir):
        return "tokens"


    def transform_fn(model, body, content_type, accept):
        request = json.loads(body)
        if request.get("refuse"):
            raise ValueError("refused before the first token")

        def generate():
            for index, token in enumerate(request["tokens"]):
                if index == request.get("fail_at"):
                    raise RuntimeError("generation failed")
                if index == request.get("stall_at"):
                    time.sleep(request["stall"])
                time.sleep(request.get("delay", 0.0))
                yield json.dumps({"token": token, "at": time.time()}) + "\\n"

        return generate(), "application/jsonlines"
    """
)

STALL_FINISHED = 3.0
"""How long the stall test's model sleeps mid-stream (the server's model timeout is 1 s)."""


def tokens_model(folder: Path) -> Path:
    (folder / "code").mkdir(parents=True, exist_ok=True)
    (folder / "code" / "inference.py").write_text(TOKENS_PY)
    return folder


def runtime_client(server: ShipwayServer) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-checked-when-auth-is-off",
    )


server = module_server("streaming")


@pytest.fixture(scope="module")
def runtime(server: ShipwayServer) -> Iterator[Any]:
    client = runtime_client(server)
    yield client
    client.close()


@pytest.fixture(scope="module")
def tokens_endpoint(server: ShipwayServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tokens_model(tmp_path_factory.mktemp("tokens") / "model")
    described = deploy(server, "tokens", str(folder), "python")
    assert described["EndpointStatus"] == "InService", described
    return "tokens"


def stream(runtime: Any, endpoint: str, request: dict[str, Any]) -> Any:
    return runtime.invoke_endpoint_with_response_stream(
        EndpointName=endpoint,
        Body=json.dumps(request).encode(),
        ContentType="application/json",
        Accept="application/jsonlines",
    )


def drain(body: Any) -> tuple[bytes, Any]:
    """The bytes of the PayloadParts, and the EventStreamError that ended the stream if any."""
    received = b""
    try:
        for event in body:
            assert set(event) == {"PayloadPart"}
            received += event["PayloadPart"]["Bytes"]
    except botocore.exceptions.EventStreamError as exc:
        return received, exc
    finally:
        body.close()
    return received, None


def lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def raw_events(server: ShipwayServer, endpoint: str, request: dict[str, Any]) -> list[Any]:
    """The event stream messages, read without boto3 (to see what it does not show)."""
    buffer = EventStreamBuffer()
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            f"{server.url}/endpoints/{endpoint}/invocations-response-stream",
            content=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
        for data in response.iter_raw():
            buffer.add_data(data)
    return list(buffer)


def test_tokens_arrive_in_order_as_they_are_generated(runtime: Any, tokens_endpoint: str) -> None:
    words = ["The", " quick", " brown", " fox", " jumps", " over"]

    response = stream(runtime, tokens_endpoint, {"tokens": words, "delay": 0.2})

    assert response["ContentType"] == "application/jsonlines"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    received = b""
    first_arrived = None
    for event in response["Body"]:
        assert set(event) == {"PayloadPart"}
        if first_arrived is None:
            first_arrived = time.time()
        received += event["PayloadPart"]["Bytes"]
    produced = lines(received)
    assert [item["token"] for item in produced] == words
    assert first_arrived is not None
    # the first part reached the caller while the model was still generating
    assert first_arrived < produced[-1]["at"] - 0.5


def test_the_same_model_answers_invoke_endpoint_whole(runtime: Any, tokens_endpoint: str) -> None:

    response = runtime.invoke_endpoint(
        EndpointName=tokens_endpoint,
        Body=json.dumps({"tokens": ["a", "b", "c"]}).encode(),
        ContentType="application/json",
    )

    assert response["ContentType"] == "application/jsonlines"
    assert [item["token"] for item in lines(response["Body"].read())] == ["a", "b", "c"]


def test_a_generator_that_fails_midway_breaks_the_stream(
    server: ShipwayServer, runtime: Any, tokens_endpoint: str
) -> None:
    request = {"tokens": ["a", "b", "c", "d"], "fail_at": 2, "delay": 0.05}

    received, error = drain(stream(runtime, tokens_endpoint, request)["Body"])

    assert isinstance(error, botocore.exceptions.EventStreamError)
    assert error.response["Error"]["Code"] == "ModelStreamError"
    assert [item["token"] for item in lines(received)] == ["a", "b"]
    # the event's payload says how: the stream broke
    *parts, event = raw_events(server, tokens_endpoint, request)
    assert [part.headers[":event-type"] for part in parts] == ["PayloadPart"] * len(parts)
    assert event.headers[":message-type"] == "exception"
    assert event.headers[":exception-type"] == "ModelStreamError"
    assert json.loads(event.payload)["ErrorCode"] == "StreamBroken"
    # the instance is fine: it keeps serving
    again = stream(runtime, tokens_endpoint, {"tokens": ["ok"]})
    assert [e["PayloadPart"]["Bytes"] for e in again["Body"]] != []


def test_a_failure_before_the_first_token_is_a_model_error(
    runtime: Any, tokens_endpoint: str
) -> None:

    with pytest.raises(runtime.exceptions.ModelError) as raised:
        stream(runtime, tokens_endpoint, {"tokens": ["a"], "refuse": True})

    assert raised.value.response["OriginalStatusCode"] == 500
    assert "refused before the first token" in raised.value.response["OriginalMessage"]


def test_a_model_that_does_not_stream_answers_in_one_part(
    server: ShipwayServer, runtime: Any, tmp_path: Path
) -> None:
    trained = models.train_sklearn(tmp_path / "sklearn")
    deploy(server, "plain", str(trained.folder), "sklearn")

    response = runtime.invoke_endpoint_with_response_stream(
        EndpointName="plain",
        Body=json.dumps(trained.rows.tolist()).encode(),
        ContentType="application/json",
        Accept="application/json",
    )

    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    events = list(response["Body"])
    assert len(events) == 1
    assert json.loads(events[0]["PayloadPart"]["Bytes"]) == trained.expected.tolist()


def test_an_unknown_endpoint_fails_before_any_stream(runtime: Any) -> None:

    with pytest.raises(botocore.exceptions.ClientError) as raised:
        runtime.invoke_endpoint_with_response_stream(EndpointName="nowhere", Body=b"{}")

    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert raised.value.response["Error"]["Message"] == (
        "Endpoint nowhere of account 123456789012 not found."
    )


def test_an_oversized_body_fails_before_any_stream(
    server: ShipwayServer, tokens_endpoint: str
) -> None:
    with httpx.Client(timeout=30) as client:
        response = client.post(
            f"{server.url}/endpoints/{tokens_endpoint}/invocations-response-stream",
            content=b"x" * (6 * 1024 * 1024 + 1),
        )

    assert response.status_code == 413
    assert response.headers["x-amzn-errortype"] == "ValidationError"


def test_a_stall_longer_than_the_model_timeout(tmp_path: Path) -> None:
    slow = start_server(tmp_path / "home", env={"SHIPWAY_MODEL_TIMEOUT_SECONDS": "1"})
    try:
        deploy(slow, "stall", str(tokens_model(tmp_path / "model")), "python")
        runtime = runtime_client(slow)
        request = {"tokens": ["a", "b", "c"], "stall_at": 2, "stall": STALL_FINISHED}

        started = time.monotonic()
        received, error = drain(stream(runtime, "stall", request)["Body"])
        runtime.close()

        assert time.monotonic() - started < STALL_FINISHED - 0.5
        assert isinstance(error, botocore.exceptions.EventStreamError)
        assert error.response["Error"] == {
            "Code": "ModelStreamError",
            "Message": (
                "Your model primary did not complete sending the inference response in the "
                "allotted time."
            ),
        }
        assert [item["token"] for item in lines(received)] == ["a", "b"]
        time.sleep(STALL_FINISHED)  # the model finishes its generator; it keeps serving
        *_, event = raw_events(slow, "stall", request)
        assert json.loads(event.payload)["ErrorCode"] == "ModelInvocationTimeExceeded"
    finally:
        slow.stop()


# --- the model server alone ------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tokens_model(tmp_path_factory.mktemp("ms-stream") / "model")
    with run_model_server("--runtime", "python", "--model-dir", str(folder)) as url:
        yield url


def test_the_model_server_streams_chunks_and_keeps_answering_pings(model_server: str) -> None:
    request = {"tokens": ["a", "b", "c", "d"], "delay": 0.3}
    chunks: list[bytes] = []
    pings: list[float] = []

    def ping_meanwhile() -> None:
        time.sleep(0.4)
        started = time.monotonic()
        assert httpx.get(f"{model_server}/ping", timeout=5).status_code == 200
        pings.append(time.monotonic() - started)

    pinger = threading.Thread(target=ping_meanwhile)
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST",
            f"{model_server}/invocations",
            content=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status_code == 200
            assert response.headers["transfer-encoding"] == "chunked"
            assert response.headers["content-type"] == "application/jsonlines"
            pinger.start()
            chunks.extend(response.iter_raw())
        pinger.join()

    assert [item["token"] for item in lines(b"".join(chunks))] == ["a", "b", "c", "d"]
    assert len(chunks) >= 2  # tokens 0.3 s apart cannot all arrive in one read
    assert len(pings) == 1
    assert pings[0] < 0.5  # a blocked event loop would answer after the last token


def test_the_model_server_ends_a_failed_stream_abnormally(model_server: str) -> None:
    request = {"tokens": ["a", "b", "c"], "fail_at": 1}
    received = b""
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST",
            f"{model_server}/invocations",
            content=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status_code == 200
            broken = False
            try:
                for data in response.iter_raw():
                    received += data
            except httpx.RemoteProtocolError:  # closed without the terminating chunk
                broken = True
            assert broken
        # the server is still there
        assert client.get(f"{model_server}/ping").status_code == 200

    assert [item["token"] for item in lines(received)] == ["a"]
