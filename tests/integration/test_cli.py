"""The ``shipway`` command line against a real ``shipway server``, with a model trained here."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner, Result

from shipway.cli.client import ApiError, ClientError, ShipwayClient, WaitTimeout
from shipway.cli.main import app
from shipway.domain.listing import SortBy, SortOrder
from tests.fixtures.server import ShipwayServer, free_port

runner = CliRunner()


def shipway(url: str, *args: str, input: str | None = None, code: int = 0) -> Result:
    """Run ``shipway --url URL ARGS...``; check the exit code and that no traceback escaped."""
    result = runner.invoke(app, ["--url", url, *args], input=input)
    assert result.exit_code == code, (
        f"shipway {' '.join(args)} exited {result.exit_code}, not {code}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}"
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def error(result: Result) -> str:
    """The one error line a failed command printed, checked for its form."""
    assert result.stderr.startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def train_iris(folder: Path) -> tuple[LogisticRegression, np.ndarray[Any, Any]]:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    folder.mkdir(parents=True)
    joblib.dump(model, folder / "model.joblib")
    return model, x[::10]


def test_deploy_invoke_inspect_and_delete_a_model(
    shipway_server: ShipwayServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = shipway_server.url
    model, rows = train_iris(tmp_path / "model")
    expected = model.predict(rows).tolist()
    monkeypatch.chdir(tmp_path)  # the model data is given as a relative path

    created = shipway(
        url, "models", "create", "iris", "--image", "sklearn", "--model-data", "model",
        "--env", "SHIPWAY_PREDICT_METHOD=predict",
    )  # fmt: skip
    assert "Created model iris" in created.stdout
    duplicate = shipway(
        url, "models", "create", "iris", "--image", "sklearn", "--model-data", "model", code=1
    )
    assert "ValidationException" in error(duplicate)
    assert "already existing model" in duplicate.stderr

    unknown = shipway(url, "endpoint-configs", "create", "bad", "--model", "no-such-model", code=1)
    assert "ResourceNotFound" in error(unknown)
    assert "no-such-model" in unknown.stderr
    variant = (
        "name=AllTraffic,model=iris,instance-type=ml.t2.medium,count=1,weight=1,routing=random"
    )
    shipway(url, "endpoint-configs", "create", "iris-config", "--variant", variant)

    deployed = shipway(url, "endpoints", "create", "iris", "--config", "iris-config", "--wait")
    assert "Endpoint iris is InService" in deployed.stdout

    # invoke: JSON in, JSON out; CSV on stdin, CSV out; a file, with the variant on stderr
    answer = shipway(url, "invoke", "iris", "--body", json.dumps(rows.tolist()))
    assert json.loads(answer.stdout) == expected
    assert answer.stderr.endswith(" as application/json (the body is valid JSON)\n")
    csv = "".join(",".join(str(v) for v in row) + "\n" for row in rows)
    answer = shipway(
        url, "invoke", "iris", "--content-type", "text/csv", "--accept", "text/csv", input=csv
    )
    assert [int(line) for line in answer.stdout.splitlines()] == expected
    (tmp_path / "rows.csv").write_text(csv)
    answer = shipway(
        url, "invoke", "iris", "--file", "rows.csv", "--content-type", "text/csv", "--verbose"
    )
    assert json.loads(answer.stdout) == expected
    assert "AllTraffic" in answer.stderr

    missing = shipway(url, "invoke", "no-such-endpoint", "--body", "[[1, 2, 3, 4]]", code=1)
    assert "no-such-endpoint" in error(missing)
    broken = shipway(url, "invoke", "iris", "--body", "[[5.1, 3.5", code=1)
    assert "ModelError: the model answered 400: " in error(broken)
    assert "not valid JSON" in broken.stderr
    wrong_variant = shipway(url, "invoke", "iris", "--body", "[[1, 2, 3, 4]]",
                            "--target-variant", "Nope", code=1)  # fmt: skip
    assert "Nope" in error(wrong_variant)

    # list and describe, as tables and as JSON
    assert "iris" in shipway(url, "models", "list").stdout
    listed = json.loads(shipway(url, "models", "list", "--json", "--name-contains", "ir").stdout)
    assert [m["ModelName"] for m in listed["Models"]] == ["iris"]
    assert json.loads(shipway(url, "models", "list", "--json", "--name-contains", "zz").stdout) == {
        "Models": []
    }
    assert "sklearn" in shipway(url, "models", "describe", "iris").stdout
    described = json.loads(shipway(url, "models", "describe", "iris", "--json").stdout)
    container = described["PrimaryContainer"]
    assert container["ModelDataUrl"] == str((tmp_path / "model").resolve())
    assert container["Environment"] == {"SHIPWAY_PREDICT_METHOD": "predict"}

    assert "iris-config" in shipway(url, "endpoint-configs", "list").stdout
    config_table = shipway(url, "endpoint-configs", "describe", "iris-config").stdout
    assert "ml.t2.medium" in config_table
    assert "RANDOM" in config_table
    config = json.loads(
        shipway(url, "endpoint-configs", "describe", "iris-config", "--json").stdout
    )
    assert config["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": "iris",
            "InitialInstanceCount": 1,
            "InstanceType": "ml.t2.medium",
            "InitialVariantWeight": 1.0,
            "RoutingConfig": {"RoutingStrategy": "RANDOM"},
        }
    ]
    configs = json.loads(shipway(url, "endpoint-configs", "list", "--json").stdout)
    assert [c["EndpointConfigName"] for c in configs["EndpointConfigs"]] == ["iris-config"]

    in_service = shipway(url, "endpoints", "list", "--status", "inservice").stdout
    assert "iris" in in_service
    assert "InService" in in_service
    failed = json.loads(shipway(url, "endpoints", "list", "--status", "Failed", "--json").stdout)
    assert failed == {"Endpoints": []}
    endpoint_table = shipway(url, "endpoints", "describe", "iris").stdout
    assert "InService" in endpoint_table
    assert "AllTraffic" in endpoint_table
    assert "1 / 1" in endpoint_table  # weights and instance counts, current / desired
    endpoint = json.loads(shipway(url, "endpoints", "describe", "iris", "--json").stdout)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["ProductionVariants"][0]["CurrentInstanceCount"] == 1

    assert "ml.m5.large" in shipway(url, "instance-types").stdout

    # deletes, in the SageMaker Python SDK's order: the config (the endpoint keeps its copy),
    # the endpoint, the model
    shipway(url, "endpoint-configs", "delete", "iris-config")
    assert "ResourceNotFound" in error(
        shipway(url, "endpoint-configs", "describe", "iris-config", code=1)
    )
    assert "Deleted endpoint iris" in shipway(url, "endpoints", "delete", "iris", "--wait").stdout
    gone = shipway(url, "endpoints", "describe", "iris", code=1)
    assert "ResourceNotFound" in error(gone)
    shipway(url, "models", "delete", "iris")
    assert json.loads(shipway(url, "models", "list", "--json").stdout) == {"Models": []}
    assert "ResourceNotFound" in error(shipway(url, "models", "delete", "iris", code=1))


def test_an_endpoint_that_fails_exits_1_with_its_failure_reason(
    shipway_server: ShipwayServer, tmp_path: Path
) -> None:
    url = shipway_server.url
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.joblib").write_text("not a pickle")
    shipway(url, "models", "create", "broken", "--image", "sklearn", "--model-data", str(folder))
    shipway(url, "endpoint-configs", "create", "broken", "--model", "broken",
            "--instance-type", "ml.t2.medium")  # fmt: skip

    failed = shipway(url, "endpoints", "create", "broken", "--config", "broken", code=1)
    assert "endpoint broken failed: " in error(failed)
    assert "could not be served" in failed.stderr
    described = shipway(url, "endpoints", "describe", "broken").stdout
    assert "Failed" in described
    assert "could not be served" in described
    listed = json.loads(shipway(url, "endpoints", "list", "--status", "failed", "--json").stdout)
    assert [e["EndpointName"] for e in listed["Endpoints"]] == ["broken"]


def test_lists_follow_pages_unless_max_results(
    shipway_server: ShipwayServer, tmp_path: Path
) -> None:
    url = shipway_server.url
    train_iris(tmp_path / "model")
    names = [f"model-{i}" for i in range(5)]
    for name in names:
        shipway(url, "models", "create", name, "--image", "sklearn",
                "--model-data", str(tmp_path / "model"))  # fmt: skip

    with ShipwayClient(url, page_size=2) as client:
        ascending = client.list_models(sort_by=SortBy.NAME, sort_order=SortOrder.ASCENDING)
        assert [m.model_name for m in ascending] == names
        assert len(client.list_models(max_results=3)) == 3
    listed = json.loads(
        shipway(
            url, "models", "list", "--json", "--sort-by", "name", "--sort-order", "ascending"
        ).stdout
    )
    assert [m["ModelName"] for m in listed["Models"]] == names
    first = json.loads(shipway(url, "models", "list", "--json", "--max-results", "2").stdout)
    assert [m["ModelName"] for m in first["Models"]] == ["model-4", "model-3"]


def test_an_unreachable_server_is_one_clear_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = shipway(url, "models", "list", code=1)
    assert error(result) == f"Error: cannot reach Shipway at {url}: is 'shipway server' running?\n"
    from_env = runner.invoke(app, ["invoke", "demo", "--body", "[]"], env={"SHIPWAY_URL": url})
    assert from_env.exit_code == 1
    assert f"cannot reach Shipway at {url}" in error(from_env)


@pytest.mark.parametrize(
    "args",
    [
        ("invoke", "demo", "--body", "[]", "--file", __file__),
        ("invoke", "demo", "--file", "no-such-file.json"),
        ("endpoint-configs", "create", "c"),
        ("endpoint-configs", "create", "c", "--variant", "model=m,colour=red"),
        ("endpoint-configs", "create", "c", "--variant", "name=v"),
        ("endpoint-configs", "create", "c", "--variant", "model=m,count=two"),
        ("endpoint-configs", "create", "c", "--variant", "model=m", "--model", "m"),
        ("models", "create", "m", "--image", "sklearn", "--model-data", "x", "--env", "NOEQUALS"),
        ("models", "create", "m", "--model-data", "x"),
        ("endpoints", "list", "--status", "Sleeping"),
    ],
)
def test_usage_errors_exit_2_before_any_request(args: tuple[str, ...]) -> None:
    # the URL answers nothing: a request would exit 1, not 2
    shipway(f"http://127.0.0.1:{free_port()}", *args, code=2)


def test_requests_the_domain_rejects_fail_before_any_request() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = shipway(url, "models", "create", "bad_name", "--image", "sklearn",
                     "--model-data", "x", code=1)  # fmt: skip
    assert "ValidationException: 1 validation error detected" in error(result)
    assert "'bad_name' at 'modelName'" in result.stderr


class NotShipway(BaseHTTPRequestHandler):
    """A web server that is not Shipway: a web page, a proxy's 502, and one slow endpoint."""

    slow = {
        "EndpointName": "slow",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/slow",
        "EndpointStatus": "Creating",
        "CreationTime": "2026-01-01T00:00:00Z",
        "LastModifiedTime": "2026-01-01T00:00:00Z",
    }

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/api/models":
            self.answer(200, b"<html>a web page</html>", "text/html")
        elif path == "/api/endpoints/slow":
            self.answer(200, json.dumps(self.slow).encode(), "application/json")
        else:
            self.answer(502, b"Bad Gateway from a proxy", "text/plain")

    def answer(self, status: int, body: bytes, media: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_client_translates_what_is_not_a_shipway_answer() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), NotShipway) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        try:
            with ShipwayClient(f"127.0.0.1:{web.server_port}") as client:
                assert client.url == f"http://127.0.0.1:{web.server_port}"
                with pytest.raises(ClientError, match="did not answer a JSON object"):
                    client.list_models()
                with pytest.raises(ApiError) as raised:
                    client.describe_model("m")
                assert (raised.value.code, raised.value.status) == ("HTTP502", 502)
                assert raised.value.message == "Bad Gateway from a proxy"
                with pytest.raises(WaitTimeout, match="endpoint slow is still Creating after 0 s"):
                    client.wait_for_endpoint("slow", timeout=0)
        finally:
            web.shutdown()
