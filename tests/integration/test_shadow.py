"""Shadow variants through the router, with real model servers: production answers every caller,
a sample goes to the shadow, and the shadow report counts and compares what came back.

The routing snapshot is applied by the test, as the controller would publish it; the models are
trained here on scikit-learn's bundled breast-cancer data.
"""

from __future__ import annotations

import asyncio
import json
import random
import textwrap
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import joblib
import numpy as np
import pytest
import uvicorn
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from typer.testing import CliRunner

from shipway.cli.client import ApiError, ShipwayClient
from shipway.cli.main import app
from shipway.domain.endpoint_config import RoutingStrategy
from shipway.domain.errors import ValidationError
from shipway.monitor.metrics import MetricsStore
from shipway.monitor.shadow_report import ShadowPairReport, ShadowReport
from shipway.platform import Platform
from shipway.router.router import Invocation, InvocationResult, Router
from shipway.router.routing import EndpointSnapshot, InstanceSnapshot, Snapshot, VariantSnapshot
from shipway.settings import Settings
from tests.fixtures import models
from tests.fixtures.server import free_port, run_model_server

T = TypeVar("T")
N = 1_000
MIB = 1024 * 1024
DIMENSIONS = {"EndpointName": "orders"}

SLOW_INFERENCE_PY = textwrap.dedent(
    """
    import time


    def predict_fn(data, model):
        time.sleep(1.0)
        return model.predict(data)
    """
)


@dataclass
class Models:
    """The model servers' URLs, and what production and the different shadow predict."""

    production: str
    identical: str
    different: str
    broken: str
    rows: np.ndarray[Any, Any]
    production_predictions: np.ndarray[Any, Any]
    different_predictions: np.ndarray[Any, Any]
    production_folder: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Models]:
    root = tmp_path_factory.mktemp("shadow")
    trained = models.train_sklearn(root / "production")
    x, y = load_breast_cancer(return_X_y=True)
    stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(x, y)
    (root / "different").mkdir()
    joblib.dump(stump, root / "different" / "model.joblib")
    xi, yi = load_iris(return_X_y=True)
    (root / "broken").mkdir()  # an iris model: 30 features per row are not what it takes
    joblib.dump(LogisticRegression(max_iter=1000).fit(xi, yi), root / "broken" / "model.joblib")
    folders = [trained.folder, trained.folder, root / "different", root / "broken"]
    with ExitStack() as stack:
        production, identical, different, broken = serve_all(stack, folders)
        yield Models(
            production=production,
            identical=identical,
            different=different,
            broken=broken,
            rows=x,
            production_predictions=trained.model.predict(x),
            different_predictions=stump.predict(x),
            production_folder=trained.folder,
        )


def serve_all(stack: ExitStack, folders: list[Path]) -> list[str]:
    """A sklearn model server per folder, started side by side; stopped when ``stack`` closes."""
    servers = [run_model_server("--runtime", "sklearn", "--model-dir", str(f)) for f in folders]
    with ThreadPoolExecutor(len(servers)) as pool:
        started = [pool.submit(server.__enter__) for server in servers]
    for server, future in zip(servers, started, strict=True):
        if future.exception() is None:
            stack.push(server)
    return [future.result() for future in started]


def snapshot(production: str, shadow: str, *, shadow_weight: float = 1.0) -> Snapshot:
    def variant(name: str, model: str, weight: float, instance: str, url: str) -> VariantSnapshot:
        return VariantSnapshot(
            name, model, weight, RoutingStrategy.RANDOM, (InstanceSnapshot(instance, url),)
        )

    endpoint = EndpointSnapshot(
        "orders",
        (variant("AllTraffic", "cancer", 1.0, "p-1", production),),
        shadows=(variant("Shadow", "candidate", shadow_weight, "s-1", shadow),),
    )
    return Snapshot((endpoint,), version=1)


def make_router(**kwargs: Any) -> Router:
    return Router(
        MetricsStore(),
        account_id="123456789012",
        max_payload_bytes=6 * MIB,
        model_timeout_seconds=10.0,
        rng=random.Random(20261121),
        **kwargs,
    )


