"""Asynchronous inference end to end: a real server, real instances, boto3's sagemaker-runtime.

The flow of AWS's async examples: upload the input, ``invoke_endpoint_async``, poll the output
location; and what can go wrong: a model error, a timeout, a missing input, calls of the wrong
kind, parameters out of range — each ends where SageMaker puts it, with nothing queued for bad
input.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, instance_processes, start_server
from tests.integration.rollouts import ROLE, aws

ASYNC_INFERENCE_PY = textwrap.dedent(
    """
    import json
    import zlib
    import os
    import time

    import joblib
    import numpy as np


    def model_fn(model_dir):
        return joblib.load(os.path.join(model_dir, "model.joblib"))


    def input_fn(body, content_type):
        if content_type == "application/octet-stream":
            return {"bytes": len(body), "crc32": zlib.crc32(body)}
        return json.loads(body)


    def predict_fn(data, model):
        if "bytes" in data:
            return data
        time.sleep(data.get("sleep", 0))
        if data.get("fail"):
            raise ValueError("the model was asked to fail")
        return model.predict(np.asarray(data["rows"])).tolist()


    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    running = start_server(tmp_path_factory.mktemp("async") / "home")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    trained = models.train_sklearn(tmp_path_factory.mktemp("async-model"))
    (trained.folder / "code").mkdir()
    (trained.folder / "code" / "inference.py").write_text(ASYNC_INFERENCE_PY)
    trained.image = "python"
    return trained


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where inputs are uploaded and outputs land (``file://`` URLs)."""
    return tmp_path_factory.mktemp("async-data")


def create_async_endpoint(
    server: ShipwayServer,
    name: str,
    model: models.Trained,
    data: Path,
    *,
    concurrency: int | None = None,
    count: int = 1,
    notifications: dict[str, Any] | None = None,
) -> Any:
    sagemaker = aws(server.url, "sagemaker")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": model.image, "ModelDataUrl": str(model.folder)},
        ExecutionRoleArn=ROLE,
    )
    output: dict[str, Any] = {
        "S3OutputPath": f"file://{data}/{name}/output",
        "S3FailurePath": f"file://{data}/{name}/failure",
    }
    if notifications:
        output["NotificationConfig"] = notifications
    config: dict[str, Any] = {"OutputConfig": output}
    if concurrency is not None:
        config["ClientConfig"] = {"MaxConcurrentInvocationsPerInstance": concurrency}
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": count,
            }
        ],
        AsyncInferenceConfig=config,
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    return sagemaker


def upload(data: Path, key: str, document: Any) -> str:
    path = data / "inputs" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return f"file://{path}"


def local(url: str) -> Path:
    assert url.startswith("file://"), url
    return Path(url[len("file://") :])


def wait_for_object(url: str, timeout: float = 60.0) -> bytes:
    """Poll an output location as AWS's examples do, until the object is there."""
    path = local(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_bytes()
        time.sleep(0.1)
    raise AssertionError(f"nothing at {url} after {timeout} s")


@pytest.fixture(scope="module")
def endpoint(server: ShipwayServer, model: models.Trained, data: Path) -> str:
    create_async_endpoint(server, "churn-async", model, data)
    return "churn-async"


def test_the_aws_example_flow_writes_the_answer_to_the_output_location(
    server: ShipwayServer, endpoint: str, model: models.Trained, data: Path
) -> None:
    runtime = aws(server.url, "sagemaker-runtime")
    input_location = upload(data, "rows.json", {"rows": model.rows.tolist()})

    response = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=input_location,
        ContentType="application/json",
        InferenceId="first-request",
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert response["InferenceId"] == "first-request"
    assert response["OutputLocation"] == f"file://{data}/{endpoint}/output/first-request.out"
    assert response["FailureLocation"] == (
        f"file://{data}/{endpoint}/failure/first-request-error.out"
    )
    answer = json.loads(wait_for_object(response["OutputLocation"]))
    np.testing.assert_array_equal(answer, model.expected)
    assert not local(response["FailureLocation"]).exists()
    sagemaker = aws(server.url, "sagemaker")
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert described["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == (
        f"file://{data}/{endpoint}/output"
    )


def test_a_generated_inference_id_an_output_path_extension_and_a_filename(
    server: ShipwayServer, endpoint: str, model: models.Trained, data: Path
) -> None:
    runtime = aws(server.url, "sagemaker-runtime")
    input_location = upload(data, "rows-2.json", {"rows": model.rows[:3].tolist()})

    generated = runtime.invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=input_location, ContentType="application/json"
    )
    named = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=input_location,
        ContentType="application/json",
        S3OutputPathExtension="customer-7/2026",
        Filename="scores.json",
    )

    inference_id = generated["InferenceId"]
    assert len(inference_id) == 36  # a UUID
    assert generated["OutputLocation"].endswith(f"/output/{inference_id}.out")
    assert named["OutputLocation"] == f"file://{data}/{endpoint}/output/customer-7/2026/scores.json"
    for response in (generated, named):
        answer = json.loads(wait_for_object(response["OutputLocation"]))
        np.testing.assert_array_equal(answer, model.expected[:3])


