"""``shipway invoke`` as a user runs it: the content type comes from the file's extension or
the body and is said on stderr (stdout is the model's answer alone); a body it cannot tell is
refused with a hint; a model's error names the instance's real log file, which holds the
model's traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, module_server
from tests.integration.deploy import deploy

server = module_server("invoke")


@pytest.fixture(scope="module")
def sklearn(server: ShipwayServer, tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    model = models.train_sklearn(tmp_path_factory.mktemp("sklearn"))
    deploy(server, "sk", str(model.folder), "sklearn")
    return model


@pytest.fixture(scope="module")
def failing(server: ShipwayServer, tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    """A model whose own code raises on a request of the wrong width (see INFERENCE_PY)."""
    model = models.train_python(tmp_path_factory.mktemp("python"))
    deploy(server, "py", str(model.folder), "python")
    return model


def shipway(
    server: ShipwayServer, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipway", "--url", server.url, "invoke", *args],
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def csv(rows: np.ndarray) -> str:
    return "\n".join(",".join(repr(float(v)) for v in row) for row in rows) + "\n"


def test_a_csv_body_is_sent_as_csv_and_said_on_stderr(
    server: ShipwayServer, sklearn: models.Trained
) -> None:
    result = shipway(server, "sk", "--body", csv(sklearn.rows[:2]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == sklearn.expected[:2].tolist()
    assert result.stderr.strip() == "sent 2 lines as text/csv (the body is comma-separated numbers)"


def test_a_json_body_from_stdin(server: ShipwayServer, sklearn: models.Trained) -> None:
    body = json.dumps(sklearn.rows[:3].tolist()).encode()
    result = shipway(server, "sk", stdin=body)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == sklearn.expected[:3].tolist()
    assert f"sent {len(body)} bytes as application/json (the body is valid JSON)" in result.stderr


@pytest.mark.parametrize(
    ("suffix", "media"),
    [(".csv", "text/csv"), (".jsonl", "application/jsonlines"), (".npy", "application/x-npy")],
)
def test_a_file_is_sent_as_its_extension_says(
    server: ShipwayServer, sklearn: models.Trained, tmp_path: Path, suffix: str, media: str
) -> None:
    file = tmp_path / f"rows{suffix}"
    rows = sklearn.rows[:2]
    if suffix == ".csv":
        file.write_text(csv(rows))
    elif suffix == ".jsonl":
        file.write_text("".join(json.dumps(row) + "\n" for row in rows.tolist()))
    else:
        np.save(file, rows)
    result = shipway(server, "sk", "--file", str(file))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == sklearn.expected[:2].tolist()
    assert f"as {media} (from the extension {suffix})" in result.stderr


def test_a_body_it_cannot_tell_asks_for_the_content_type(server: ShipwayServer) -> None:
    result = shipway(server, "sk", "--body", "sepal: 5.1, petal: 1.4")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "could not tell what the body is" in result.stderr
    assert "--content-type" in result.stderr


def test_a_given_content_type_is_sent_as_is_and_a_model_s_refusal_hints_at_it(
    server: ShipwayServer, sklearn: models.Trained
) -> None:
    # CSV said to be JSON: the model answers 400, and the hint says what was sent
    result = shipway(server, "sk", "--content-type", "application/json", "--body", "1,2\n3,4")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "ModelError: the model answered 400" in result.stderr
    assert "Note: sent the body as application/json (--content-type)" in result.stderr


def test_a_model_error_points_at_the_instance_log_with_the_traceback(
    server: ShipwayServer, failing: models.Trained
) -> None:
    body = json.dumps({"features": failing.rows[:1, :5].tolist()})
    with server.client() as client:
        response = client.post(
            "/endpoints/py/invocations", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 424
    error = response.json()
    log = Path(error["LogStreamArn"])
    assert log.is_absolute()
    assert log.is_relative_to(server.home / "logs"), log
    assert f"See {log} for more information." in error["Message"]
    text = log.read_text()
    assert "Traceback" in text
    assert "boom: 5 features, want 30" in text

    result = shipway(server, "py", "--body", body)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "the model answered 500: ValueError: boom: 5 features, want 30" in result.stderr
    assert f"The model's log: {log}" in result.stderr
    # the content type was a guess: the error says what was sent
    assert "as application/json (the body is valid JSON); if the model reads" in result.stderr
