"""Instances and servers that die: only in-flight requests fail, and everything comes back."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, start_server
from tests.integration.deploy import deploy, invoke_json


def _instances(server: ShipwayServer, name: str) -> list[dict[str, object]]:
    with server.client() as client:
        found: list[dict[str, object]] = client.get(f"/api/endpoints/{name}/instances").json()[
            "Instances"
        ]
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_kill_9_of_an_instance_under_load_fails_only_its_in_flight_requests(
    shipway_server: ShipwayServer, tmp_path: Path
) -> None:
    model = models.train_sklearn(tmp_path / "model")
    deploy(shipway_server, "sturdy", str(model.folder), "sklearn", variants=[("AllTraffic", 2, 1)])
    before = _instances(shipway_server, "sturdy")
    assert [i["Status"] for i in before] == ["InService", "InService"]
    body = json.dumps(model.rows[:1].tolist())
    outcomes: list[tuple[float, int]] = []
    stop = threading.Event()
    workers = 4

    def load() -> None:
        with httpx.Client(base_url=shipway_server.url, timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    "/endpoints/sturdy/invocations",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                outcomes.append((time.monotonic(), response.status_code))

    threads = [threading.Thread(target=load) for _ in range(workers)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    victim = before[0]
    killed_at = time.monotonic()
    os.kill(int(str(victim["Pid"])), signal.SIGKILL)
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join()

    failures = [status for _, status in outcomes if status != 200]
    served_after = [s for t, s in outcomes if t > killed_at + 0.2]
    # at most the requests that were in flight on the victim (one per load thread) fail
    assert len(failures) <= workers, failures
    assert served_after
    assert all(s == 200 for s in served_after)
    assert len(outcomes) > 200

    # the controller replaces the dead instance
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = _instances(shipway_server, "sturdy")
        ids = {i["InstanceId"] for i in now if i["Status"] == "InService"}
        if len(ids) == 2 and victim["InstanceId"] not in ids:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"not replaced: {now}\n{shipway_server.log()}")
    with shipway_server.client() as client:
        assert invoke_json(client, "sturdy", model.rows[:3]).status_code == 200


def test_restarting_the_server_brings_endpoints_back(tmp_path: Path) -> None:
    model = models.train_sklearn(tmp_path / "model")
    home = tmp_path / "home"
    server = start_server(home)
    try:
        deploy(server, "durable", str(model.folder), "sklearn")
        pids = [int(str(i["Pid"])) for i in _instances(server, "durable")]
        assert server.stop(signal.SIGTERM) == 0
        assert not any(_alive(pid) for pid in pids), "instances outlived a clean shutdown"

        server = start_server(home)  # same data dir, no create call
        with server.client() as client:
            # the first request waits for an instance rather than being answered 503
            response = invoke_json(client, "durable", model.rows)
        assert response.status_code == 200, response.text
        assert response.json() == model.expected.tolist()
        described = server.wait_for_endpoint("durable")
        assert described["EndpointStatus"] == "InService"
    finally:
        server.stop()


def test_kill_9_of_the_server_leaves_no_instances_behind(tmp_path: Path) -> None:
    model = models.train_sklearn(tmp_path / "model")
    server = start_server(tmp_path / "home")
    try:
        deploy(server, "orphans", str(model.folder), "sklearn")
        pids = [int(str(i["Pid"])) for i in _instances(server, "orphans")]
    finally:
        server.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids), "instances outlived their server"


SLOW_INFERENCE = """
import time


def model_fn(model_dir):
    return None


def transform_fn(model, body, content_type, accept):
    time.sleep(float(body))
    return body, "text/plain"
"""


def test_a_model_slower_than_the_timeout_is_a_model_error(tmp_path: Path) -> None:
    folder = tmp_path / "slow"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(SLOW_INFERENCE)
    server = start_server(tmp_path / "home", env={"SHIPWAY_MODEL_TIMEOUT_SECONDS": "1"})
    try:
        deploy(server, "slow", str(folder), "python")
        with server.client() as client:
            quick = client.post("/endpoints/slow/invocations", content=b"0.01")
            assert quick.status_code == 200
            assert quick.text == "0.01"
            started = time.monotonic()
            late = client.post("/endpoints/slow/invocations", content=b"3")
            assert time.monotonic() - started < 2.5
            assert late.status_code == 424
            assert late.headers["x-amzn-errortype"] == "ModelError"
            assert "timed out" in late.json()["Message"]
            time.sleep(2.5)  # the instance finishes the late request; it keeps serving
            again = client.post("/endpoints/slow/invocations", content=b"0.01")
            assert again.status_code == 200
    finally:
        server.stop()


@pytest.mark.postgres
def test_on_postgresql_a_killed_server_comes_back_with_its_endpoints(
    tmp_path: Path, postgres_url: str
) -> None:
    """The scale-out metadata store: the same life cycle with PostgreSQL instead of SQLite."""
    model = models.train_sklearn(tmp_path / "model")
    env = {"SHIPWAY_DATABASE_URL": postgres_url}
    server = start_server(tmp_path / "home", env=env)
    try:
        deploy(server, "pg", str(model.folder), "sklearn")
        with server.client() as client:
            assert invoke_json(client, "pg", model.rows).json() == model.expected.tolist()
        server.stop(signal.SIGKILL)
        assert not (tmp_path / "home" / "shipway.db").exists()  # the state is in PostgreSQL

        server = start_server(tmp_path / "home-2", env=env)  # another data dir, same database
        assert server.wait_for_endpoint("pg")["EndpointStatus"] == "InService"
        deadline = time.monotonic() + 30
        with server.client() as client:
            while (response := invoke_json(client, "pg", model.rows)).status_code == 503:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
            assert response.status_code == 200, response.text
            assert response.json() == model.expected.tolist()
            assert client.delete("/api/endpoints/pg").status_code == 204
    finally:
        server.stop()


def test_deleting_an_endpoint_drains_the_requests_in_flight(tmp_path: Path) -> None:
    folder = tmp_path / "slow"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(SLOW_INFERENCE)
    server = start_server(tmp_path / "home")
    try:
        deploy(server, "draining", str(folder), "python")
        answers: list[httpx.Response] = []

        def slow_call() -> None:
            with server.client() as client:
                answers.append(client.post("/endpoints/draining/invocations", content=b"1.5"))

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.5)  # the request is in the model now
        with server.client() as client:
            assert client.delete("/api/endpoints/draining").status_code == 204
            time.sleep(0.2)
            refused = client.post("/endpoints/draining/invocations", content=b"0")
        caller.join()
        assert answers[0].status_code == 200, answers[0].text
        assert answers[0].text == "1.5"
        assert refused.status_code == 400  # Deleting: no new requests
    finally:
        server.stop()
