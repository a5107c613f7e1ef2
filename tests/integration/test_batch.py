"""Batch transform end to end: a real server, real instances, boto3's sagemaker client.

The flows of AWS's batch transform examples (CSV split by line into multi-record requests larger
files than MaxPayloadInMB, JSON Lines one record at a time, whole objects, a manifest, a join of
inputs and outputs with filters, a stop) and what can go wrong (a failing record, bad
parameters, an empty prefix, an object too large for its payload), with outputs compared row by
row with the model in this process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, start_server
from tests.integration.rollouts import ROLE, aws


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    running = start_server(tmp_path_factory.mktemp("batch") / "home")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    return models.train_sklearn(tmp_path_factory.mktemp("batch-model"))


@pytest.fixture(scope="module")
def sagemaker(server: ShipwayServer, model: models.Trained) -> Any:
    client = aws(server.url, "sagemaker")
    client.create_model(
        ModelName="scorer",
        PrimaryContainer={"Image": model.image, "ModelDataUrl": str(model.folder)},
        ExecutionRoleArn=ROLE,
    )
    return client


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    x, _ = load_breast_cancer(return_X_y=True)
    return np.asarray(x)


def csv_lines(rows: np.ndarray) -> bytes:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows).encode()


def transform(
    sagemaker: Any,
    name: str,
    source: str,
    output: str,
    *,
    data_type: str = "S3Prefix",
    content_type: str = "text/csv",
    accept: str = "text/csv",
    wait: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    input_config: dict[str, Any] = {
        "DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": source}},
        "ContentType": content_type,
    }
    for key in ("SplitType", "CompressionType"):
        if key in extra:
            input_config[key] = extra.pop(key)
    output_config: dict[str, Any] = {"S3OutputPath": output, "Accept": accept}
    if "AssembleWith" in extra:
        output_config["AssembleWith"] = extra.pop("AssembleWith")
    sagemaker.create_transform_job(
        TransformJobName=name,
        ModelName="scorer",
        TransformInput=input_config,
        TransformOutput=output_config,
        TransformResources={"InstanceType": "local", "InstanceCount": extra.pop("count", 1)},
        **extra,
    )
    return finished(sagemaker, name) if wait else {}


def finished(sagemaker: Any, name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = sagemaker.describe_transform_job(TransformJobName=name)
        if job["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def predictions(path: Path) -> list[int]:
    return [int(float(line)) for line in path.read_text().split()]


def test_csv_lines_in_multi_record_requests_over_several_instances(
    sagemaker: Any, model: models.Trained, rows: np.ndarray, tmp_path: Path
) -> None:
    big = np.repeat(rows, 4, axis=0)  # ~0.9 MB, twice: several requests of 1 MB, several shards
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "big.csv").write_bytes(csv_lines(big) * 2)
    (tmp_path / "in" / "sub" / "small.csv").write_bytes(csv_lines(rows[:7]))
    job = transform(
        sagemaker,
        "csv-multi",
        f"file://{tmp_path}/in/",
        f"file://{tmp_path}/out",
        SplitType="Line",
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=1,
        MaxConcurrentTransforms=2,
        AssembleWith="Line",
        count=2,
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["TransformStartTime"] <= job["TransformEndTime"]
    assert predictions(tmp_path / "out" / "big.csv.out") == list(model.model.predict(big)) * 2
    assert predictions(tmp_path / "out" / "sub" / "small.csv.out") == list(
        model.model.predict(rows[:7])
    )
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == [
        "big.csv.out",
        "small.csv.out",
        "sub",
    ]


def test_progress_and_list(
    server: ShipwayServer, sagemaker: Any, tmp_path: Path, rows: np.ndarray
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_bytes(csv_lines(rows))
    transform(
        sagemaker,
        "listed",
        f"file://{tmp_path}/in",
        f"file://{tmp_path}/out",
        SplitType="Line",
        BatchStrategy="MultiRecord",
        Tags=[{"Key": "team", "Value": "risk"}],
    )
    with server.client() as client:
        described = client.get("/api/transform-jobs/listed").json()
        exposition = client.get("/metrics").text
    assert f'shipway_records_processed_total{{transform_job_name="listed"}} {len(rows)}.0' in (
        exposition
    )
    assert 'shipway_objects_completed_total{transform_job_name="listed"} 1.0' in exposition
    progress = described["Progress"]
    assert progress["ObjectsTotal"] == progress["ObjectsCompleted"] == 1
    assert progress["RecordsProcessed"] == len(rows)
    assert progress["BytesProcessed"] == progress["BytesTotal"] == len(csv_lines(rows))
    summaries = sagemaker.list_transform_jobs(NameContains="listed")["TransformJobSummaries"]
    assert [s["TransformJobName"] for s in summaries] == ["listed"]
    assert summaries[0]["TransformJobStatus"] == "Completed"
    completed = sagemaker.list_transform_jobs(StatusEquals="Completed", MaxResults=100)
    assert "listed" in [s["TransformJobName"] for s in completed["TransformJobSummaries"]]
    arn = sagemaker.describe_transform_job(TransformJobName="listed")["TransformJobArn"]
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "risk"}]
    waiter = sagemaker.get_waiter("transform_job_completed_or_stopped")
    waiter.wait(TransformJobName="listed", WaiterConfig={"Delay": 1, "MaxAttempts": 5})


def test_json_lines_one_record_per_request(
    sagemaker: Any, model: models.Trained, rows: np.ndarray, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    lines = "".join(json.dumps(list(map(float, row))) + "\n" for row in rows[:25])
    (tmp_path / "in" / "records.jsonl").write_text(lines)
    job = transform(
        sagemaker,
        "jsonl-single",
        f"file://{tmp_path}/in/",
        f"file://{tmp_path}/out/",
        content_type="application/jsonlines",
        accept="application/jsonlines",
        SplitType="Line",
        BatchStrategy="SingleRecord",
        AssembleWith="Line",
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    out = (tmp_path / "out" / "records.jsonl.out").read_text().splitlines()
    assert [json.loads(line) for line in out] == [int(p) for p in model.model.predict(rows[:25])]


def test_whole_objects_and_a_gzipped_manifest_source(
    sagemaker: Any, model: models.Trained, rows: np.ndarray, tmp_path: Path
) -> None:
    import gzip

    (tmp_path / "objects").mkdir()
    for i in range(3):
        (tmp_path / "objects" / f"part-{i}.csv.gz").write_bytes(
            gzip.compress(csv_lines(rows[i * 10 : i * 10 + 10]))
        )
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps([{"prefix": f"file://{tmp_path}/objects/"}, "part-2.csv.gz", "part-0.csv.gz"])
    )
    job = transform(
        sagemaker,
        "manifest-none",
        f"file://{manifest}",
        f"file://{tmp_path}/out",
        data_type="ManifestFile",
        CompressionType="Gzip",
        SplitType="None",
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "part-0.csv.gz.out",
        "part-2.csv.gz.out",
    ]
    for i in (0, 2):
        expected = list(model.model.predict(rows[i * 10 : i * 10 + 10]))
        assert predictions(tmp_path / "out" / f"part-{i}.csv.gz.out") == expected


@pytest.fixture(scope="module")
def script(sagemaker: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model with an inference.py (the python runtime): octet-stream bodies are answered with
    their size and CRC-32, JSON ones ``{"rows": [...], "sleep": s}`` after sleeping."""
    from tests.integration.test_async import ASYNC_INFERENCE_PY

    trained = models.train_sklearn(tmp_path_factory.mktemp("script-model"))
    (trained.folder / "code").mkdir()
    (trained.folder / "code" / "inference.py").write_text(ASYNC_INFERENCE_PY)
    sagemaker.create_model(
        ModelName="script",
        PrimaryContainer={"Image": "python", "ModelDataUrl": str(trained.folder)},
        ExecutionRoleArn=ROLE,
    )
    return "script"


