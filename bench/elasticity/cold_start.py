"""Elasticity benchmark: serverless cold starts, instance starts and idle memory, against a bare
Python process start of the same model.

Starts ``shipway server`` (fresh data dir, ``SHIPWAY_SERVERLESS_IDLE_SECONDS=1``) with a
scikit-learn model (StandardScaler + LogisticRegression on breast_cancer, joblib), then per round:

- **reference**: ``python -c`` that imports joblib and scikit-learn, loads the model and predicts
  one row: what any process that serves this model pays before its first answer;
- **serverless cold start**: a serverless endpoint (2048 MB, MaxConcurrency 5) scaled to zero (no
  instance process left) gets one request through the router; the time from sending it to its
  answer;
- **real-time instance start**: a real-time endpoint's variant goes from 1 to 2 instances
  (UpdateEndpointWeightsAndCapacities); the time from the call to DescribeEndpoint showing
  2 instances in service (polled every 5 ms), then back to 1.

Once, with the real-time endpoint idle at one instance and the serverless one at zero: the
proportional set size (PSS, ``/proc/<pid>/smaps_rollup``) of the server and every process under
it (instances, zygotes), against the reference process kept alive after its prediction.

    .venv/bin/python bench/elasticity/cold_start.py              # 20 rounds, about 2 minutes
    .venv/bin/python bench/elasticity/cold_start.py --rounds 5

Prints a markdown table (median and p99 over the rounds, and each median's ratio to the
reference's) and writes every measurement to ``bench/results/elasticity-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from harness import (  # noqa: E402
    Processes,
    call_json,
    descendants,
    free_port,
    healthy,
    pss_kib,
    train_model,
    wait_until,
)

RESULTS = HERE.parent / "results"
TARGETS = {"serverless cold start p50": 0.3, "serverless cold start p99": 0.6}
"""Seconds (issue 11)."""
PSS_TARGET_MIB = 200
ROW = [[1.0] * 30]

REFERENCE = f"""
import sys, time
import joblib, numpy as np
model = joblib.load(sys.argv[1])
model.predict(np.asarray({ROW}))
print("ready", flush=True)
if len(sys.argv) > 2:
    time.sleep(float(sys.argv[2]))
"""


def instance_count(url: str, endpoint: str) -> int:
    described = call_json(url, "GET", f"/api/endpoints/{endpoint}")
    return int(described["ProductionVariants"][0].get("CurrentInstanceCount") or 0)


def scratch_processes(home: Path, endpoint: str) -> int:
    """Processes working in a scratch folder of one of the endpoint's instances (instance ids
    start with the endpoint's name)."""
    run = f"{home / 'run'}/{endpoint}-"
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.readlink(f"/proc/{entry}/cwd").startswith(run)
            except OSError:
                continue
    return count


