"""What the deployment tests share: a model that says which version answered, steady load from
a real client, and boto3 clients for the sagemaker and cloudwatch services."""

from __future__ import annotations

import hashlib
import json
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx

from tests.fixtures.models import pack, train_sklearn

__all__ = [
    "ROLE",
    "Load",
    "Outcome",
    "Timeline",
    "VersionedModel",
    "aws",
    "create_config",
    "create_model",
    "put_alarm",
    "unpacked",
    "versioned_model",
    "wait_until",
]

ROLE = "arn:aws:iam::123456789012:role/shipway"

VERSIONED_INFERENCE_PY = textwrap.dedent(
    """
    import json
    import os
    import time

    import joblib
    import numpy as np

    VERSION = os.environ.get("MODEL_VERSION", "1")
    FAIL = os.environ.get("MODEL_FAIL")
    SLOW_MS = float(os.environ.get("MODEL_SLOW_MS", "0"))


    def model_fn(model_dir):
        gate = os.environ.get("MODEL_LOAD_GATE")  # a file name in the model's folder
        if gate and os.path.exists(os.path.join(model_dir, gate)):
            raise RuntimeError(f"model version {VERSION} cannot load: {gate} exists")
        return joblib.load(os.path.join(model_dir, "model.joblib"))


    def input_fn(body, content_type):
        return np.asarray(json.loads(body))


    def predict_fn(data, model):
        if FAIL:
            raise RuntimeError(f"model version {VERSION} is broken: {FAIL}")
        if SLOW_MS:
            time.sleep(SLOW_MS / 1000)
        return model.predict_proba(data)[:, 1]


    def output_fn(prediction, accept):
        return json.dumps({"version": VERSION, "probability": prediction.tolist()}), (
            "application/json"
        )
    """
)


@dataclass
class VersionedModel:
    archive: Path
    rows: list[list[float]]


def versioned_model(folder: Path) -> VersionedModel:
    """One sklearn classifier (breast cancer) served by an ``inference.py`` that reports the
    ``MODEL_VERSION`` of its container, fails when ``MODEL_FAIL`` is set, sleeps
    ``MODEL_SLOW_MS`` per request, and cannot load once the file ``MODEL_LOAD_GATE`` names
    exists in its model folder (the sandbox lets it see nothing else; see :func:`unpacked`):
    versions differ only in their environment."""
    trained = train_sklearn(folder / "model")
    (trained.folder / "code").mkdir(exist_ok=True)
    (trained.folder / "code" / "inference.py").write_text(VERSIONED_INFERENCE_PY)
    archive = pack(trained.folder, folder / "model.tar.gz")
    return VersionedModel(archive, trained.rows[:1].tolist())


def aws(url: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-checked-when-auth-is-off",
    )


def unpacked(home: Path, model: VersionedModel) -> Path:
    """Where a server with data dir ``home`` unpacked the model's archive (its cache is keyed
    by the archive's sha256): the model folder its instances see."""
    return home / "artifacts" / hashlib.sha256(model.archive.read_bytes()).hexdigest()


def create_model(sagemaker: Any, model: VersionedModel, name: str, **environment: str) -> None:
    """Model ``name``: the versioned model with this container environment."""
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": "python",
            "ModelDataUrl": str(model.archive),
            "Environment": environment,
        },
        ExecutionRoleArn=ROLE,
    )


def create_config(sagemaker: Any, name: str, model: str, count: int = 2, **shadow: Any) -> None:
    """Endpoint configuration ``name``: variant ``AllTraffic`` of ``count`` instances of
    ``model``, and a shadow variant if ``shadow`` gives its fields."""
    fields: dict[str, Any] = {}
    if shadow:
        fields["ShadowProductionVariants"] = [
            {"VariantName": "Shadow", "InstanceType": "ml.t2.medium",
             "InitialInstanceCount": 1, **shadow}
        ]  # fmt: skip
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InstanceType": "ml.t2.medium",
                "InitialInstanceCount": count,
            }
        ],
        **fields,
    )