def body(rows: np.ndarray[Any, Any], i: int) -> bytes:
    return json.dumps([rows[i % len(rows)].tolist()]).encode()


async def invoke_many(
    router: Router, rows: np.ndarray[Any, Any], n: int = N, concurrency: int = 8
) -> list[InvocationResult]:
    """``n`` invocations, ``concurrency`` at a time, row i % len(rows) each; then wait for the
    copies to the shadow to finish."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> InvocationResult:
        async with gate:
            return await router.invoke(
                Invocation("orders", body(rows, i), content_type=b"application/json")
            )

    results = await asyncio.gather(*(one(i) for i in range(n)))
    await router.drain_shadows(timeout=30)
    return list(results)


def run(router: Router, scenario: Coroutine[Any, Any, T]) -> tuple[T, ShadowReport]:
    """Run ``scenario``; its result and the shadow report after it. The router's connections
    are closed at the end (its report stays, but no longer knows the sampling fraction)."""

    async def main() -> tuple[T, ShadowReport]:
        try:
            result = await scenario
            report = router.shadow_report("orders")
            assert report is not None
            return result, report
        finally:
            router.table.close()

    return asyncio.run(main())


def only_pair(report: ShadowReport | None) -> ShadowPairReport:
    """The report's one pair, AllTraffic and Shadow, whose counts must add up."""
    assert report is not None
    assert report.in_flight == 0
    [pair] = report.pairs
    assert (pair.production_variant, pair.shadow_variant) == ("AllTraffic", "Shadow")
    assert pair.sampled == (
        pair.skipped + pair.compared + pair.production_errors + pair.shadow_errors
    )
    return pair


def metric_sum(router: Router, name: str, variant: str) -> float:
    now = time.time()
    points = router.metrics.query(
        name,
        {**DIMENSIONS, "VariantName": variant},
        start=now - 600,
        end=now + 60,
        period=3600,
        statistic="Sum",
    )
    return sum(p.value for p in points)


def assert_production_answered(served: Models, results: list[InvocationResult]) -> None:
    expected = [[int(served.production_predictions[i % len(served.rows)])] for i in range(N)]
    assert [json.loads(r.body) for r in results] == expected[: len(results)]
    assert {r.variant_name for r in results} == {"AllTraffic"}


def test_an_identical_shadow_agrees_on_every_one_of_1000_mirrored_requests(
    served: Models,
) -> None:
    router = make_router(max_shadow_in_flight=256)
    router.apply(snapshot(served.production, served.identical))

    async def scenario() -> list[InvocationResult]:
        results = await invoke_many(router, served.rows)
        with pytest.raises(ValidationError, match="not a production variant"):
            await router.invoke(Invocation("orders", body(served.rows, 0), target_variant="Shadow"))
        return results

    results, report = run(router, scenario())

    assert_production_answered(served, results)
    pair = only_pair(report)
    assert (pair.sampled, pair.compared, pair.skipped) == (N, N, 0)
    assert (pair.production_errors, pair.shadow_errors) == (0, 0)
    assert (pair.agreeing, pair.agreement_rate, pair.sampling_fraction) == (N, 1.0, 1.0)
    assert pair.disagreements == []
    assert pair.production_latency is not None
    assert pair.shadow_latency is not None
    assert pair.production_latency.count == pair.shadow_latency.count == N
    assert 0 < pair.shadow_latency.p50 <= pair.shadow_latency.p90 <= pair.shadow_latency.p99
    # the shadow's own SageMaker metrics, beside production's
    assert metric_sum(router, "Invocations", "AllTraffic") == N
    assert metric_sum(router, "Invocations", "Shadow") == N
    assert metric_sum(router, "InvocationModelErrors", "Shadow") == 0
    assert metric_sum(router, "ModelLatency", "Shadow") > 0


