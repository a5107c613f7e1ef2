"""Real-time endpoints end to end: a real server, real instances, real models, over HTTP."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from shipway.cli.main import app
from tests.fixtures import models
from tests.fixtures.s3 import S3Bucket
from tests.fixtures.server import ShipwayServer, module_server, start_server
from tests.integration.deploy import deploy, invoke_json

server = module_server("realtime")


runner = CliRunner()

TRAINERS: dict[str, Callable[[Path], models.Trained]] = {
    "sklearn": models.train_sklearn,
    "xgboost": models.train_xgboost,
    "lightgbm": models.train_lightgbm,
    "onnx": models.train_onnx,
}  # torch, an extra of its own, has its own test below


def test_every_runtime_predicts_what_the_model_predicts_in_process(
    server: ShipwayServer, tmp_path: Path
) -> None:
    trained = {name: train(tmp_path / name) for name, train in TRAINERS.items()}
    for name, model in trained.items():
        deploy(server, f"rt-{name}", str(model.folder), model.image, wait=False)
    with server.client() as client:
        for name, model in trained.items():
            described = server.wait_for_endpoint(f"rt-{name}")
            assert described["EndpointStatus"] == "InService", (name, described)
            response = invoke_json(client, f"rt-{name}", model.rows)
            assert response.status_code == 200, (name, response.text)
            assert response.headers["x-amzn-invoked-production-variant"] == "AllTraffic"
            np.testing.assert_allclose(
                np.asarray(response.json()), model.expected, rtol=1e-5, atol=1e-6, err_msg=name
            )


def test_the_torch_runtime_predicts_what_the_model_predicts_in_process(
    server: ShipwayServer, tmp_path: Path
) -> None:
    model = models.train_torch(tmp_path / "torch")
    described = deploy(server, "rt-torch", str(model.folder), model.image)
    assert described["EndpointStatus"] == "InService", described
    with server.client() as client:
        response = invoke_json(client, "rt-torch", model.rows)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(np.asarray(response.json()), model.expected, rtol=1e-5, atol=1e-6)


def test_every_runtime_deploys_through_the_cli(server: ShipwayServer, tmp_path: Path) -> None:
    trained = {name: train(tmp_path / name) for name, train in TRAINERS.items()}
    for name, model in trained.items():
        for command in (
            ["models", "create", f"cli-{name}", "--image", model.image,
             "--model-data", str(model.folder)],
            ["endpoint-configs", "create", f"cli-{name}", "--model", f"cli-{name}",
             "--instance-type", "ml.t2.medium"],
            ["endpoints", "create", f"cli-{name}", "--config", f"cli-{name}", "--no-wait"],
        ):  # fmt: skip
            result = runner.invoke(app, ["--url", server.url, *command])
            assert result.exit_code == 0, (command, result.output)
    for name, model in trained.items():
        assert server.wait_for_endpoint(f"cli-{name}")["EndpointStatus"] == "InService"
        result = runner.invoke(
            app,
            ["--url", server.url, "invoke", f"cli-{name}", "--content-type", "application/json",
             "--body", json.dumps(model.rows.tolist())],
        )  # fmt: skip
        assert result.exit_code == 0, (name, result.output)
        np.testing.assert_allclose(
            np.asarray(json.loads(result.stdout)),
            model.expected,
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )


def test_python_runtime_serves_a_custom_inference_script(
    server: ShipwayServer, tmp_path: Path
) -> None:
    model = models.train_python(tmp_path / "python")
    deploy(server, "rt-python", str(model.folder), "python")
    with server.client() as client:
        response = client.post(
            "/endpoints/rt-python/invocations",
            content=json.dumps({"features": model.rows.tolist()}),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["probability"], model.expected, rtol=1e-6)
        # the model's own exception comes back as a ModelError with its message
        failed = client.post(
            "/endpoints/rt-python/invocations",
            content=json.dumps({"features": [[1, 2, 3]]}),
            headers={"Content-Type": "application/json"},
        )
        assert failed.status_code == 424
        assert failed.headers["x-amzn-errortype"] == "ModelError"
        assert "boom: 3 features, want 30" in failed.json()["OriginalMessage"]
        assert failed.json()["OriginalStatusCode"] == 500


def test_model_from_s3_tarball(server: ShipwayServer, tmp_path: Path, s3_bucket: S3Bucket) -> None:
    model = models.train_sklearn(tmp_path / "model")
    url = s3_bucket.upload(models.pack(model.folder, tmp_path / "model.tar.gz"), "m/model.tar.gz")
    s3 = start_server(tmp_path / "home-s3", env=s3_bucket.env)
    try:
        deploy(s3, "from-s3", url, "sklearn")
        with s3.client() as client:
            response = invoke_json(client, "from-s3", model.rows)
        assert response.status_code == 200, response.text
        assert response.json() == model.expected.tolist()
    finally:
        s3.stop()


def test_csv_in_csv_out(server: ShipwayServer, tmp_path: Path) -> None:
    model = models.train_sklearn(tmp_path / "model")
    deploy(server, "csv", str(model.folder), "sklearn")
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in model.rows)
    with server.client() as client:
        response = client.post(
            "/endpoints/csv/invocations",
            content=body,
            headers={"Content-Type": "text/csv", "Accept": "text/csv"},
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert [int(float(v)) for v in response.text.split()] == model.expected.tolist()


def test_weighted_variants_split_traffic_and_target_variant_pins(
    server: ShipwayServer, tmp_path: Path
) -> None:
    model = models.train_sklearn(tmp_path / "model")
    deploy(server, "weighted", str(model.folder), "sklearn",
           variants=[("Blue", 1, 3.0), ("Green", 1, 1.0)])  # fmt: skip
    body = json.dumps(model.rows[:1].tolist())
    headers = {"Content-Type": "application/json"}
    seen: Counter[str] = Counter()
    with server.client() as client:
        for _ in range(2000):
            response = client.post("/endpoints/weighted/invocations", content=body, headers=headers)
            assert response.status_code == 200
            seen[response.headers["x-amzn-invoked-production-variant"]] += 1
        assert abs(seen["Blue"] / 2000 - 0.75) <= 0.04, seen
        for _ in range(50):
            response = client.post(
                "/endpoints/weighted/invocations",
                content=body,
                headers={**headers, "X-Amzn-SageMaker-Target-Variant": "Green"},
            )
            assert response.headers["x-amzn-invoked-production-variant"] == "Green"
        unknown = client.post(
            "/endpoints/weighted/invocations",
            content=body,
            headers={**headers, "X-Amzn-SageMaker-Target-Variant": "Red"},
        )
        assert unknown.status_code == 400
        assert "Red" in unknown.json()["message"]
        metrics = client.get("/metrics").text
    assert 'shipway_invocations_total{endpoint_name="weighted",variant_name="Blue"}' in metrics


def test_metrics_query_counts_invocations(server: ShipwayServer, tmp_path: Path) -> None:
    model = models.train_sklearn(tmp_path / "model")
    deploy(server, "counted", str(model.folder), "sklearn")
    with server.client() as client:
        for _ in range(7):
            assert invoke_json(client, "counted", model.rows[:2]).status_code == 200
        invoke_json(client, "counted", model.rows[:2, :3])  # a 4XX from the model
        response = client.get(
            "/api/metrics",
            params={
                "metric": "Invocations",
                "endpoint": "counted",
                "variant": "AllTraffic",
                "start": "2020-01-01T00:00:00Z",
                "end": "2100-01-01T00:00:00Z",
                "period": 3600 * 24 * 365 * 80,
                "statistic": "Sum",
            },
        )
        assert response.status_code == 200, response.text
        assert sum(p["Sum"] for p in response.json()["Datapoints"]) == 8
        errors = client.get(
            "/api/metrics",
            params={
                "metric": "Invocation4XXErrors",
                "endpoint": "counted",
                "variant": "AllTraffic",
                "start": "2020-01-01T00:00:00Z",
                "end": "2100-01-01T00:00:00Z",
                "period": 3600 * 24 * 365 * 80,
                "statistic": "Sum",
            },
        )
        assert sum(p["Sum"] for p in errors.json()["Datapoints"]) == 1


def test_a_text_pipeline_takes_a_list_of_strings(server: ShipwayServer, tmp_path: Path) -> None:
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["great film", "loved it", "wonderful acting", "awful film", "hated it", "boring"]
    labels = [1, 1, 1, 0, 0, 0]
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels)
    (tmp_path / "text").mkdir()
    joblib.dump(model, tmp_path / "text" / "model.joblib")
    deploy(server, "text", str(tmp_path / "text"), "sklearn")
    samples = ["a great film", "boring and awful"] * 5
    with server.client() as client:
        response = client.post(
            "/endpoints/text/invocations",
            content=json.dumps(samples),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 200, response.text
    assert response.json() == model.predict(samples).tolist()