def test_whole_binary_objects_such_as_images(sagemaker: Any, script: str, tmp_path: Path) -> None:
    """SplitType None: each object is one request, bytes as they are (AWS's image example)."""
    import zlib

    images = {f"cat-{i}.jpg": np.random.default_rng(i).bytes(20_000 * (i + 1)) for i in range(3)}
    (tmp_path / "images").mkdir()
    for name, data in images.items():
        (tmp_path / "images" / name).write_bytes(data)
    sagemaker.create_transform_job(
        TransformJobName="image-sizes",
        ModelName=script,
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path}/images/"}
            },
            "ContentType": "application/octet-stream",
            "SplitType": "None",
        },
        TransformOutput={"S3OutputPath": f"file://{tmp_path}/sizes"},
        TransformResources={"InstanceType": "local", "InstanceCount": 1},
    )
    job = finished(sagemaker, "image-sizes")
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    for name, data in images.items():
        answer = json.loads((tmp_path / "sizes" / f"{name}.out").read_text())
        assert answer == {"bytes": len(data), "crc32": zlib.crc32(data)}


def test_a_model_slower_than_the_invocation_timeout_fails_the_object(
    sagemaker: Any, script: str, rows: np.ndarray, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    slow = {"rows": rows[:2].tolist(), "sleep": 3}
    (tmp_path / "in" / "slow.json").write_text(json.dumps(slow))
    (tmp_path / "in" / "quick.json").write_text(json.dumps({"rows": rows[:2].tolist()}))
    sagemaker.create_transform_job(
        TransformJobName="timed-out",
        ModelName=script,
        MaxConcurrentTransforms=1,  # one at a time: inference.py answers one at a time anyway
        ModelClientConfig={"InvocationsTimeoutInSeconds": 1, "InvocationsMaxRetries": 0},
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path}/in/"}
            },
            "ContentType": "application/json",
        },
        TransformOutput={"S3OutputPath": f"file://{tmp_path}/out"},
        TransformResources={"InstanceType": "local", "InstanceCount": 1},
    )
    job = finished(sagemaker, "timed-out")
    assert job["TransformJobStatus"] == "Failed"
    assert "slow.json" in job["FailureReason"], job["FailureReason"]
    assert "InvocationsTimeoutInSeconds (1 s)" in job["FailureReason"], job["FailureReason"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["quick.json.out"]


def test_join_with_input_and_output_filters(
    sagemaker: Any, model: models.Trained, rows: np.ndarray, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    with_ids = "".join(
        f"id-{i}," + ",".join(repr(float(v)) for v in row) + "\n" for i, row in enumerate(rows[:40])
    )
    (tmp_path / "in" / "scored.csv").write_text(with_ids)
    job = transform(
        sagemaker,
        "joined",
        f"file://{tmp_path}/in/",
        f"file://{tmp_path}/out",
        SplitType="Line",
        BatchStrategy="MultiRecord",
        AssembleWith="Line",
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    expected = [f"id-{i},{int(p)}" for i, p in enumerate(model.model.predict(rows[:40]))]
    assert (tmp_path / "out" / "scored.csv.out").read_text().splitlines() == expected


def test_a_failing_record_fails_its_object_and_the_job_not_the_others(
    sagemaker: Any, model: models.Trained, rows: np.ndarray, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    good = csv_lines(rows[:50])
    bad_lines = csv_lines(rows[:50]).splitlines(keepends=True)
    bad_lines[36] = b"not,a,number\n"
    (tmp_path / "in" / "a-good.csv").write_bytes(good)
    (tmp_path / "in" / "b-bad.csv").write_bytes(b"".join(bad_lines))
    job = transform(
        sagemaker,
        "one-bad-record",
        f"file://{tmp_path}/in/",
        f"file://{tmp_path}/out",
        SplitType="Line",
        BatchStrategy="MultiRecord",
    )
    assert job["TransformJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert "record 37 of" in reason, reason
    assert "b-bad.csv" in reason, reason
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-good.csv.out"]


def test_bad_requests_are_refused_with_the_aws_error(
    sagemaker: Any, tmp_path: Path, rows: np.ndarray
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_bytes(csv_lines(rows[:3]))
    source, output = f"file://{tmp_path}/in/", f"file://{tmp_path}/out"

    def refused(**changes: Any) -> str:
        arguments: dict[str, Any] = {"SplitType": "Line", **changes}
        model = arguments.pop("model", "scorer")

        def create() -> None:
            if model == "scorer":
                transform(sagemaker, "refused", source, output, wait=False, **arguments)
                return
            sagemaker.create_transform_job(
                TransformJobName="refused",
                ModelName=model,
                TransformInput={
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}}
                },
                TransformOutput={"S3OutputPath": output},
                TransformResources={"InstanceType": "local", "InstanceCount": 1},
            )

        with pytest.raises(ClientError) as caught:
            create()
        error = caught.value.response["Error"]
        assert error["Code"] == "ValidationException", error
        return str(error["Message"])

    assert "model" in refused(model="no-such-model").lower()
    assert "MaxPayloadInMB" in refused(MaxPayloadInMB=101)
    assert "MaxPayloadInMB" in refused(MaxPayloadInMB=40, MaxConcurrentTransforms=3)
    assert "$..id" in refused(DataProcessing={"InputFilter": "$..id"})
    with pytest.raises(ClientError) as caught:
        sagemaker.describe_transform_job(TransformJobName="refused")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        sagemaker.stop_transform_job(TransformJobName="never-created")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_what_only_running_finds_fails_the_job_with_a_reason(
    sagemaker: Any, tmp_path: Path, rows: np.ndarray
) -> None:
    (tmp_path / "empty").mkdir()
    job = transform(sagemaker, "empty-prefix", f"file://{tmp_path}/empty/", f"file://{tmp_path}/o1")
    assert job["TransformJobStatus"] == "Failed"
    assert "No objects were found under" in job["FailureReason"]

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "large.csv").write_bytes(csv_lines(np.repeat(rows, 4, axis=0)))  # 0.9 MB
    job = transform(
        sagemaker,
        "too-large-object",
        f"file://{tmp_path}/in/",
        f"file://{tmp_path}/o2",
        SplitType="None",
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=1,
    )
    # 0.9 MB fits in 1 MB: completes; a 2 MB object does not
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    (tmp_path / "in" / "large.csv").write_bytes(csv_lines(np.repeat(rows, 10, axis=0)))
    job = transform(
        sagemaker,
        "too-large-object-2",
        f"file://{tmp_path}/in/",
        f"file://{tmp_path}/o3",
        SplitType="None",
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=1,
    )
    assert job["TransformJobStatus"] == "Failed"
    assert "larger than MaxPayloadInMB" in job["FailureReason"], job["FailureReason"]
    assert not (tmp_path / "o3").exists() or not any((tmp_path / "o3").iterdir())
