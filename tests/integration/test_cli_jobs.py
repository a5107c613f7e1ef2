"""``shipway jobs`` against a real server: transform jobs created, followed, described, listed
and stopped from the command line, with a real scikit-learn model (and, to have a job that runs
long enough to be stopped, the python-runtime model of test_async.py told to sleep)."""

from __future__ import annotations

import gzip
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from sklearn.datasets import load_breast_cancer

from shipway.cli.transform_jobs import progress_line, render_progress
from shipway.domain.shape import parse
from shipway.domain.transform_job import DescribeTransformJobOutput
from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, start_server
from tests.integration.test_async import ASYNC_INFERENCE_PY
from tests.integration.test_batch import csv_lines
from tests.integration.test_cli import error, shipway


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    return models.train_sklearn(tmp_path_factory.mktemp("jobs-scorer"))


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, scorer: models.Trained
) -> Iterator[ShipwayServer]:
    running = start_server(tmp_path_factory.mktemp("cli-jobs") / "home")
    try:
        sleeper = models.train_sklearn(tmp_path_factory.mktemp("jobs-sleeper"))
        (sleeper.folder / "code").mkdir()
        (sleeper.folder / "code" / "inference.py").write_text(ASYNC_INFERENCE_PY)
        for name, image, folder in (
            ("scorer", scorer.image, scorer.folder),
            ("sleeper", "python", sleeper.folder),
        ):
            shipway(
                running.url, "models", "create", name, "--image", image, "--model-data", str(folder)
            )
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    x, _ = load_breast_cancer(return_X_y=True)
    return np.asarray(x)


def predictions(path: Path) -> list[int]:
    return [int(float(line)) for line in path.read_text().split()]


