"""Scale-out benchmark: how long from a step in the load to the capacity it adds serving.

Starts ``shipway server`` (fresh data dir, policies evaluated every second:
``SHIPWAY_AUTOSCALING_INTERVAL_SECONDS=1``) with a scikit-learn model (StandardScaler +
LogisticRegression on breast_cancer) on a real-time endpoint of one instance, registered as a
scalable target of 1 to 2 instances with a target tracking policy on
``SageMakerVariantInvocationsPerInstance`` (TargetValue 3,000 per instance per minute,
ScaleOutCooldown 0). Each round, from one instance and no load:

- 32 clients start, each sending 25 requests a second (one row each; 48,000 a minute in all);
- **decided**: the time until DescribeEndpoint's DesiredInstanceCount is 2 (the autoscaler's
  scaling activity);
- **serving**: the time until the second instance is in service, taking its share of the load
  (CurrentInstanceCount 2, polled every 20 ms);
- then the clients stop and the variant is set back to one instance
  (UpdateEndpointWeightsAndCapacities).

The reference is the policy's own floor: target tracking scales out once three evaluation
intervals in a row are above the target (three 1-minute datapoints on AWS, three seconds here),
so "serving ÷ 3 intervals" is what the rest of the path (the decision, the controller, the
instance start, the health check, the routing table) adds to that wait. Every request's
status is counted; a failed one is reported.

    .venv/bin/python bench/elasticity/scale_out.py              # 5 rounds, about a minute
    .venv/bin/python bench/elasticity/scale_out.py --rounds 10

Prints a markdown table (median and worst over the rounds) and writes every measurement to
``bench/results/scale-out-<time>.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from harness import (  # noqa: E402
    Processes,
    call_json,
    free_port,
    healthy,
    train_model,
    wait_until,
)

RESULTS = HERE.parent / "results"
INTERVAL = 1.0
CLIENTS = 32
RATE = 25.0
"""Requests per second of each client."""
ROW = json.dumps([[1.0] * 30]).encode()


class Load:
    """``CLIENTS`` threads, each sending ``RATE`` requests a second on a kept-alive
    connection, until stopped; every answer's status is counted."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=60)
        due = time.monotonic()
        while not self._stop.is_set():
            due += 1 / RATE
            if (wait := due - time.monotonic()) > 0:
                self._stop.wait(wait)
            try:
                connection.request(
                    "POST", "/endpoints/bench/invocations", ROW,
                    {"Content-Type": "application/json"},
                )  # fmt: skip
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=60)
            with self._lock:
                self.statuses[status] += 1
        connection.close()


def variant(url: str) -> dict[str, Any]:
    described: dict[str, Any] = call_json(url, "GET", "/api/endpoints/bench")["ProductionVariants"][
        0
    ]
    return described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="shipway-bench-scale-out-"))
    model = train_model(workdir / "model")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes = Processes(workdir)
    env = {
        **os.environ,
        "SHIPWAY_AUTOSCALING_INTERVAL_SECONDS": str(INTERVAL),
        "PYTHONPATH": str(REPO / "src"),
    }
    home = workdir / "home"
    processes.start(
        "server",
        [sys.executable, "-m", "shipway", "server", "--port", str(port), "--home", str(home)],
        env,
    )
    decided: list[float] = []
    serving: list[float] = []
    statuses: Counter[int] = Counter()
    try:
        wait_until(lambda: healthy(url), 60, poll=0.1)
        call_json(url, "POST", "/api/models", {"ModelName": "bench", "PrimaryContainer": {
            "Image": "sklearn", "ModelDataUrl": str(model)}})  # fmt: skip
        call_json(url, "POST", "/api/endpoint-configs", {"EndpointConfigName": "bench",
             "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "bench",
             "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]})  # fmt: skip
        call_json(
            url, "POST", "/api/endpoints", {"EndpointName": "bench", "EndpointConfigName": "bench"}
        )

        def in_service() -> bool:
            status: str = call_json(url, "GET", "/api/endpoints/bench")["EndpointStatus"]
            return status == "InService"

        wait_until(in_service, 120, poll=0.1)
        scaling = "/api/endpoints/bench/variants/AllTraffic/scaling"
        call_json(url, "PUT", scaling, {"MinCapacity": 1, "MaxCapacity": 2})
        call_json(url, "PUT", f"{scaling}/policies/invocations", {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 3000.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleOutCooldown": 0, "ScaleInCooldown": 3600}})  # fmt: skip
        for round_ in range(args.rounds):
            time.sleep(2 * INTERVAL)
            with Load(port) as load:
                started = time.perf_counter()
                wait_until(lambda: variant(url).get("DesiredInstanceCount") == 2, 60)
                decided.append(time.perf_counter() - started)
                wait_until(lambda: variant(url).get("CurrentInstanceCount") == 2, 60)
                serving.append(time.perf_counter() - started)
                time.sleep(1)  # the new instance takes its share
            statuses.update(load.statuses)
            wait_until(in_service, 60)
            call_json(url, "POST", "/api/endpoints/bench/weights-and-capacities",
                 [{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}])  # fmt: skip
            wait_until(lambda: variant(url).get("CurrentInstanceCount") == 1, 60)
            wait_until(in_service, 60)
            print(f"round {round_ + 1}: decided {decided[-1]:.2f} s, serving {serving[-1]:.2f} s",
                  file=sys.stderr)  # fmt: skip
    finally:
        processes.stop_all()
    report(decided, serving, statuses, workdir)


def report(
    decided: list[float], serving: list[float], statuses: Counter[int], workdir: Path
) -> None:
    floor = 3 * INTERVAL
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"\nMeasured on {datetime.now(UTC):%Y-%m-%d at %H:%M} UTC, {len(serving)} rounds, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, commit {commit}; "
        f"{CLIENTS} clients at {RATE:g} requests a second each, policies evaluated every "
        f"{INTERVAL:g} s.\n"
    )
    print("| from the load step to | median s | worst s | median ÷ 3 intervals |")
    print("|---|--:|--:|--:|")
    for label, values in (("the decision (DesiredInstanceCount 2)", decided),
                          ("the added instance serving", serving)):  # fmt: skip
        median = statistics.median(values)
        print(f"| {label} | {median:.2f} | {max(values):.2f} | {median / floor:.2f}x |")
    failed = sum(n for status, n in statuses.items() if status != 200)
    print(f"\nRequests: {sum(statuses.values())}, failed: {failed} ({dict(statuses)}).")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale-out-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    document = {"decided": decided, "serving": serving, "statuses": dict(statuses),
                "workdir": str(workdir)}  # fmt: skip
    out.write_text(json.dumps(document, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
