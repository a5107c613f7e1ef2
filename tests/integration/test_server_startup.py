"""A second server, or a busy port, is refused with one line and touches nothing.

The running server's endpoint is invoked without pause while the second one tries to start:
every request must be answered, and its instances must be the same processes afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, free_port, start_server
from tests.integration.deploy import deploy, invoke_json

REFUSAL_SECONDS = 30.0
"""Generous: the refused server only imports and exits, but the machine may be busy."""

# Each test runs servers for 20 s or more (several starts, a kill -9, PostgreSQL).
pytestmark = pytest.mark.slow


def _pids(server: ShipwayServer, name: str) -> dict[str, int]:
    with server.client() as client:
        instances = client.get(f"/api/endpoints/{name}/instances").json()["Instances"]
    return {i["InstanceId"]: int(i["Pid"]) for i in instances if i["Status"] == "InService"}


def _start_refused(home: Path, port: int, env: dict[str, str] | None = None) -> list[str]:
    """``shipway server`` on this home and port, which must exit non-zero, soon; its stderr."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "shipway", "server", "--home", str(home), "--port", str(port)],
        env={**os.environ, "COLUMNS": "80", **(env or {})},
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=REFUSAL_SECONDS,
    )
    took = time.monotonic() - started
    stderr = done.stderr.decode()
    assert done.returncode == 1, (done.returncode, stderr)
    assert done.stdout == b"", done.stdout
    assert took < REFUSAL_SECONDS
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines


@contextmanager
def _invoking(server: ShipwayServer, name: str, rows: object) -> Iterator[list[int]]:
    """Invoke the endpoint without pause from a thread; yields the statuses seen so far."""
    statuses: list[int] = []
    stop = threading.Event()
    body = json.dumps(rows)

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        f"/endpoints/{name}/invocations",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    statuses.append(response.status_code)
                except httpx.HTTPError:
                    statuses.append(0)

    thread = threading.Thread(target=load, name="invoking")
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(60)


def test_a_second_server_or_a_busy_port_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    model = models.train_sklearn(tmp_path / "model")
    home = tmp_path / "home"
    first = start_server(home)
    try:
        deploy(first, "steady", str(model.folder), "sklearn", variants=[("AllTraffic", 2, 1.0)])
        pids = _pids(first, "steady")
        assert len(pids) == 2
        assert first.process is not None
        lock_before = (home / "server.lock").read_text()
        assert json.loads(lock_before)["pid"] == first.process.pid
        other_home = tmp_path / "other-home"

        with _invoking(first, "steady", model.rows[:1].tolist()) as statuses:
            time.sleep(0.5)
            [same_port] = _start_refused(home, first.port)
            [other_port] = _start_refused(home, free_port())
            [busy_port] = _start_refused(other_home, first.port)
            time.sleep(1.0)  # anything the refused servers set off would show by now

        in_use = (
            f"Error: {home} is in use by another Shipway server "
            f"(pid {first.process.pid}, {first.url}); stop it or use --home"
        )
        assert same_port == in_use
        assert other_port == in_use
        assert busy_port == (
            f"Error: 127.0.0.1:{first.port} is in use by another program; stop it or use --port"
        )
        assert not other_home.exists(), "a server refused for its port created its data dir"

        failures = [status for status in statuses if status != 200]
        assert not failures, f"{len(failures)} of {len(statuses)} requests failed: {failures[:5]}"
        assert len(statuses) > 20
        assert _pids(first, "steady") == pids, "the running server's instances were touched"
        assert (home / "server.lock").read_text() == lock_before
        assert "previous run" not in first.log()
        with first.client() as client:
            assert client.get("/api/endpoints/steady").json()["EndpointStatus"] == "InService"
    finally:
        first.stop()


def test_after_kill_9_the_next_server_starts_and_brings_the_endpoint_back(
    tmp_path: Path,
) -> None:
    model = models.train_sklearn(tmp_path / "model")
    home = tmp_path / "home"
    server = start_server(home)
    try:
        deploy(server, "phoenix", str(model.folder), "sklearn")
        old = set(_pids(server, "phoenix").values())
        server.stop(signal.SIGKILL)

        # the same data dir and port: the dead server's lock and socket are no obstacle
        server = ShipwayServer(home=home, port=server.port, env={})
        server.start()
        with server.client() as client:
            response = invoke_json(client, "phoenix", model.rows)
        assert response.status_code == 200, response.text
        assert response.json() == model.expected.tolist()
        assert server.wait_for_endpoint("phoenix")["EndpointStatus"] == "InService"
        new = set(_pids(server, "phoenix").values())
        assert new
        assert not new & old, "the endpoint's instances were not started afresh"
        assert server.process is not None
        assert json.loads((home / "server.lock").read_text())["pid"] == server.process.pid
    finally:
        server.stop()


@pytest.mark.postgres
def test_two_data_dirs_on_one_postgresql_database_are_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    model = models.train_sklearn(tmp_path / "model")
    env = {"SHIPWAY_DATABASE_URL": postgres_url}
    first = start_server(tmp_path / "home", env=env)
    try:
        deploy(first, "shared", str(model.folder), "sklearn")
        pids = _pids(first, "shared")
        with _invoking(first, "shared", model.rows[:1].tolist()) as statuses:
            [refused] = _start_refused(tmp_path / "home-2", free_port(), env=env)
            time.sleep(1.0)
        assert refused.startswith("Error: the database postgresql"), refused
        assert first.process is not None
        holder = f"(pid {first.process.pid}, {first.url})"
        assert f"is in use by another Shipway server {holder}" in refused, refused
        assert statuses
        assert all(status == 200 for status in statuses), statuses[-5:]
        assert _pids(first, "shared") == pids
    finally:
        first.stop()

    # once the first server has stopped, the database is free for another data dir
    second = start_server(tmp_path / "home-2", env=env)
    try:
        assert second.wait_for_endpoint("shared")["EndpointStatus"] == "InService"
    finally:
        second.stop()