def test_create_wait_then_describe_list_and_watch(
    server: ShipwayServer,
    scorer: models.Trained,
    rows: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.csv").write_bytes(csv_lines(rows[:100]))
    (tmp_path / "in" / "sub" / "b.csv").write_bytes(csv_lines(rows[100:130]))
    monkeypatch.chdir(tmp_path)  # relative paths are made absolute: the server has its own cwd
    root = tmp_path.resolve()

    created = shipway(
        server.url,
        "jobs",
        "create",
        "csv-job",
        "--model",
        "scorer",
        "--input",
        "in/",
        "--output",
        "out",
        "--content-type",
        "text/csv",
        "--accept",
        "text/csv",
        "--split",
        "line",
        "--strategy",
        "MultiRecord",
        "--assemble",
        "Line",
        "--env",
        "OMP_NUM_THREADS=1",
        "--wait",
    )

    lines = created.stdout.splitlines()
    assert lines[0] == (
        "Created transform job csv-job "
        "(arn:aws:sagemaker:us-east-1:123456789012:transform-job/csv-job)"
    )
    assert re.fullmatch(
        r"Completed: transform job csv-job in [\d.]+ s: 2/2 objects, 130 records", lines[1]
    ), created.stdout
    assert lines[2] == f"The outputs are under {root}/out"
    # stdout is not a terminal: plain progress lines on stderr, no bar
    assert re.search(r"^[\d.]+ s  InProgress", created.stderr, re.MULTILINE), created.stderr
    assert "━" not in created.output
    assert predictions(root / "out" / "a.csv.out") == list(scorer.model.predict(rows[:100]))
    assert predictions(root / "out" / "sub" / "b.csv.out") == list(
        scorer.model.predict(rows[100:130])
    )

    described = shipway(server.url, "jobs", "describe", "csv-job").stdout
    assert described.splitlines()[0] == "Transform job csv-job"
    for text in (
        "Status        Completed",
        "Model         scorer",
        f"Input         {root}/in/ (S3Prefix), text/csv, split by Line\n",
        f"Output        {root}/out, accept text/csv, one line per record\n",
        "Requests      MultiRecord, at most 6 MB each, 600 s timeout, 3 retries\n",
        "Resources     1 local instance\n",
        "Environment   OMP_NUM_THREADS=1\n",
    ):
        assert text in described, described
    assert re.search(
        r"^Progress      2/2 objects, (\d+)/\1 shards, 130 records, ([\d.]+ kB) of \2 read$",
        described,
        re.MULTILINE,
    ), described
    assert re.search(r"^Ended         .* \(took [\d.]+ s\)$", described, re.MULTILINE), described
    assert "Failure" not in described
    document = json.loads(shipway(server.url, "jobs", "describe", "csv-job", "--json").stdout)
    assert document["TransformJobStatus"] == "Completed"
    assert document["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"{root}/in/"
    assert document["Environment"] == {"OMP_NUM_THREADS": "1"}
    assert document["Progress"]["RecordsProcessed"] == 130
    assert document["Progress"]["BytesProcessed"] == len(csv_lines(rows[:130]))

    table = shipway(server.url, "jobs", "list").stdout
    row = next(line for line in table.splitlines() if "csv-job" in line)
    assert "Completed" in row
    assert re.search(r"[\d.]+ s", row), row

    def listed(*args: str) -> list[str]:
        document = json.loads(shipway(server.url, "jobs", "list", *args, "--json").stdout)
        return [j["TransformJobName"] for j in document["TransformJobSummaries"]]

    assert "csv-job" in listed("--status", "completed")
    assert "csv-job" not in listed("--status", "Failed")
    assert listed("--name-contains", "csv") == ["csv-job"]

    watched = shipway(server.url, "jobs", "watch", "csv-job")
    assert watched.stdout.splitlines()[0] == lines[1]
    assert watched.stderr == ""  # already over: nothing to follow


def test_a_failing_record_fails_the_job_exit_1_with_its_reason(
    server: ShipwayServer, rows: np.ndarray, tmp_path: Path
) -> None:
    lines = csv_lines(rows[:20]).splitlines(keepends=True)
    lines[6] = b"not,a,number\n"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.csv").write_bytes(b"".join(lines))

    failed = shipway(
        server.url,
        "jobs",
        "create",
        "bad-job",
        "--model",
        "scorer",
        "--input",
        f"file://{tmp_path}/in/",
        "--output",
        f"file://{tmp_path}/out",
        "--content-type",
        "text/csv",
        "--split",
        "Line",
        "--wait",
        code=1,
    )

    outcome = failed.stdout.splitlines()[1]
    assert re.match(r"Failed: transform job bad-job in [\d.]+ s: ", outcome), failed.stdout
    assert "record 7 of" in outcome, outcome
    assert "bad.csv" in outcome, outcome
    assert failed.stdout.splitlines()[2] == (
        f"0 of 1 objects have an output under file://{tmp_path}/out"
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    watched = shipway(server.url, "jobs", "watch", "bad-job", code=1)
    assert watched.stdout.splitlines()[0] == outcome
    described = shipway(server.url, "jobs", "describe", "bad-job").stdout
    assert "Status        Failed\n" in described
    assert f"Failure       {outcome.split(': ', 2)[2]}" in described
    assert "Requests      SingleRecord, " in described  # SageMaker's default strategy
    assert "bad-job" in [
        j["TransformJobName"]
        for j in json.loads(
            shipway(server.url, "jobs", "list", "--status", "failed", "--json").stdout
        )["TransformJobSummaries"]
    ]


def test_a_gzipped_manifest_joined_and_filtered(
    server: ShipwayServer, scorer: models.Trained, rows: np.ndarray, tmp_path: Path
) -> None:
    (tmp_path / "objects").mkdir()
    for n in range(2):
        with_ids = "".join(
            f"id-{i}," + ",".join(repr(float(v)) for v in rows[i]) + "\n"
            for i in range(n * 10, n * 10 + 10)
        )
        (tmp_path / "objects" / f"part-{n}.csv.gz").write_bytes(gzip.compress(with_ids.encode()))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps([{"prefix": f"file://{tmp_path}/objects/"}, "part-1.csv.gz"]))

    shipway(
        server.url,
        "jobs",
        "create",
        "joined-job",
        "--model",
        "scorer",
        "--input",
        str(manifest),
        "--manifest",
        "--gzip",
        "--output",
        f"{tmp_path}/out",
        "--content-type",
        "text/csv",
        "--accept",
        "text/csv",
        "--split",
        "Line",
        "--strategy",
        "MultiRecord",
        "--max-payload",
        "1",
        "--concurrency",
        "2",
        "--instance-count",
        "2",
        "--assemble",
        "Line",
        "--input-filter",
        "$[1:]",
        "--join-input",
        "--output-filter",
        "$[0,-1]",
        "--wait",
    )

    predicted = scorer.model.predict(rows[10:20])
    expected = [f"id-{i},{p}" for i, p in enumerate(predicted, start=10)]
    assert (tmp_path / "out" / "part-1.csv.gz.out").read_text().splitlines() == expected
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["part-1.csv.gz.out"]
    described = shipway(server.url, "jobs", "describe", "joined-job").stdout
    for text in (
        f"Input         {manifest} (ManifestFile), text/csv, split by Line, gzipped\n",
        "Requests      MultiRecord, at most 1 MB each, 2 at a time per instance, ",
        "Resources     2 local instances\n",
        "Filters       input $[1:], joined with the input, output $[0,-1]\n",
    ):
        assert text in described, described


class Watcher:
    """``shipway jobs watch NAME`` in a process of its own; on a terminal (a pty) or with
    pipes, its output read as it comes."""

    def __init__(self, server: ShipwayServer, name: str, *, terminal: bool) -> None:
        env = {**os.environ, "SHIPWAY_URL": server.url, "COLUMNS": "120", "TERM": "xterm"}
        env.pop("NO_COLOR", None)
        command = [sys.executable, "-m", "shipway", "jobs", "watch", name]
        self.output = bytearray()
        self._result: tuple[int, str, str] | None = None
        if terminal:
            master, replica = pty.openpty()
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=replica, stderr=replica, env=env
            )
            os.close(replica)
            self._reader = threading.Thread(target=self._drain, args=(master,), daemon=True)
        else:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            assert self.process.stderr is not None
            self._reader = threading.Thread(
                target=self._drain, args=(self.process.stderr.fileno(),), daemon=True
            )
        self._reader.start()

    def _drain(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the pty's other side closed
                break
            if not chunk:
                break
            self.output += chunk
        if self.process.stderr is None:
            os.close(fd)  # the pty's master

    def wait_for(self, pattern: bytes, timeout: float = 30.0) -> None:
        """Until what it printed matches ``pattern`` (a regular expression)."""
        deadline = time.monotonic() + timeout
        while re.search(pattern, self.output, re.MULTILINE) is None:
            assert time.monotonic() < deadline, bytes(self.output)
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.finish()

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """The exit code, stdout (piped) and what else it printed (terminal controls taken
        out), once it has exited."""
        if self._result is None:
            stdout = b""
            if self.process.stdout is not None:
                with self.process.stdout:
                    stdout = self.process.stdout.read()
            code = self.process.wait(timeout)
            self._reader.join(timeout)
            if self.process.stderr is not None:
                self.process.stderr.close()
            text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.output.decode(errors="replace"))
            self._result = (code, stdout.decode(), text)
        return self._result


class Watchers:
    """The watch processes of a test, killed at its end if they are still running."""

    def __init__(self, server: ShipwayServer) -> None:
        self.server = server
        self.started: list[Watcher] = []

    def start(self, name: str, *, terminal: bool) -> Watcher:
        watcher = Watcher(self.server, name, terminal=terminal)
        self.started.append(watcher)
        return watcher


@pytest.fixture
def watchers(server: ShipwayServer) -> Iterator[Watchers]:
    started = Watchers(server)
    yield started
    for watcher in started.started:
        watcher.kill()


def test_stop_a_running_job_while_it_is_watched(
    server: ShipwayServer, watchers: Watchers, rows: np.ndarray, tmp_path: Path
) -> None:
    # four objects of five records, one request at a time, each taking 0.3 s: about 6 s of work
    (tmp_path / "in").mkdir()
    for n in range(4):
        records = rows[n * 5 : n * 5 + 5]
        lines = "".join(
            json.dumps({"rows": [row.tolist()], "sleep": 0.3}) + "\n" for row in records
        )
        (tmp_path / "in" / f"part-{n}.jsonl").write_text(lines)
    out = tmp_path / "out"
    created = shipway(
        server.url,
        "jobs",
        "create",
        "slow-job",
        "--model",
        "sleeper",
        "--input",
        f"{tmp_path}/in/",
        "--output",
        str(out),
        "--content-type",
        "application/json",
        "--split",
        "Line",
        "--strategy",
        "SingleRecord",
        "--concurrency",
        "1",
    )
    assert created.stdout.startswith("Created transform job slow-job (arn:")
    interrupted = watchers.start("slow-job", terminal=False)
    plain = watchers.start("slow-job", terminal=False)
    live = watchers.start("slow-job", terminal=True)

    # Ctrl-C stops the watching, not the job
    interrupted.wait_for(rb"InProgress")
    interrupted.process.send_signal(signal.SIGINT)
    code, stdout, stderr = interrupted.finish()
    assert code == 130, stderr
    assert "Stopped watching; the job goes on: shipway jobs watch slow-job" in stderr
    assert "Traceback" not in stderr
    assert stdout == ""

    # a plain line at each tenth of the way: stop once the first object is written
    plain.wait_for(rb"^[\d.]+ s  InProgress \d+%: [1-3]/4 objects, [\d.]+ kB of [\d.]+ kB, ")
    stopped = shipway(server.url, "jobs", "stop", "slow-job", "--wait")

    outcome = stopped.stdout.splitlines()
    assert re.fullmatch(r"Stopped: transform job slow-job was stopped in [\d.]+ s", outcome[0])
    written = re.fullmatch(rf"(\d) of 4 objects have an output under {out}", outcome[1])
    assert written is not None, stopped.stdout
    assert 1 <= int(written.group(1)) < 4
    assert len(list(out.iterdir())) == int(written.group(1))

    code, stdout, stderr = plain.finish()
    assert code == 1
    assert stdout.splitlines()[0] == outcome[0]
    assert all(re.match(r"[\d.]+ s  (InProgress|Stopping)", line) for line in stderr.splitlines())
    assert len(stderr.splitlines()) <= 14  # a few lines, not one per look
    code, _, screen = live.finish()
    assert code == 1
    assert "━" in screen  # the bar
    assert "Transform job slow-job" in screen
    assert "Stopped: transform job slow-job was stopped" in screen

    again = shipway(server.url, "jobs", "stop", "slow-job", code=1)
    assert error(again) == (
        "Error: ValidationException: Transform job slow-job is Stopped; only a job in progress "
        "can be stopped.\n"
    )


def test_bad_requests_are_one_readable_line(server: ShipwayServer, tmp_path: Path) -> None:
    url = server.url
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1,2\n")
    required = ("--input", f"{tmp_path}/in/", "--output", f"{tmp_path}/out")

    missing = shipway(url, "jobs", "create", "refused", "--model", "nope", *required, code=1)
    assert error(missing) == (
        'Error: ResourceNotFound: Could not find model "arn:aws:sagemaker:us-east-1:'
        '123456789012:model/nope".\n'
        "'shipway models list' lists the models.\n"
    )
    payload = ("--max-payload", "40", "--concurrency", "3")
    too_large = shipway(
        url, "jobs", "create", "refused", "--model", "scorer", *required, *payload, code=1
    )
    assert "MaxPayloadInMB times MaxConcurrentTransforms (40 x 3) is over 100 MB" in error(
        too_large
    )
    unsupported = ("--input-filter", "$..id")
    refused = shipway(
        url, "jobs", "create", "refused", "--model", "scorer", *required, *unsupported, code=1
    )
    assert error(refused).startswith("Error: ValidationException: ")
    assert "$..id" in refused.stderr
    unknown = shipway(url, "jobs", "describe", "refused", code=1)
    assert error(unknown) == (
        'Error: ResourceNotFound: Could not find transform job "arn:aws:sagemaker:us-east-1:'
        '123456789012:transform-job/refused".\n'
        "'shipway jobs list' lists the transform jobs.\n"
    )
    assert "Could not find transform job" in error(shipway(url, "jobs", "watch", "refused", code=1))
    assert "Could not find transform job" in error(shipway(url, "jobs", "stop", "refused", code=1))

    usage = shipway(
        url, "jobs", "create", "x", "--model", "scorer", *required, "--split", "Words", code=2
    )
    assert "'--split'" in usage.stderr
    shipway(url, "jobs", "create", "x", "--model", "scorer", *required, "--env", "NOEQUALS", code=2)
    shipway(url, "jobs", "create", "x", "--model", "scorer", "--output", "o", code=2)
    shipway(url, "jobs", "list", "--status", "Lost", code=2)


def test_the_progress_frame_and_line_before_and_while_the_job_runs() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    job: dict[str, Any] = {
        "TransformJobName": "nightly",
        "ModelName": "scorer",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}}
        },
        "TransformOutput": {"S3OutputPath": "s3://b/out"},
        "TransformResources": {"InstanceType": "local", "InstanceCount": 1},
        "TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:transform-job/nightly",
        "TransformJobStatus": "InProgress",
        "CreationTime": (now - timedelta(seconds=75)).isoformat(),
    }
    starting = parse(DescribeTransformJobOutput, job)
    running = parse(
        DescribeTransformJobOutput,
        {
            **job,
            "Progress": {
                "ObjectsTotal": 10,
                "ObjectsCompleted": 3,
                "ObjectsFailed": 1,
                "BytesTotal": 29_100_000,
                "BytesProcessed": 12_300_000,
                "RecordsProcessed": 45_600,
                "RecordsPerSecond": 1234.5,
                "BytesPerSecond": 2_100_000,
                "EstimatedSecondsRemaining": 95,
            },
        },
    )

    assert progress_line(starting, now) == (
        "1 min 15 s  InProgress: listing the input and starting instances"
    )
    assert progress_line(running, now) == (
        "1 min 15 s  InProgress 42%: 3/10 objects (1 failed), 12.3 MB of 29.1 MB, "
        "45,600 records, 1,234 records/s, 2.1 MB/s, ETA 1 min 35 s"
    )
    screen = Console(width=120, record=True, color_system=None)
    screen.print(render_progress(running, now))
    frame = screen.export_text().splitlines()
    assert frame[0] == "Transform job nightly  InProgress  1 min 15 s"
    assert frame[1].startswith("━" * 16)
    assert frame[1].split()[1:] == ["42%", "ETA", "1", "min", "35", "s"]
    assert frame[2] == (
        "3/10 objects (1 failed)  12.3 MB of 29.1 MB  45,600 records  1,234 records/s  2.1 MB/s"
    )
