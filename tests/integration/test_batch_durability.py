"""Batch transform jobs survive a killed server and can be stopped; and they read and write S3.

A slow model (10 ms a request, one record a request) makes a job last long enough to kill the
server (SIGKILL) in its middle: after the restart it resumes, the objects written before the
kill are left as they were (their shards are not redone), and every output is the same bytes as
the same job's uninterrupted run.
"""

from __future__ import annotations

import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures import models
from tests.fixtures.s3 import S3Bucket
from tests.fixtures.server import ShipwayServer, start_server
from tests.integration.rollouts import ROLE, aws
from tests.integration.test_batch import csv_lines, finished, predictions

SLOW_CSV_PY = textwrap.dedent(
    """
    import os
    import time

    import joblib
    import numpy as np


    def model_fn(model_dir):
        return joblib.load(os.path.join(model_dir, "model.joblib"))


    def input_fn(body, content_type):
        text = body.decode() if isinstance(body, bytes) else body
        lines = text.splitlines()
        return np.array([[float(v) for v in line.split(",")] for line in lines if line])


    def predict_fn(rows, model):
        time.sleep(0.01)
        return model.predict(rows)


    def output_fn(prediction, accept):
        return "".join(f"{int(v)}\\n" for v in prediction), "text/csv"
    """
)
OBJECTS = 6
ROWS = 60


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    trained = models.train_sklearn(tmp_path_factory.mktemp("slow-batch-model"))
    (trained.folder / "code").mkdir()
    (trained.folder / "code" / "inference.py").write_text(SLOW_CSV_PY)
    trained.image = "python"
    return trained


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    from sklearn.datasets import load_breast_cancer

    x, _ = load_breast_cancer(return_X_y=True)
    folder = tmp_path_factory.mktemp("batch-inputs")
    parts = [x[i * ROWS : (i + 1) * ROWS] for i in range(OBJECTS)]
    for i, part in enumerate(parts):
        (folder / f"part-{i}.csv").write_bytes(csv_lines(part))
    return folder, parts


def start_job(sagemaker: Any, name: str, source: Path, output: Path) -> None:
    sagemaker.create_transform_job(
        TransformJobName=name,
        ModelName="slow",
        MaxConcurrentTransforms=1,
        BatchStrategy="SingleRecord",
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{source}/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"file://{output}", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "local", "InstanceCount": 2},
    )


@pytest.fixture
def server(tmp_path: Path, slow_model: models.Trained) -> Iterator[ShipwayServer]:
    running = start_server(tmp_path / "home")
    aws(running.url, "sagemaker").create_model(
        ModelName="slow",
        PrimaryContainer={"Image": "python", "ModelDataUrl": str(slow_model.folder)},
        ExecutionRoleArn=ROLE,
    )
    yield running
    running.stop()


def wait_for_outputs(folder: Path, count: int, timeout: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        written = sorted(folder.glob("*.out")) if folder.exists() else []
        if len(written) >= count:
            return written
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} outputs in {folder} after {timeout} s")


@pytest.mark.slow(seconds=25)
def test_kill_9_mid_job_resumes_to_the_same_bytes(
    server: ShipwayServer,
    slow_model: models.Trained,
    inputs: tuple[Path, list[np.ndarray]],
    tmp_path: Path,
) -> None:
    source, parts = inputs
    sagemaker = aws(server.url, "sagemaker")
    start_job(sagemaker, "uninterrupted", source, tmp_path / "reference")
    assert finished(sagemaker, "uninterrupted")["TransformJobStatus"] == "Completed"

    start_job(sagemaker, "interrupted", source, tmp_path / "resumed")
    before = wait_for_outputs(tmp_path / "resumed", 2)
    assert len(before) < OBJECTS, "the kill must find the job under way"
    written_before = {p.name: p.stat().st_mtime_ns for p in before}
    server.stop(signal.SIGKILL)

    restarted = ShipwayServer(home=server.home, port=server.port, env={})
    restarted.start()
    try:
        job = finished(aws(restarted.url, "sagemaker"), "interrupted")
    finally:
        restarted.stop()
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    for name, mtime in written_before.items():
        assert (tmp_path / "resumed" / name).stat().st_mtime_ns == mtime, f"{name} was redone"
    reference = sorted(p.name for p in (tmp_path / "reference").iterdir())
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == reference
    assert len(reference) == OBJECTS
    for name in reference:
        assert (tmp_path / "resumed" / name).read_bytes() == (
            tmp_path / "reference" / name
        ).read_bytes()
    for i, part in enumerate(parts):
        assert predictions(tmp_path / "resumed" / f"part-{i}.csv.out") == list(
            slow_model.model.predict(part)
        )
    assert not list((server.home / "batch").glob("*/*")), "part files left behind"


def test_stop_ends_the_job_stopped_without_partial_outputs(
    server: ShipwayServer, inputs: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    source, _ = inputs
    sagemaker = aws(server.url, "sagemaker")
    start_job(sagemaker, "stopped", source, tmp_path / "out")
    wait_for_outputs(tmp_path / "out", 1)
    sagemaker.stop_transform_job(TransformJobName="stopped")
    assert sagemaker.describe_transform_job(TransformJobName="stopped")["TransformJobStatus"] in (
        "Stopping",
        "Stopped",
    )
    job = finished(sagemaker, "stopped")
    assert job["TransformJobStatus"] == "Stopped"
    assert "FailureReason" not in job
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert all(name.endswith(".csv.out") for name in names), names  # no partial files
    assert len(names) < OBJECTS
    # its instances are gone, and stopping a stopped job is refused
    with pytest.raises(Exception, match="only a job in progress"):
        sagemaker.stop_transform_job(TransformJobName="stopped")


def test_s3_input_and_output_through_moto(
    tmp_path: Path, s3_bucket: S3Bucket, inputs: tuple[Path, list[np.ndarray]]
) -> None:
    model = models.train_sklearn(tmp_path / "model")
    running = start_server(tmp_path / "home", env=s3_bucket.env)
    try:
        sagemaker = aws(running.url, "sagemaker")
        model_data = s3_bucket.upload(models.pack(model.folder, tmp_path / "m.tar.gz"), "m.tar.gz")
        sagemaker.create_model(
            ModelName="scorer",
            PrimaryContainer={"Image": "sklearn", "ModelDataUrl": model_data},
            ExecutionRoleArn=ROLE,
        )
        source, parts = inputs
        for i in range(2):
            s3_bucket.upload(source / f"part-{i}.csv", f"batch/in/day-{i}.csv")
        sagemaker.create_transform_job(
            TransformJobName="from-s3",
            ModelName="scorer",
            BatchStrategy="MultiRecord",
            TransformInput={
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": s3_bucket.url("batch/in/")}
                },
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            TransformOutput={
                "S3OutputPath": s3_bucket.url("batch/out"),
                "Accept": "text/csv",
                "AssembleWith": "Line",
            },
            TransformResources={"InstanceType": "local", "InstanceCount": 1},
        )
        job = finished(sagemaker, "from-s3")
        assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
        for i in range(2):
            body = s3_bucket.client.get_object(
                Bucket=s3_bucket.name, Key=f"batch/out/day-{i}.csv.out"
            )
            lines = body["Body"].read().decode().split()
            assert [int(float(v)) for v in lines] == list(model.model.predict(parts[i]))
    finally:
        running.stop()