def test_an_inline_body_is_queued_like_an_input_object(
    server: ShipwayServer, endpoint: str, model: models.Trained
) -> None:
    runtime = aws(server.url, "sagemaker-runtime")
    response = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        Body=json.dumps({"rows": model.rows[:2].tolist()}).encode(),
        ContentType="application/json",
    )
    answer = json.loads(wait_for_object(response["OutputLocation"]))
    np.testing.assert_array_equal(answer, model.expected[:2])
    leftovers = server.home / "async-inputs"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and leftovers.exists() and any(leftovers.iterdir()):
        time.sleep(0.1)
    assert not leftovers.exists() or not any(leftovers.iterdir()), "inline body not removed"


def test_a_model_error_lands_in_the_failure_location_and_nothing_in_the_output(
    server: ShipwayServer, endpoint: str, model: models.Trained, data: Path
) -> None:
    runtime = aws(server.url, "sagemaker-runtime")
    input_location = upload(data, "fail.json", {"rows": model.rows.tolist(), "fail": True})

    response = runtime.invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=input_location, ContentType="application/json"
    )

    failure = wait_for_object(response["FailureLocation"]).decode()
    assert "the model was asked to fail" in failure
    time.sleep(0.5)
    assert not local(response["OutputLocation"]).exists()


def test_an_invocation_timeout_fails_the_request_with_the_reason(
    server: ShipwayServer, endpoint: str, model: models.Trained, data: Path
) -> None:
    runtime = aws(server.url, "sagemaker-runtime")
    input_location = upload(data, "slow.json", {"rows": model.rows.tolist(), "sleep": 4})

    response = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=input_location,
        ContentType="application/json",
        InvocationTimeoutSeconds=1,
    )

    failure = wait_for_object(response["FailureLocation"]).decode()
    assert "InvocationTimeoutSeconds of 1 s" in failure
    assert not local(response["OutputLocation"]).exists()


def test_a_realtime_call_to_an_async_endpoint_is_refused(
    server: ShipwayServer, endpoint: str, model: models.Trained
) -> None:
    runtime = aws(server.url, "sagemaker-runtime")
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(
            EndpointName=endpoint,
            Body=json.dumps({"rows": model.rows.tolist()}),
            ContentType="application/json",
        )
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "InvokeEndpointAsync" in caught.value.response["Error"]["Message"]


