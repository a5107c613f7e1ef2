"""Asynchronous inference survives the server: kill -9 with a thousand requests queued and some in
flight, and after a restart every request completes exactly once; a 1 GB input passes through
the server a few MiB at a time.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import signal
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, start_server
from tests.fixtures.sns_subscriber import Subscriber
from tests.integration.rollouts import aws
from tests.integration.test_async import ASYNC_INFERENCE_PY, create_async_endpoint, local

REQUESTS = 1000
GIB = 1024**3


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    trained = models.train_sklearn(tmp_path_factory.mktemp("durable-model"))
    (trained.folder / "code").mkdir()
    (trained.folder / "code" / "inference.py").write_text(ASYNC_INFERENCE_PY)
    trained.image = "python"
    return trained


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def queue_env(backend: str, redis_url: str | None) -> dict[str, str]:
    if backend == "sqlite":
        return {}
    assert redis_url is not None
    return {"SHIPWAY_QUEUE_URL": redis_url, "SHIPWAY_QUEUE_NAMESPACE": f"t{uuid.uuid4().hex}"}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_kill_9_with_a_thousand_requests_queued_loses_and_repeats_nothing(
    tmp_path: Path, model: models.Trained, backend: str, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    env = queue_env(backend, redis_url)
    server = start_server(tmp_path / "home", env=env)
    subscriber = Subscriber().start()
    try:
        sns = aws(server.url, "sns")
        topic = sns.create_topic(Name="durable-done")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=subscriber.url())
        subscriber.wait_for(lambda: subscriber.confirmations, 20, "the confirmation")
        create_async_endpoint(
            server,
            "durable",
            model,
            tmp_path,
            concurrency=4,
            notifications={"SuccessTopic": topic},
        )
        inputs = tmp_path / "inputs"
        inputs.mkdir()
        local_thread = threading.local()
        connections: list[http.client.HTTPConnection] = []

        def submit(index: int) -> str:
            """InvokeEndpointAsync as the runtime wire takes it (a plain kept-alive client:
            boto3's signing would cost more CPU than the server's work)."""
            path = inputs / f"{index}.json"
            path.write_text(json.dumps({"rows": model.rows[:2].tolist(), "sleep": 0.01}))
            if not hasattr(local_thread, "connection"):
                local_thread.connection = http.client.HTTPConnection("127.0.0.1", server.port)
                connections.append(local_thread.connection)
            connection: http.client.HTTPConnection = local_thread.connection
            connection.request(
                "POST",
                "/endpoints/durable/async-invocations",
                headers={
                    "X-Amzn-SageMaker-InputLocation": f"file://{path}",
                    "X-Amzn-SageMaker-Content-Type": "application/json",
                    "X-Amzn-SageMaker-Inference-Id": f"request-{index}",
                    "Content-Length": "0",
                },
            )
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 202, answer.status
            return str(answer.getheader("X-Amzn-SageMaker-OutputLocation"))

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            outputs = list(pool.map(submit, range(REQUESTS)))
        for connection in connections:
            connection.close()
        output_dir = local(outputs[0]).parent
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(output_dir.glob("*.out"))) < 50:
            time.sleep(0.05)
        done_before = len(list(output_dir.glob("*.out")))
        assert 0 < done_before < REQUESTS, "the kill must find requests queued"
    finally:
        server.stop(signal.SIGKILL)

    restarted = ShipwayServer(home=server.home, port=server.port, env=env)
    restarted.start()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with restarted.client() as client:
                queue = client.get("/api/endpoints/durable/queue").json()
            if queue["ApproximateBacklogSize"] == 0:
                break
            time.sleep(0.5)
        assert queue["ApproximateBacklogSize"] == 0, queue
        written = sorted(p.name for p in output_dir.glob("*.out"))
        assert written == sorted(f"request-{i}.out" for i in range(REQUESTS))
        for url in outputs[:: REQUESTS // 20]:
            assert json.loads(local(url).read_text()) == model.expected[:2].tolist()
        leftovers = [p.name for p in output_dir.iterdir() if not p.name.endswith(".out")]
        assert leftovers == [], "partial outputs left behind"
        statuses: dict[str, int] = {}
        redelivered = 0
        with restarted.client() as client:
            token = None
            while True:
                params: dict[str, Any] = {"endpoint": "durable", "max_results": 1000}
                if token:
                    params["next_token"] = token
                page = client.get("/api/async-invocations", params=params).json()
                for item in page["AsyncInvocations"]:
                    statuses[item["Status"]] = statuses.get(item["Status"], 0) + 1
                    redelivered += item["Attempts"] > 1
                token = page.get("NextToken")
                if not token:
                    break
        assert statuses == {"Completed": REQUESTS}

        def notified() -> dict[str, set[str]]:
            """The MessageIds each request was notified under."""
            found: dict[str, set[str]] = {}
            for received in subscriber.messages("Notification"):
                inference_id = json.loads(received.body["Message"])["inferenceId"]
                found.setdefault(inference_id, set()).add(received.body["MessageId"])
            return found

        subscriber.wait_for(lambda: len(notified()) == REQUESTS, 60, "every notification")
        time.sleep(1.0)  # anything still on its way
        messages = notified()
        assert sorted(messages) == sorted(f"request-{i}" for i in range(REQUESTS))
        # one message per request, however often it ran: a rerun publishes nothing new
        assert all(len(ids) == 1 for ids in messages.values()), [
            (request, ids) for request, ids in messages.items() if len(ids) > 1
        ]
        # SNS's HTTP delivery is at least once (as AWS's): a POST the subscriber answered just
        # as the server was killed is sent again, under the same MessageId, which subscribers
        # deduplicate on; only such a window may repeat one
        posts = len(subscriber.messages("Notification"))
        assert posts - REQUESTS <= 8, f"{posts - REQUESTS} deliveries repeated"
        print(f"{posts - REQUESTS} deliveries repeated (same MessageId) across the kill")
        assert not (failure_dir := tmp_path / "durable" / "failure").exists() or not any(
            failure_dir.iterdir()
        )
        print(f"{done_before} done before the kill; {redelivered} taken again after it")
    finally:
        restarted.stop()
        subscriber.stop()


@pytest.mark.slow
def test_a_1_gb_input_passes_with_the_server_growing_less_than_100_mib(
    tmp_path: Path, model: models.Trained
) -> None:
    server = start_server(tmp_path / "home")
    try:
        create_async_endpoint(server, "large", model, tmp_path)
        payload = tmp_path / "inputs" / "large.bin"
        payload.parent.mkdir()
        block = os.urandom(1024 * 1024)
        checksum = 0
        with payload.open("wb") as file:
            for _ in range(GIB // len(block)):
                file.write(block)
                checksum = zlib.crc32(block, checksum)
        assert server.process is not None
        pid = server.process.pid
        before = rss_kib(pid)
        runtime = aws(server.url, "sagemaker-runtime")
        response = runtime.invoke_endpoint_async(
            EndpointName="large",
            InputLocation=f"file://{payload}",
            ContentType="application/octet-stream",
        )
        output = local(response["OutputLocation"])
        peak = before
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not output.exists():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.02)
        assert output.exists(), server.log()
        answer = json.loads(output.read_text())
        assert answer == {"bytes": GIB, "crc32": checksum}
        grown_mib = (peak - before) / 1024
        print(f"server RSS {before / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB")
        assert grown_mib < 100, f"the server grew by {grown_mib:.0f} MiB"
    finally:
        server.stop()