def test_a_different_shadow_disagrees_where_its_model_does_and_callers_never_see_it(
    served: Models,
) -> None:
    router = make_router(max_shadow_in_flight=256)
    router.apply(snapshot(served.production, served.different))

    results, report = run(router, invoke_many(router, served.rows))

    assert_production_answered(served, results)
    rows = [i % len(served.rows) for i in range(N)]
    same = sum(served.production_predictions[i] == served.different_predictions[i] for i in rows)
    assert 0.5 * N < same < N  # the stump is a worse model, not a useless one
    pair = only_pair(report)
    assert (pair.sampled, pair.compared) == (N, N)
    assert pair.agreeing == same
    assert pair.agreement_rate == pytest.approx(same / N)
    assert pair.max_difference == 1.0
    assert pair.incomparable == 0
    assert 0 < len(pair.disagreements) <= 5
    example = pair.disagreements[-1]
    assert example.difference == 1.0
    assert {json.loads(example.production_output)[0], json.loads(example.shadow_output)[0]} == {
        0,
        1,
    }
    assert example.request.startswith("[[")
    assert only_pair(router.shadow_report("orders", 1.0)).agreement_rate == 1.0


def test_a_lower_shadow_weight_samples_that_fraction_of_requests(served: Models) -> None:
    router = make_router(max_shadow_in_flight=256)
    router.apply(snapshot(served.production, served.identical, shadow_weight=0.25))

    results, report = run(router, invoke_many(router, served.rows))

    assert_production_answered(served, results)
    pair = only_pair(report)
    assert pair.sampling_fraction == 0.25
    # binomial(1000, 0.25): mean 250, standard deviation 13.7; five of them either side
    assert 181 <= pair.sampled <= 319
    assert pair.compared == pair.sampled
    assert metric_sum(router, "Invocations", "Shadow") == pair.sampled


def test_a_shadow_whose_model_fails_never_fails_a_caller(served: Models) -> None:
    router = make_router(max_shadow_in_flight=256)
    router.apply(snapshot(served.production, served.broken))

    results, report = run(router, invoke_many(router, served.rows, n=300))

    assert_production_answered(served, results)
    assert len(results) == 300
    pair = only_pair(report)
    assert (pair.sampled, pair.shadow_errors, pair.compared) == (300, 300, 0)
    assert pair.agreement_rate is None
    assert metric_sum(router, "InvocationModelErrors", "Shadow") == 300
    assert metric_sum(router, "InvocationModelErrors", "AllTraffic") == 0


def test_a_dead_shadow_instance_never_fails_a_caller(served: Models) -> None:
    down: list[str] = []
    router = make_router(on_instance_down=down.append)
    router.apply(snapshot(served.production, f"http://127.0.0.1:{free_port()}"))

    async def scenario() -> list[InvocationResult]:
        results = await invoke_many(router, served.rows, n=200)
        route = router.table.get("orders")
        assert route is not None
        assert route.shadows[0].pick() is None  # marked down
        return results

    results, report = run(router, scenario())

    assert_production_answered(served, results)
    pair = only_pair(report)
    assert (pair.sampled, pair.shadow_errors, pair.compared) == (200, 200, 0)
    assert pair.shadow_latency is None  # nothing ever reached it
    # marked down by the copies already on their way to it; after that no live instance to try
    assert set(down) == {"s-1"}
    assert len(down) <= 8