def test_async_call_to_a_realtime_endpoint_is_refused_and_nothing_is_queued(
    server: ShipwayServer, model: models.Trained, data: Path
) -> None:
    sagemaker = aws(server.url, "sagemaker")
    sagemaker.create_model(
        ModelName="realtime-only",
        PrimaryContainer={"Image": model.image, "ModelDataUrl": str(model.folder)},
        ExecutionRoleArn=ROLE,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="realtime-only",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "realtime-only",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="realtime-only", EndpointConfigName="realtime-only")
    runtime = aws(server.url, "sagemaker-runtime")
    input_location = upload(data, "realtime.json", {"rows": model.rows.tolist()})
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint_async(EndpointName="realtime-only", InputLocation=input_location)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "InvokeEndpoint" in caught.value.response["Error"]["Message"]
    with server.client() as client:
        listed = client.get("/api/async-invocations", params={"endpoint": "realtime-only"})
    assert listed.status_code == 200, listed.text
    assert listed.json()["AsyncInvocations"] == []


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"InputLocation": "file:///nowhere/missing.json"}, "does not exist"),
        ({"InputLocation": "ftp://example.com/input.json"}, "ftp://"),
        ({"InputLocation": "https://example.com/input.json"}, "https://"),
        ({"InputLocation": "{home}/shipway.db"}, "belongs to the Shipway server itself"),
        ({"RequestTTLSeconds": 99_999}, "requestTTLSeconds"),
        ({"InvocationTimeoutSeconds": 3601}, "invocationTimeoutSeconds"),
        ({"Filename": "two.dots.json"}, "filename"),
        ({"S3OutputPathExtension": "a/../../escape"}, "climbs out of the output path"),
    ],
)
def test_bad_input_is_the_aws_error_and_queues_nothing(
    server: ShipwayServer,
    endpoint: str,
    model: models.Trained,
    data: Path,
    parameters: dict[str, Any],
    message: str,
) -> None:
    runtime = aws(server.url, "sagemaker-runtime")
    arguments: dict[str, Any] = {
        "EndpointName": endpoint,
        "InputLocation": upload(data, "ok.json", {"rows": model.rows.tolist()}),
        "ContentType": "application/json",
        "InferenceId": "refused-request",
    }
    arguments.update(
        {k: v.format(home=server.home) if isinstance(v, str) else v for k, v in parameters.items()}
    )
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint_async(**arguments)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert message in caught.value.response["Error"]["Message"]
    with server.client() as client:
        assert client.get("/api/async-invocations/refused-request").status_code == 404


def test_an_async_config_writing_into_the_data_dir_is_refused(
    server: ShipwayServer, model: models.Trained
) -> None:
    sagemaker = aws(server.url, "sagemaker")
    with pytest.raises(ClientError) as caught:
        sagemaker.create_endpoint_config(
            EndpointConfigName="writes-home",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "churn-async",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
            AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": f"file://{server.home}/x"}},
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "belongs to the Shipway server itself" in caught.value.response["Error"]["Message"]


def test_requests_are_listed_and_shown_with_their_status(
    server: ShipwayServer, endpoint: str, model: models.Trained, data: Path
) -> None:
    runtime = aws(server.url, "sagemaker-runtime")
    response = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=upload(data, "listed.json", {"rows": model.rows.tolist()}),
        ContentType="application/json",
        InferenceId="listed-request",
    )
    wait_for_object(response["OutputLocation"])
    with server.client() as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            shown = client.get("/api/async-invocations/listed-request")
            assert shown.status_code == 200, shown.text
            if shown.json()["Status"] == "Completed":
                break
            time.sleep(0.1)
        document = shown.json()
        assert document["Status"] == "Completed"
        assert document["OutputLocation"] == response["OutputLocation"]
        assert document["EndpointName"] == endpoint
        listed = client.get("/api/async-invocations", params={"endpoint": endpoint}).json()
    assert "listed-request" in [r["InferenceId"] for r in listed["AsyncInvocations"]]


def test_backlog_metrics_reach_prometheus_and_cloudwatch(
    server: ShipwayServer, endpoint: str
) -> None:
    with server.client() as client:
        deadline = time.monotonic() + 10
        lines: list[str] = []
        while time.monotonic() < deadline and len(lines) < 4:
            text = client.get("/metrics").text
            lines = [
                line
                for line in text.splitlines()
                if f'endpoint_name="{endpoint}"' in line
                and any(
                    name in line
                    for name in (
                        "approximate_backlog_size{",
                        "approximate_backlog_size_per_instance{",
                        "approximate_age_of_oldest_request",
                        "has_backlog_without_capacity",
                    )
                )
            ]
            time.sleep(0.2)
    assert len(lines) >= 4, lines
    cloudwatch = aws(server.url, "cloudwatch")
    listed = cloudwatch.list_metrics(
        Namespace="AWS/SageMaker", Dimensions=[{"Name": "EndpointName", "Value": endpoint}]
    )
    names = {m["MetricName"] for m in listed["Metrics"]}
    assert {
        "ApproximateBacklogSize",
        "ApproximateBacklogSizePerInstance",
        "ApproximateAgeOfOldestRequest",
        "HasBacklogWithoutCapacity",
    } <= names


