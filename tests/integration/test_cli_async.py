"""``shipway invoke --async``, ``shipway async`` and the queue in ``shipway endpoints describe``,
against a real server with real asynchronous endpoints (the model of test_async.py, which can
be told to fail or to take its time)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import Result

from shipway.cli.client import ShipwayClient
from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, start_server
from tests.integration.deploy import deploy
from tests.integration.test_async import (
    ASYNC_INFERENCE_PY,
    create_async_endpoint,
    local,
    upload,
    wait_for_object,
)
from tests.integration.test_cli import error, shipway

ENDPOINT = "cli-async"
SERIAL = "cli-serial"
"""One request at a time (MaxConcurrentInvocationsPerInstance 1): a backlog can be seen."""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    trained = models.train_sklearn(tmp_path_factory.mktemp("cli-async-model"))
    (trained.folder / "code").mkdir()
    (trained.folder / "code" / "inference.py").write_text(ASYNC_INFERENCE_PY)
    trained.image = "python"
    return trained


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-async-data")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, model: models.Trained, data: Path
) -> Iterator[ShipwayServer]:
    running = start_server(tmp_path_factory.mktemp("cli-async") / "home")
    try:
        create_async_endpoint(running, ENDPOINT, model, data)
        create_async_endpoint(running, SERIAL, model, data, concurrency=1)
        deploy(running, "cli-realtime", str(model.folder), model.image)
        yield running
    finally:
        running.stop()


def rows(model: models.Trained, n: int, **extra: object) -> str:
    return json.dumps({"rows": model.rows[:n].tolist(), **extra})


def fields(result: Result) -> dict[str, str]:
    """The ``Name   value`` lines ``invoke --async`` prints."""
    found = {}
    for line in result.stdout.splitlines():
        name, _, value = line.partition(" ")
        if name in ("InferenceId", "OutputLocation", "FailureLocation"):
            found[name] = value.strip()
    return found


def settled(server: ShipwayServer, inference_id: str, timeout: float = 60.0) -> str:
    """The request's final status, once the server recorded it."""
    client = ShipwayClient(server.url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.describe_async_invocation(inference_id).status
        if status.finished:
            return status.value
        time.sleep(0.1)
    raise AssertionError(f"{inference_id} still {status.value} after {timeout} s")


def test_invoke_async_with_an_input_location_then_show_and_list_it(
    server: ShipwayServer, model: models.Trained, data: Path
) -> None:
    url = server.url
    location = upload(data, "cli-rows.json", {"rows": model.rows.tolist()})

    queued = shipway(
        url,
        "invoke",
        ENDPOINT,
        "--async",
        "--input-location",
        location,
        "--inference-id",
        "from-a-file",
    )

    assert fields(queued) == {
        "InferenceId": "from-a-file",
        "OutputLocation": f"file://{data}/{ENDPOINT}/output/from-a-file.out",
        "FailureLocation": f"file://{data}/{ENDPOINT}/failure/from-a-file-error.out",
    }
    assert queued.stderr.strip() == "sent the input as application/json (from the extension .json)"
    answer = json.loads(wait_for_object(fields(queued)["OutputLocation"]))
    np.testing.assert_array_equal(answer, model.expected)
    assert settled(server, "from-a-file") == "Completed"

    shown = shipway(url, "async", "show", "from-a-file")
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["Request", "from-a-file"]
    for text in (
        f"Endpoint      {ENDPOINT}",
        "Status        Completed",
        f"Input         {location}, ",
        "Content type  application/json",
        f"Output        file://{data}/{ENDPOINT}/output/from-a-file.out",
        "Attempts      1",
        "TTL           21600 s in the queue",
        "Timeout       900 s to answer",
        "Variant       AllTraffic (application/json)",
    ):
        assert text in shown.stdout, shown.stdout
    assert "Failure " not in shown.stdout
    document = json.loads(shipway(url, "async", "show", "from-a-file", "--json").stdout)
    assert document["InferenceId"] == "from-a-file"
    assert document["Status"] == "Completed"
    assert document["InputLocation"] == location
    times = [datetime.fromisoformat(document[k]) for k in ("EnqueuedTime", "StartTime", "EndTime")]
    assert times == sorted(times)

    table = shipway(url, "async", "list", "--endpoint", ENDPOINT)
    row = next(line for line in table.stdout.splitlines() if "from-a-file" in line)
    assert ENDPOINT in row
    assert "Completed" in row
    completed = shipway(url, "async", "list", "--status", "completed", "--json").stdout
    assert "from-a-file" in [r["InferenceId"] for r in json.loads(completed)["AsyncInvocations"]]
    failed = shipway(url, "async", "list", "--status", "Failed", "--json").stdout
    assert "from-a-file" not in [r["InferenceId"] for r in json.loads(failed)["AsyncInvocations"]]
    elsewhere = shipway(url, "async", "list", "--endpoint", SERIAL, "--json").stdout
    assert "from-a-file" not in elsewhere


def test_invoke_async_inline_and_wait_prints_the_outcome(
    server: ShipwayServer, model: models.Trained, data: Path, tmp_path: Path
) -> None:
    body = rows(model, 3)
    waited = shipway(
        server.url,
        "invoke",
        ENDPOINT,
        "--async",
        "--body",
        body,
        "--inference-id",
        "inline-waited",
        "--wait",
    )

    output = f"file://{data}/{ENDPOINT}/output/inline-waited.out"
    assert fields(waited)["OutputLocation"] == output
    assert re.search(
        r"^Completed: request inline-waited answered in [\d.]+ s \([\d.]+ s queued\)$",
        waited.stdout,
        re.MULTILINE,
    ), waited.stdout
    assert f"The answer is at {output}" in waited.stdout
    assert f"sent {len(body)} bytes as application/json (the body is valid JSON)" in waited.stderr
    # the answer was written before the request was recorded Completed: no polling needed
    np.testing.assert_array_equal(json.loads(local(output).read_bytes()), model.expected[:3])

    file = tmp_path / "rows.json"
    file.write_text(rows(model, 2))
    named = shipway(
        server.url,
        "invoke",
        ENDPOINT,
        "--async",
        "--file",
        str(file),
        "--output-path-extension",
        "team-a/2026",
        "--filename",
        "scores.json",
        "--ttl",
        "120",
        "--timeout",
        "30",
        "--wait",
        "--verbose",
    )
    scores = f"file://{data}/{ENDPOINT}/output/team-a/2026/scores.json"
    assert fields(named)["OutputLocation"] == scores
    np.testing.assert_array_equal(json.loads(local(scores).read_bytes()), model.expected[:2])
    assert "Variant AllTraffic answered application/json" in named.stderr
    inference_id = fields(named)["InferenceId"]
    assert len(inference_id) == 36  # a UUID, the server's
    document = json.loads(shipway(server.url, "async", "show", inference_id, "--json").stdout)
    assert document["RequestTtlSeconds"] == 120
    assert document["InvocationTimeoutSeconds"] == 30

    piped = shipway(
        server.url,
        "invoke",
        ENDPOINT,
        "--async",
        "--content-type",
        "application/json",
        "--wait",
        input=rows(model, 1),
    )
    assert "Completed: request" in piped.stdout
    assert piped.stderr.strip() == ""  # the content type was given: nothing to say


def test_wait_on_a_failing_request_exits_1_with_its_reason(
    server: ShipwayServer, model: models.Trained, data: Path
) -> None:
    failing = shipway(
        server.url,
        "invoke",
        ENDPOINT,
        "--async",
        "--body",
        rows(model, 2, fail=True),
        "--inference-id",
        "asked-to-fail",
        "--wait",
        code=1,
    )

    assert re.search(
        r"^Failed: request asked-to-fail in [\d.]+ s \([\d.]+ s queued\): "
        r"Received server error \(500\)",
        failing.stdout,
        re.MULTILINE,
    ), failing.stdout
    assert "the model was asked to fail" in failing.stdout
    failure = f"file://{data}/{ENDPOINT}/failure/asked-to-fail-error.out"
    assert f"The failure is at {failure}" in failing.stdout
    assert "the model was asked to fail" in local(failure).read_text()
    assert not local(f"file://{data}/{ENDPOINT}/output/asked-to-fail.out").exists()

    slow = shipway(
        server.url,
        "invoke",
        ENDPOINT,
        "--async",
        "--body",
        rows(model, 1, sleep=3),
        "--timeout",
        "1",
        "--wait",
        code=1,
    )
    assert "InvocationTimeoutSeconds of 1 s" in slow.stdout

    shown = shipway(server.url, "async", "show", "asked-to-fail")
    assert "Status        Failed" in shown.stdout
    assert "Failure       Received server error (500)" in shown.stdout
    listed = shipway(server.url, "async", "list", "--status", "failed", "--json").stdout
    assert "asked-to-fail" in [r["InferenceId"] for r in json.loads(listed)["AsyncInvocations"]]


def test_list_shows_the_newest_first_and_pages(
    server: ShipwayServer, model: models.Trained
) -> None:
    for n in range(3):
        shipway(
            server.url,
            "invoke",
            ENDPOINT,
            "--async",
            "--body",
            rows(model, 1),
            "--inference-id",
            f"page-{n}",
        )

    newest = shipway(server.url, "async", "list", "--endpoint", ENDPOINT, "--max", "2")
    table = newest.stdout
    assert "page-2" in table
    assert "page-1" in table
    assert "page-0" not in table
    assert table.index("page-2") < table.index("page-1")
    assert "The newest 2 shown; --max-results N shows more." in newest.stderr
    document = json.loads(
        shipway(server.url, "async", "list", "--endpoint", ENDPOINT, "--json").stdout
    )
    everything = [r["InferenceId"] for r in document["AsyncInvocations"]]
    assert everything[:3] == ["page-2", "page-1", "page-0"]
    # the client follows the server's pages: two at a time, the same list
    paged = ShipwayClient(server.url, page_size=2).list_async_invocations(endpoint=ENDPOINT)
    assert [i.inference_id for i in paged] == everything
    for n in range(3):
        settled(server, f"page-{n}")


def test_endpoints_describe_shows_the_queue_of_an_async_endpoint(
    server: ShipwayServer, model: models.Trained, data: Path
) -> None:
    for n in range(2):
        shipway(
            server.url,
            "invoke",
            SERIAL,
            "--async",
            "--body",
            rows(model, 1, sleep=4),
            "--inference-id",
            f"slow-{n}",
        )

    busy = shipway(server.url, "endpoints", "describe", SERIAL).stdout

    assert "Asynchronous inference" in busy
    assert re.search(r"^  Backlog        2 requests, [01] in progress$", busy, re.M), busy
    assert re.search(r"^  Oldest         queued [\d.]+ s ago$", busy, re.M), busy
    for text in (
        f"  Output path    file://{data}/{SERIAL}/output",
        f"  Failure path   file://{data}/{SERIAL}/failure",
        "  Success topic  none",
        "  Error topic    none",
        "  Concurrency    1 request per instance",
    ):
        assert text in busy, busy
    for n in range(2):
        assert settled(server, f"slow-{n}") == "Completed"
    idle = shipway(server.url, "endpoints", "describe", SERIAL).stdout
    assert re.search(r"^  Backlog        0 requests, 0 in progress$", idle, re.M), idle
    assert re.search(r"^  Oldest         -$", idle, re.M), idle

    described = json.loads(shipway(server.url, "endpoints", "describe", ENDPOINT, "--json").stdout)
    assert described["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == (
        f"file://{data}/{ENDPOINT}/output"
    )
    plain = shipway(server.url, "endpoints", "describe", ENDPOINT).stdout
    assert "  Output path    " in plain
    assert "  Concurrency" not in plain
    realtime = shipway(server.url, "endpoints", "describe", "cli-realtime").stdout
    assert "Endpoint  cli-realtime" in realtime
    assert "Asynchronous" not in realtime


def test_errors_are_one_readable_line(
    server: ShipwayServer, model: models.Trained, data: Path, tmp_path: Path
) -> None:
    url = server.url
    unknown = shipway(url, "async", "show", "no-such-request", code=1)
    assert error(unknown) == (
        'Error: ResourceNotFound: Could not find asynchronous request "no-such-request".\n'
        "'shipway async list' lists the requests and their InferenceIds.\n"
    )
    elsewhere = shipway(url, "async", "show", "from-a-file", "--endpoint", SERIAL, code=1)
    assert "Could not find asynchronous request" in error(elsewhere)

    realtime = shipway(url, "invoke", "cli-realtime", "--async", "--body", rows(model, 1), code=1)
    assert error(realtime).startswith(
        "Error: ValidationError: Endpoint cli-realtime is not an asynchronous endpoint"
    )
    missing = shipway(
        url, "invoke", "no-such-endpoint", "--async", "--body", rows(model, 1), code=1
    )
    assert "Endpoint no-such-endpoint of account" in error(missing)
    absent = shipway(
        url,
        "invoke",
        ENDPOINT,
        "--async",
        "--input-location",
        f"file://{data}/nowhere.json",
        "--inference-id",
        "refused",
        code=1,
    )
    assert "does not exist" in error(absent)
    ttl = shipway(
        url,
        "invoke",
        ENDPOINT,
        "--async",
        "--body",
        rows(model, 1),
        "--ttl",
        "99999",
        "--inference-id",
        "refused",
        code=1,
    )
    assert "requestTTLSeconds" in error(ttl)

    large = tmp_path / "large.json"
    large.write_text(json.dumps({"rows": [[0.5] * 30] * 2000}))
    too_large = shipway(url, "invoke", ENDPOINT, "--async", "--file", str(large), code=2)
    assert "takes at most 128,000 inline" in too_large.stderr
    assert "--input-location URL" in too_large.stderr
    both = shipway(
        url,
        "invoke",
        ENDPOINT,
        "--async",
        "--body",
        "{}",
        "--input-location",
        upload(data, "both.json", {}),
        code=2,
    )
    assert "give --input-location or a body" in both.stderr
    sync_only = shipway(url, "invoke", ENDPOINT, "--body", rows(model, 1), "--wait", code=2)
    assert "give --async with it" in sync_only.stderr
    pinned = shipway(
        url,
        "invoke",
        ENDPOINT,
        "--async",
        "--body",
        rows(model, 1),
        "--target-variant",
        "AllTraffic",
        code=2,
    )
    assert "'--target-variant'" in pinned.stderr
    shipway(url, "async", "list", "--status", "Lost", code=2)
    refused = shipway(url, "async", "show", "refused", code=1)  # nothing was queued
    assert "Could not find asynchronous request" in error(refused)