def put_alarm(
    cloudwatch: Any,
    name: str,
    metric: str,
    threshold: float,
    *,
    endpoint: str = "e",
    period: int = 10,
    **fields: Any,
) -> None:
    """An alarm on an endpoint metric of variant AllTraffic: the Sum (unless ``fields`` say
    otherwise) over one ``period`` at or above ``threshold``; missing data is not breaching.
    Returns once the evaluator has seen it (it is no longer INSUFFICIENT_DATA): instances now
    start in milliseconds, so a test could otherwise look at it before its first evaluation."""
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName=metric,
        Dimensions=[
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        Period=period,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        **({"Statistic": "Sum"} | fields),
    )
    deadline = time.monotonic() + 30
    while cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == (
        "INSUFFICIENT_DATA"
    ):
        assert time.monotonic() < deadline, f"alarm {name} was never evaluated"
        time.sleep(0.05)


@dataclass(frozen=True)
class Outcome:
    at: float
    """time.monotonic() when the answer came."""
    status: int
    version: str | None
    """The model version that answered, for a 200."""
    error: str = ""


@dataclass
class Load:
    """Closed-loop load from ``workers`` threads, each with its own kept-alive connection,
    recording every request's outcome until stopped."""

    url: str
    endpoint: str
    body: bytes
    workers: int = 4
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for n in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"load-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        path = f"/endpoints/{self.endpoint}/invocations"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(path, content=self.body, headers=headers)
                except httpx.HTTPError as exc:
                    self.outcomes.append(Outcome(time.monotonic(), 0, None, repr(exc)))
                    time.sleep(0.05)
                    continue
                if response.status_code == 200:
                    version = json.loads(response.content)["version"]
                    self.outcomes.append(Outcome(time.monotonic(), 200, version))
                else:
                    self.outcomes.append(
                        Outcome(time.monotonic(), response.status_code, None, response.text)
                    )

    def mark(self) -> int:
        return len(self.outcomes)

    def since(self, mark: int) -> list[Outcome]:
        return list(self.outcomes[mark:])

    def wait_for(self, count: int, since: int, timeout: float = 60) -> list[Outcome]:
        """At least ``count`` outcomes after ``since``."""
        wait_until(lambda: len(self.outcomes) - since >= count, timeout, "load")
        return self.since(since)

    def failures(self, since: int = 0) -> list[Outcome]:
        return [o for o in self.outcomes[since:] if o.status != 200]


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass(frozen=True)
class Mark:
    at: float
    phase: str
    step: int
    share: float


@dataclass
class Timeline:
    """Polls a deployment's state every 50 ms from a thread, keeping each change with its time,
    until the deployment is over (the view answers 404)."""

    url: str
    endpoint: str
    marks: list[Mark] = field(default_factory=list)
    ended: float | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> Timeline:
        self._thread = threading.Thread(target=self._run, name="timeline", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._thread.join(120)

    def _run(self) -> None:
        started = False
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while True:
                try:
                    response = client.get(f"/api/endpoints/{self.endpoint}/deployment")
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                now = time.monotonic()
                if response.status_code == 404:
                    if started:
                        self.ended = now
                        return
                else:
                    started = True
                    d = response.json()
                    mark = Mark(now, d["Phase"], d["Step"], d["Share"])
                    last = self.marks[-1] if self.marks else None
                    if last is None or (last.phase, last.step, last.share) != (
                        mark.phase,
                        mark.step,
                        mark.share,
                    ):
                        self.marks.append(mark)
                time.sleep(0.05)

    def windows(self, phase: str) -> list[tuple[Mark, float]]:
        """Each stretch spent in ``phase``: its first mark and when it ended."""
        found = []
        for n, mark in enumerate(self.marks):
            if mark.phase == phase:
                end = self.marks[n + 1].at if n + 1 < len(self.marks) else self.ended
                assert end is not None
                found.append((mark, end))
        return found