def wait_for_status(
    server: ShipwayServer, inference_id: str, timeout: float = 60
) -> dict[str, Any]:
    with server.client() as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = client.get(f"/api/async-invocations/{inference_id}").json()
            if shown.get("Status") in ("Completed", "Failed"):
                return dict(shown)
            time.sleep(0.1)
    raise AssertionError(f"{inference_id} not finished after {timeout} s")


def test_a_request_whose_instance_is_killed_runs_again_and_completes(
    server: ShipwayServer, model: models.Trained, data: Path
) -> None:
    create_async_endpoint(server, "lost-async", model, data, concurrency=1)
    runtime = aws(server.url, "sagemaker-runtime")
    response = runtime.invoke_endpoint_async(
        EndpointName="lost-async",
        InputLocation=upload(data, "lost.json", {"rows": model.rows.tolist(), "sleep": 2}),
        ContentType="application/json",
        InferenceId="lost-request",
    )
    with server.client() as client:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if client.get("/api/async-invocations/lost-request").json()["Status"] == "InProgress":
                break
            time.sleep(0.05)
    time.sleep(0.5)  # it is in the model now
    victims = instance_processes(server, "lost-async")
    assert victims
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    answer = json.loads(wait_for_object(response["OutputLocation"], timeout=60))
    np.testing.assert_array_equal(answer, model.expected)
    shown = wait_for_status(server, "lost-request")
    assert shown["Status"] == "Completed"
    assert shown["Attempts"] == 2


def test_no_instance_holds_more_than_max_concurrent_invocations(
    server: ShipwayServer, model: models.Trained, data: Path
) -> None:
    create_async_endpoint(server, "capped-async", model, data, concurrency=2)
    runtime = aws(server.url, "sagemaker-runtime")
    ids = []
    for index in range(6):
        ids.append(
            runtime.invoke_endpoint_async(
                EndpointName="capped-async",
                InputLocation=upload(
                    data, f"capped-{index}.json", {"rows": model.rows.tolist(), "sleep": 0.5}
                ),
                ContentType="application/json",
            )["InferenceId"]
        )
    most = 0
    with server.client() as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queue = client.get("/api/endpoints/capped-async/queue").json()
            most = max(most, queue["InProgress"])
            if queue["ApproximateBacklogSize"] == 0:
                break
            time.sleep(0.02)
    assert most == 2
    assert all(wait_for_status(server, i)["Status"] == "Completed" for i in ids)


def test_requests_queued_for_a_deleted_endpoint_fail_saying_so(
    server: ShipwayServer, model: models.Trained, data: Path
) -> None:
    sagemaker = create_async_endpoint(server, "doomed-async", model, data, concurrency=1)
    runtime = aws(server.url, "sagemaker-runtime")
    first = runtime.invoke_endpoint_async(
        EndpointName="doomed-async",
        InputLocation=upload(data, "doomed-0.json", {"rows": model.rows.tolist(), "sleep": 3}),
        ContentType="application/json",
    )
    queued = runtime.invoke_endpoint_async(
        EndpointName="doomed-async",
        InputLocation=upload(data, "doomed-1.json", {"rows": model.rows.tolist()}),
        ContentType="application/json",
    )
    time.sleep(0.5)
    sagemaker.delete_endpoint(EndpointName="doomed-async")

    failure = wait_for_object(queued["FailureLocation"], timeout=60).decode()
    assert "was deleted before the request ran" in failure
    assert wait_for_status(server, first["InferenceId"])["Status"] in ("Completed", "Failed")
