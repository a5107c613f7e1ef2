"""One model server alone: SageMaker's container contract and tritonclient over V2."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.fixtures import models
from tests.fixtures.server import free_port, run_model_server


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    return models.train_sklearn(tmp_path_factory.mktemp("ms") / "model")


@pytest.fixture(scope="module")
def model_server(trained: models.Trained) -> Iterator[str]:
    """The model server alone, as ``host:port`` (tritonclient's form)."""
    with run_model_server(
        "--runtime", "sklearn", "--model-dir", str(trained.folder), "--model-name", "cancer"
    ) as url:
        yield url.removeprefix("http://")


def test_container_contract(model_server: str, trained: models.Trained) -> None:
    response = httpx.post(
        f"http://{model_server}/invocations",
        content=json.dumps(trained.rows.tolist()),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == trained.expected.tolist()


def test_tritonclient_infers_over_the_v2_protocol(
    model_server: str, trained: models.Trained
) -> None:
    client = triton.InferenceServerClient(url=model_server)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("cancer")
        assert client.get_model_metadata("cancer")["name"] == "cancer"
        for binary in (True, False):
            rows = np.ascontiguousarray(trained.rows, dtype=np.float64)
            inputs = triton.InferInput("input", list(rows.shape), "FP64")
            inputs.set_data_from_numpy(rows, binary_data=binary)
            outputs = [triton.InferRequestedOutput("predict", binary_data=binary)]
            result = client.infer("cancer", [inputs], outputs=outputs)
            np.testing.assert_array_equal(result.as_numpy("predict"), trained.expected)
        with pytest.raises(triton.InferenceServerException):
            client.infer("somebody-else", [inputs])
    finally:
        client.close()


def test_a_model_that_will_not_load_exits_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"garbage")
    failure = tmp_path / "failure"
    done = subprocess.run(
        [sys.executable, "-m", "shipway.serving", "--runtime", "sklearn",
         "--model-dir", str(tmp_path), "--port", str(free_port()),
         "--failure-file", str(failure)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3
    assert "model.joblib" in failure.read_text()