def test_copies_beyond_the_bound_are_skipped_and_a_slow_shadow_never_slows_callers(
    served: Models, tmp_path: Path
) -> None:
    slow = tmp_path / "slow"
    (slow / "code").mkdir(parents=True)
    (slow / "model.joblib").write_bytes((served.production_folder / "model.joblib").read_bytes())
    (slow / "code" / "inference.py").write_text(SLOW_INFERENCE_PY)
    with run_model_server("--runtime", "python", "--model-dir", str(slow)) as url:
        router = make_router(max_shadow_in_flight=2)
        router.apply(snapshot(served.production, url))

        async def scenario() -> tuple[list[float], int]:
            latencies = []
            for i in range(30):  # one at a time: each answer comes long before a copy's
                started = time.perf_counter()
                await router.invoke(
                    Invocation("orders", body(served.rows, i), content_type=b"application/json")
                )
                latencies.append(time.perf_counter() - started)
            report = router.shadow_report("orders")
            assert report is not None
            await router.drain_shadows(timeout=30)
            return latencies, report.in_flight

        (latencies, in_flight), report = run(router, scenario())

    assert max(latencies) < 0.5  # the shadow takes a second per request
    assert in_flight == 2
    pair = only_pair(report)
    assert (pair.sampled, pair.skipped, pair.compared) == (30, 28, 2)
    assert pair.agreement_rate == 1.0
    assert pair.shadow_latency is not None
    assert pair.shadow_latency.p50 >= 1000.0


# --- the REST API, the client and the CLI ----------------------------------------------------


@pytest.fixture
def platform_url(served: Models, tmp_path: Path) -> Iterator[tuple[Platform, str]]:
    """A platform in this process, on a free port, routing ``orders`` with a shadow (its
    controller has no endpoints: the test publishes the routing snapshot once it started)."""
    platform = Platform(Settings(home=tmp_path / "home"))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(platform, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    platform.router.apply(snapshot(served.production, served.different))
    try:
        yield platform, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_shadow_report_over_rest_the_client_and_the_cli(
    served: Models, platform_url: tuple[Platform, str]
) -> None:
    platform, url = platform_url
    with httpx.Client(base_url=url, timeout=30) as http:
        for i in range(100):
            answer = http.post(
                "/endpoints/orders/invocations",
                content=body(served.rows, i),
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == [int(served.production_predictions[i])]
        deadline = time.monotonic() + 10
        while True:  # the copies finish on the server's loop
            document = http.get("/api/endpoints/orders/shadow-report").json()
            if document["InFlight"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert document["InFlight"] == 0
        [pair] = document["Pairs"]
        assert pair["Sampled"] == pair["Compared"] == 100
        assert pair["ProductionVariant"] == "AllTraffic"
        assert pair["ShadowVariant"] == "Shadow"
        assert pair["SamplingFraction"] == 1.0

        missing = http.get("/api/endpoints/nobody/shadow-report")
        assert missing.status_code == 404
        assert missing.json()["code"] == "ResourceNotFound"
        assert "Endpoint nobody has no shadow report" in missing.json()["message"]
        negative = http.get("/api/endpoints/orders/shadow-report", params={"tolerance": "-1"})
        assert negative.status_code == 400
        assert negative.json()["code"] == "ValidationException"

    with ShipwayClient(url) as client:
        report = client.shadow_report("orders", tolerance=1.0)
        assert isinstance(report, ShadowReport)
        assert report.tolerance == 1.0
        assert report.pairs[0].agreement_rate == 1.0
        with pytest.raises(ApiError) as missing_error:
            client.shadow_report("nobody")
        assert missing_error.value.status == 404

    runner = CliRunner()
    table = runner.invoke(app, ["--url", url, "endpoints", "shadow-report", "orders"])
    assert table.exit_code == 0, table.output
    assert "AllTraffic vs shadow Shadow (sampling 100.0%)" in table.stdout
    assert f"{pair['Agreeing'] / 100:.2%} ({pair['Agreeing']} of 100)" in table.stdout
    assert "Production AllTraffic" in table.stdout
    assert "p99" in table.stdout
    as_json = runner.invoke(
        app, ["--url", url, "endpoints", "shadow-report", "orders", "--tolerance", "1", "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["Pairs"][0]["AgreementRate"] == 1.0
    none = runner.invoke(app, ["--url", url, "endpoints", "shadow-report", "nobody"])
    assert none.exit_code == 1
    assert none.stderr.startswith("Error: ResourceNotFound: Endpoint nobody has no shadow report")

    assert platform.router.reset_shadow_report("orders") is True
    report = platform.router.shadow_report("orders")
    assert report is not None
    assert report.pairs[0].sampled == 0