def reference_start(model: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", REFERENCE, str(model / "model.joblib")],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )
    return time.perf_counter() - started


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="shipway-bench-elasticity-"))
    home = workdir / "home"
    model = train_model(workdir / "model")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes = Processes(workdir)
    env = {
        **os.environ,
        "SHIPWAY_SERVERLESS_IDLE_SECONDS": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    command = [sys.executable, "-m", "shipway", "server", "--port", str(port), "--home", str(home)]
    server = processes.start("server", command, env)
    samples: dict[str, list[float]] = {"reference": [], "serverless": [], "instance": []}
    try:
        wait_until(lambda: healthy(url), 60, poll=0.1)
        call_json(url, "POST", "/api/models", {"ModelName": "bench", "PrimaryContainer": {
            "Image": "sklearn", "ModelDataUrl": str(model)}})  # fmt: skip
        call_json(url, "POST", "/api/endpoint-configs", {"EndpointConfigName": "bench-sl",
             "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "bench",
             "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}]})  # fmt: skip
        call_json(url, "POST", "/api/endpoint-configs", {"EndpointConfigName": "bench-rt",
             "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "bench",
             "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]})  # fmt: skip
        for name in ("bench-sl", "bench-rt"):
            call_json(
                url, "POST", "/api/endpoints", {"EndpointName": name, "EndpointConfigName": name}
            )
        for name in ("bench-sl", "bench-rt"):
            wait_until(
                lambda n=name: (
                    call_json(url, "GET", f"/api/endpoints/{n}")["EndpointStatus"] == "InService"
                ),
                120,
                poll=0.1,
            )
        for round_ in range(args.rounds):
            wait_until(lambda: instance_count(url, "bench-sl") == 0, 60, poll=0.1)
            wait_until(lambda: scratch_processes(home, "bench-sl") == 0, 60, poll=0.1)
            time.sleep(0.2)
            samples["reference"].append(reference_start(model))
            started = time.perf_counter()
            answer = call_json(url, "POST", "/endpoints/bench-sl/invocations", ROW)
            samples["serverless"].append(time.perf_counter() - started)
            assert answer in ([0], [1]), answer
            started = time.perf_counter()
            call_json(url, "POST", "/api/endpoints/bench-rt/weights-and-capacities", [
                {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}])  # fmt: skip
            wait_until(lambda: instance_count(url, "bench-rt") == 2, 120, poll=0.005)
            samples["instance"].append(time.perf_counter() - started)
            wait_until(
                lambda: (
                    call_json(url, "GET", "/api/endpoints/bench-rt")["EndpointStatus"]
                    == "InService"
                ),
                60,
            )
            call_json(url, "POST", "/api/endpoints/bench-rt/weights-and-capacities", [
                {"VariantName": "AllTraffic", "DesiredInstanceCount": 1}])  # fmt: skip
            wait_until(lambda: instance_count(url, "bench-rt") == 1, 60, poll=0.05)
            wait_until(
                lambda: (
                    call_json(url, "GET", "/api/endpoints/bench-rt")["EndpointStatus"]
                    == "InService"
                ),
                60,
            )
            print(
                f"round {round_ + 1}: reference {samples['reference'][-1]:.3f} s, serverless "
                f"{samples['serverless'][-1]:.3f} s, instance {samples['instance'][-1]:.3f} s",
                file=sys.stderr,
            )
        pss: dict[str, float] = {}
        for start in ("first start", "restarted"):
            if start == "restarted":  # the schema is then up to date: no migration ran
                server.terminate()
                server.wait(60)
                server = processes.start("server-restarted", command, env)
                wait_until(lambda: healthy(url), 60, poll=0.1)
                wait_until(lambda: instance_count(url, "bench-rt") == 1, 60, poll=0.1)
            wait_until(lambda: instance_count(url, "bench-sl") == 0, 60, poll=0.1)
            wait_until(lambda: scratch_processes(home, "bench-sl") == 0, 60, poll=0.1)
            time.sleep(2)
            family = [server.pid, *(pid for pid, _ in descendants(server.pid))]
            pss[start] = pss_kib(family) / 1024
            for pid in family:
                print(
                    f"{start}: PSS {pss_kib([pid]) / 1024:6.1f} MiB  {_command(pid)}",
                    file=sys.stderr,
                )
        reference = subprocess.Popen(
            [sys.executable, "-c", REFERENCE, str(model / "model.joblib"), "60"],
            stdout=subprocess.PIPE,
            env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        )
        assert reference.stdout is not None
        reference.stdout.readline()
        reference_pss = pss_kib([reference.pid]) / 1024
        reference.kill()
        reference.wait()
    finally:
        processes.stop_all()
    report(samples, pss, reference_pss, len(family), workdir)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
    except OSError:
        return "?"


def report(
    samples: dict[str, list[float]],
    pss: dict[str, float],
    reference_pss: float,
    processes: int,
    workdir: Path,
) -> None:
    reference = statistics.median(samples["reference"])
    rows = [
        ("bare `python -c` start, load, predict (reference)", samples["reference"], None),
        ("serverless cold start through the router, from zero", samples["serverless"],
         "serverless cold start"),
        ("real-time instance start (1 → 2, until in service)", samples["instance"], None),
    ]  # fmt: skip
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    rounds = len(samples["reference"])
    print(
        f"\nMeasured on {datetime.now(UTC):%Y-%m-%d at %H:%M} UTC, {rounds} rounds, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, commit {commit}.\n"
    )
    print("| what | p50 s | p99 s | p50 ÷ reference | target |")
    print("|---|--:|--:|--:|---|")
    for label, values, target in rows:
        p50, p99 = statistics.median(values), percentile(values, 99)
        goal = ""
        if target is not None:
            met50 = p50 < TARGETS[f"{target} p50"]
            met99 = p99 < TARGETS[f"{target} p99"]
            goal = (f"p50 < {TARGETS[f'{target} p50']} {'met' if met50 else 'MISSED'}, "
                    f"p99 < {TARGETS[f'{target} p99']} {'met' if met99 else 'MISSED'}")  # fmt: skip
        print(f"| {label} | {p50:.3f} | {p99:.3f} | {p50 / reference:.2f}x | {goal} |")
    for start, value in pss.items():
        met = "met" if value <= PSS_TARGET_MIB else "MISSED"
        print(
            f"\nIdle PSS, {start}: the server and everything under it ({processes} processes: "
            f"one instance, the zygote) {value:.0f} MiB (target ≤ {PSS_TARGET_MIB} MiB: {met}); "
            f"the reference process holding the model {reference_pss:.0f} MiB "
            f"({value / reference_pss:.2f}x)."
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"elasticity-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps({"samples": samples, "pss_mib": {**pss,
                   "reference": reference_pss}, "workdir": str(workdir)}, indent=1))  # fmt: skip
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
