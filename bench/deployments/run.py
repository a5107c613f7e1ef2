"""Deployment benchmark: how much latency a deployment in progress adds to an endpoint's requests.

One ``shipway server`` with one endpoint (two ``ml.m5.large`` instances of a scikit-learn
pipeline, ``Image: sklearn``) under steady closed-loop load. For each policy (blue/green CANARY,
blue/green LINEAR, rolling) the benchmark measures a baseline window of steady serving, then calls
UpdateEndpoint with the policy's DeploymentConfig (boto3, to the other of two endpoint configs
whose models share one artifact) and measures from that call until the deployment is over (its
view ``GET /api/endpoints/{name}/deployment`` answers 404 and the endpoint is InService). Same
endpoint, same load, same run: the reference for each deployment is the window just before it.

The server and its instances (which inherit its CPU affinity) run on one core (``taskset -c 0``);
the load generator (``load.py``: kept-alive connections, one request in flight on each, every
request's send time and latency recorded) and this script run on the other. The deployment's own
work (starting the new fleet's processes, loading the model, moving traffic, stopping the old
fleet) competes for the server core with the requests: that is the cost being measured.

    .venv/bin/python bench/deployments/run.py             # 3 rounds, bakes of 5 s: ~7 minutes
    .venv/bin/python bench/deployments/run.py --quick     # 1 round, bakes of 1 s: under a minute

Prints a markdown table (medians over rounds) and writes every measurement to
``bench/deployments/results-<time>.json`` (the per-request records to ``...requests.npz``).
Exits with status 1 if any request failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
# This file is run as a script, not as part of a package: put bench/ on the import path so that
# the helpers the benchmarks share (bench/harness.py) can be imported.
sys.path.insert(0, str(HERE.parent))

from harness import (  # noqa: E402  (needs the sys.path entry above)
    CLOCK_TICKS,
    Processes,
    core_ticks,
    cpu_seconds,
    descendants,
    free_port,
    parse_cpus,
)

ENDPOINT = "bench"
VARIANT = "AllTraffic"
INSTANCE_TYPE = "ml.m5.large"
INSTANCES = 2
ROLE = "arn:aws:iam::123456789012:role/shipway-bench"
POLICIES = ("canary", "linear", "rolling")
POLL_SECONDS = 0.2
"""How often the deployment's view is read, in the baseline too: the same control-plane load."""


# --------------------------------------------------------------------------- what is measured


@dataclass(frozen=True)
class Plan:
    rounds: int
    bake: int
    """WaitIntervalInSeconds of every step."""
    baseline: float
    """Seconds of steady serving measured before each UpdateEndpoint call."""
    settle: float
    """Seconds of load between the end of one deployment and the next baseline."""
    warmup: float
    connections: int


FULL = Plan(rounds=3, bake=5, baseline=15.0, settle=5.0, warmup=5.0, connections=8)
QUICK = Plan(rounds=1, bake=1, baseline=3.0, settle=1.0, warmup=2.0, connections=8)


def deployment_config(policy: str, bake: int) -> dict[str, Any]:
    """The DeploymentConfig of each policy, on a variant of two instances.

    - canary: the whole new fleet, 25 % of the traffic on it for a bake, then 100 % for a bake;
    - linear: the whole new fleet, 25 % more traffic per step, four bakes;
    - rolling: one new instance, half the traffic, a bake, the old instance of that half stopped;
      then the second one the same way.

    No termination wait: the old fleet is deleted after the last bake.
    """
    percent = {"Type": "CAPACITY_PERCENT", "Value": 25}
    if policy == "canary":
        routing = {"Type": "CANARY", "CanarySize": percent}
    elif policy == "linear":
        routing = {"Type": "LINEAR", "LinearStepSize": percent}
    elif policy == "rolling":
        return {
            "RollingUpdatePolicy": {
                "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
                "WaitIntervalInSeconds": bake,
            }
        }
    else:
        raise ValueError(policy)
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {**routing, "WaitIntervalInSeconds": bake},
            "TerminationWaitInSeconds": 0,
        }
    }


@dataclass
class Window:
    """The requests sent within a stretch of time, and what the machine did meanwhile."""

    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    server_core_busy: float = 0.0
    """Share of the server core's time that was busy, whoever used it."""
    foreign_load: float = 0.0
    """Share of the server core's time used by processes other than the server and its
    instances (other work on the machine: above a few percent, the figure is disturbed)."""
    client_core_busy: float = 0.0
    """Share of the client core's time that was busy (near 100 %: the load generator itself
    may be what limits the figures)."""
    client_foreign_load: float = 0.0
    """Share of the client core's time used by processes other than the load generator and
    this script."""


@dataclass
class Mark:
    at_ns: int
    phase: str
    step: int
    share: float


@dataclass
class Deployment:
    policy: str
    round: int
    to_config: str
    seconds: float
    """From the UpdateEndpoint call to the end of the deployment."""
    update_call_ms: float
    before: Window
    during: Window
    phases: dict[str, Window] = field(default_factory=dict)
    """The requests sent during each kind of phase (all its steps together)."""
    marks: list[Mark] = field(default_factory=list)
    generations_before: list[int] = field(default_factory=list)
    generations_after: list[int] = field(default_factory=list)
    window_ns: dict[str, tuple[int, int]] = field(default_factory=dict)


# --------------------------------------------------------------------------- CPU use


@dataclass(frozen=True)
class Usage:
    """CPU time used so far by the server side and the client side, and by each core."""

    at_ns: int
    server_seconds: float
    client_seconds: float
    server_core: tuple[int, int]
    client_core: tuple[int, int]

    @classmethod
    def now(cls, server_pid: int, client_pid: int, server: set[int], client: set[int]) -> Usage:
        # the server's instances come and go: the live ones are read directly, the stopped ones
        # are in the server's children's time once it has waited for them
        server_seconds = cpu_seconds(server_pid, children=True) + sum(
            cpu_seconds(pid, children=True) for pid, _ in descendants(server_pid)
        )
        client_seconds = cpu_seconds(client_pid) + cpu_seconds("self")
        return cls(time.monotonic_ns(), server_seconds, client_seconds,
                   core_ticks(server), core_ticks(client))  # fmt: skip


def _shares(before: Usage, after: Usage) -> dict[str, float]:
    server_ticks = max(1, after.server_core[1] - before.server_core[1])
    client_ticks = max(1, after.client_core[1] - before.client_core[1])
    busy = (after.server_core[0] - before.server_core[0]) / server_ticks
    ours = (after.server_seconds - before.server_seconds) * CLOCK_TICKS / server_ticks
    client_busy = (after.client_core[0] - before.client_core[0]) / client_ticks
    client_ours = (after.client_seconds - before.client_seconds) * CLOCK_TICKS / client_ticks
    return {
        "server_core_busy": round(busy, 3),
        "foreign_load": round(max(0.0, busy - ours), 3),
        "client_core_busy": round(client_busy, 3),
        "client_foreign_load": round(max(0.0, client_busy - client_ours), 3),
    }


# --------------------------------------------------------------------------- the model


def prepare_model(folder: Path) -> Path:
    """Train the pipeline the realtime benchmark serves (StandardScaler + LogisticRegression on
    breast_cancer), save it with joblib in ``folder/model``; return a one-row JSON body."""
    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    (folder / "model").mkdir(parents=True)
    joblib.dump(model, folder / "model" / "model.joblib")
    body = folder / "body.json"
    body.write_text(json.dumps(x[:1].tolist()))
    return body


# --------------------------------------------------------------------------- the server


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    http: httpx.Client
    sagemaker: Any

    def deployment(self) -> dict[str, Any] | None:
        response = self.http.get(f"/api/endpoints/{ENDPOINT}/deployment")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    def endpoint(self) -> dict[str, Any]:
        response = self.http.get(f"/api/endpoints/{ENDPOINT}")
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    def generations(self) -> list[int]:
        response = self.http.get(f"/api/endpoints/{ENDPOINT}/instances")
        response.raise_for_status()
        return sorted(i["Generation"] for i in response.json()["Instances"])


def start_server(procs: Processes, cpu: str, home: Path, model_dir: Path) -> Server:
    import boto3  # type: ignore[import-untyped]

    port = free_port()
    command = ["taskset", "-c", cpu, sys.executable, "-m", "shipway", "server",
               "--port", str(port), "--home", str(home)]  # fmt: skip
    process = procs.start("shipway", command, dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=30)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"shipway server exited with status {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if http.get("/healthz", timeout=1).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError("shipway server did not answer /healthz within 60 s")
        time.sleep(0.1)
    sagemaker = boto3.client(
        "sagemaker", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="not-checked-when-auth-is-off",
    )  # fmt: skip
    for version in ("1", "2"):  # two models, one artifact: the deployment is what is measured
        sagemaker.create_model(
            ModelName=f"m{version}",
            PrimaryContainer={"Image": "sklearn", "ModelDataUrl": str(model_dir),
                              "Environment": {"MODEL_VERSION": version}},
            ExecutionRoleArn=ROLE,
        )  # fmt: skip
        sagemaker.create_endpoint_config(
            EndpointConfigName=f"v{version}",
            ProductionVariants=[{"VariantName": VARIANT, "ModelName": f"m{version}",
                                 "InstanceType": INSTANCE_TYPE,
                                 "InitialInstanceCount": INSTANCES}],
        )  # fmt: skip
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="v1")
    server = Server(url, process, http, sagemaker)
    deadline = time.monotonic() + 120
    while (status := server.endpoint()["EndpointStatus"]) != "InService":
        if status == "Failed" or time.monotonic() > deadline:
            raise RuntimeError(f"endpoint {ENDPOINT} is {status}: {server.endpoint()}")
        time.sleep(0.2)
    return server


# --------------------------------------------------------------------------- the load


@dataclass
class LoadClient:
    process: subprocess.Popen[bytes]
    out: Path

    def stop(self) -> tuple[np.ndarray, dict[str, Any]]:
        """Stop the load; return its records (sent ns, latency ns, status) and its summary."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(60)
        lines = self.process.stdout.read().decode().strip().splitlines()
        if self.process.returncode != 0 or not lines:
            raise RuntimeError(f"the load generator failed ({self.process.returncode})")
        records = np.fromfile(self.out, dtype=np.int64).reshape(-1, 3)
        return records, json.loads(lines[-1])


def start_load(
    procs: Processes, cpu: str, url: str, body: Path, connections: int, workdir: Path
) -> LoadClient:
    out = workdir / "records.bin"
    command = ["taskset", "-c", cpu, sys.executable, str(HERE / "load.py"), "--url", url,
               "--body", str(body), "--connections", str(connections),
               "--out", str(out)]  # fmt: skip
    process = procs.start("load", command, dict(os.environ), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE)  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if line != "ready":
        raise RuntimeError(f"the load generator did not start: {line!r}\n{procs.log_tail('load')}")
    return LoadClient(process, out)


def window(records: np.ndarray, start_ns: int, end_ns: int) -> Window:
    """The requests sent in [start, end): latency percentiles by nearest rank."""
    sent = records[:, 0]
    picked = records[(sent >= start_ns) & (sent < end_ns)]
    ok = np.sort(picked[picked[:, 2] == 200][:, 1])
    seconds = (end_ns - start_ns) / 1e9

    def percentile(p: float) -> float:
        if len(ok) == 0:
            return math.nan
        return float(ok[max(1, math.ceil(p / 100 * len(ok))) - 1]) / 1e6

    return Window(
        seconds=round(seconds, 3),
        requests=len(picked),
        errors=int((picked[:, 2] != 200).sum()),
        rps=round(len(picked) / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=percentile(50),
        p99_ms=percentile(99),
        p999_ms=percentile(99.9),
        max_ms=float(ok[-1]) / 1e6 if len(ok) else math.nan,
    )


# --------------------------------------------------------------------------- one deployment


class Poller:
    """Reads the deployment's view every POLL_SECONDS, before and during deployments alike."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._next = time.monotonic()

    def tick(self) -> tuple[int, dict[str, Any] | None]:
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + POLL_SECONDS, time.monotonic())
        return time.monotonic_ns(), self.server.deployment()

    def wait(self, seconds: float) -> None:
        """Keep polling for ``seconds``; no deployment may be in progress."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            _, view = self.tick()
            if view is not None:
                raise RuntimeError(f"a deployment is in progress when none should be: {view}")


def deploy(
    server: Server,
    poller: Poller,
    policy: str,
    round_: int,
    target: str,
    plan: Plan,
    sample: Any,
) -> tuple[Deployment, list[Usage]]:
    """Baseline window, UpdateEndpoint, poll until the deployment is over."""
    generations_before = server.generations()
    baseline_start = sample()
    poller.wait(plan.baseline)
    update = sample()
    started = time.monotonic_ns()
    server.sagemaker.update_endpoint(
        EndpointName=ENDPOINT, EndpointConfigName=target,
        DeploymentConfig=deployment_config(policy, plan.bake),
    )  # fmt: skip
    update_call_ms = (time.monotonic_ns() - started) / 1e6
    marks: list[Mark] = []
    deadline = time.monotonic() + 300
    while True:
        at, view = poller.tick()
        if view is not None:
            if view["Phase"] == "RollingBack":
                raise RuntimeError(f"the {policy} deployment is rolling back: {view}")
            mark = Mark(at, view["Phase"], int(view["Step"]), float(view["Share"]))
            last = marks[-1] if marks else None
            if last is None or (last.phase, last.step, last.share) != (
                mark.phase, mark.step, mark.share,
            ):  # fmt: skip
                marks.append(mark)
        else:
            endpoint = server.endpoint()
            if endpoint["EndpointStatus"] == "InService":
                ended = at
                break
            if endpoint["EndpointStatus"] not in ("Updating", "SystemUpdating"):
                raise RuntimeError(f"the {policy} deployment ended with {endpoint}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {policy} deployment did not end within 300 s: {view}")
    end = sample()
    endpoint = server.endpoint()
    generations_after = server.generations()
    if endpoint.get("EndpointConfigName") != target:
        raise RuntimeError(f"the endpoint is not on {target} after the deployment: {endpoint}")
    if not marks:
        raise RuntimeError(f"the {policy} deployment was never seen in progress")
    if (
        len(generations_after) != INSTANCES
        or len(set(generations_after)) != 1
        or generations_after[0] <= max(generations_before)
    ):
        raise RuntimeError(
            f"the {policy} deployment did not replace the fleet: generations "
            f"{generations_before} before, {generations_after} after"
        )
    empty = Window(0, 0, 0, 0, math.nan, math.nan, math.nan, math.nan)
    deployment = Deployment(
        policy=policy,
        round=round_,
        to_config=target,
        seconds=round((ended - started) / 1e9, 2),
        update_call_ms=round(update_call_ms, 1),
        before=empty,
        during=empty,
        marks=marks,
        generations_before=generations_before,
        generations_after=generations_after,
        window_ns={"before": (baseline_start.at_ns, update.at_ns), "during": (started, ended)},
    )
    return deployment, [baseline_start, update, end]


def fill_windows(d: Deployment, usages: list[Usage], records: np.ndarray) -> None:
    """The before and during windows and each kind of phase, from the load's records."""
    baseline_start, update, end = usages
    d.before = window(records, *d.window_ns["before"])
    d.during = window(records, *d.window_ns["during"])
    for name, value in _shares(baseline_start, update).items():
        setattr(d.before, name, value)
    for name, value in _shares(update, end).items():
        setattr(d.during, name, value)
    started, ended = d.window_ns["during"]
    spans: dict[str, list[tuple[int, int]]] = {}
    for n, mark in enumerate(d.marks):
        # the first mark is read up to one poll after the call: its phase began at the call
        begin = started if n == 0 else mark.at_ns
        finish = d.marks[n + 1].at_ns if n + 1 < len(d.marks) else ended
        spans.setdefault(mark.phase, []).append((begin, finish))
    for phase, stretches in spans.items():
        sent = records[:, 0]
        mask = np.zeros(len(records), dtype=bool)
        for begin, finish in stretches:
            mask |= (sent >= begin) & (sent < finish)
        seconds = sum(finish - begin for begin, finish in stretches)
        # one synthetic window over the pooled stretches
        picked = records[mask]
        pooled = window(picked, 0, 2**62) if len(picked) else None
        if pooled is None:
            continue
        pooled.seconds = round(seconds / 1e9, 3)
        pooled.rps = round(pooled.requests / (seconds / 1e9), 1) if seconds else 0.0
        for name in ("server_core_busy", "foreign_load", "client_core_busy",
                     "client_foreign_load"):  # fmt: skip
            setattr(pooled, name, math.nan)  # not sampled at phase boundaries
        d.phases[phase] = pooled


# --------------------------------------------------------------------------- the report


def _median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def summarize(deployments: Sequence[Deployment]) -> dict[str, dict[str, float]]:
    """Medians over rounds, per policy; ratios are the median of each round's during ÷ before."""
    summary: dict[str, dict[str, float]] = {}
    for policy in POLICIES:
        picked = [d for d in deployments if d.policy == policy]
        if not picked:
            continue
        figures: dict[str, float] = {
            "rounds": len(picked),
            "deployment_seconds": _median([d.seconds for d in picked]),
        }
        for metric in ("p50_ms", "p99_ms", "p999_ms", "max_ms", "rps"):
            figures[f"before_{metric}"] = _median([getattr(d.before, metric) for d in picked])
            figures[f"during_{metric}"] = _median([getattr(d.during, metric) for d in picked])
            figures[f"ratio_{metric}"] = _median(
                [getattr(d.during, metric) / getattr(d.before, metric) for d in picked]
            )
        for key in ("requests", "errors"):
            figures[f"before_{key}"] = _median([getattr(d.before, key) for d in picked])
            figures[f"during_{key}"] = _median([getattr(d.during, key) for d in picked])
        figures["errors_total"] = sum(d.before.errors + d.during.errors for d in picked)
        for key in ("foreign_load", "client_foreign_load"):
            figures[key] = _median([getattr(w, key) for d in picked for w in (d.before, d.during)])
        summary[policy] = figures
    return summary


LABELS = {"canary": "blue/green CANARY 25 %", "linear": "blue/green LINEAR 25 %",
          "rolling": "rolling, 1 instance"}  # fmt: skip


def table(summary: dict[str, dict[str, float]]) -> str:
    lines = [
        "| policy | deployment s | p50 before ms | p50 during ms | p50 ratio "
        "| p99 before ms | p99 during ms | p99 ratio | req/s before | req/s during "
        "| requests before / during | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for policy, f in summary.items():
        lines.append(
            f"| {LABELS[policy]} | {f['deployment_seconds']:.1f} "
            f"| {f['before_p50_ms']:.2f} | {f['during_p50_ms']:.2f} | {f['ratio_p50_ms']:.2f}x "
            f"| {f['before_p99_ms']:.2f} | {f['during_p99_ms']:.2f} | {f['ratio_p99_ms']:.2f}x "
            f"| {f['before_rps']:,.0f} | {f['during_rps']:,.0f} "
            f"| {f['before_requests']:,.0f} / {f['during_requests']:,.0f} "
            f"| {f['errors_total']:.0f} |"
        )
    return "\n".join(lines)


def phase_table(deployments: Sequence[Deployment]) -> str:
    """Per policy and kind of phase: median time spent, p50, p99 and max over rounds."""
    lines = [
        "| policy | phase | seconds | p50 ms | p99 ms | max ms | req/s |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for policy in POLICIES:
        picked = [d for d in deployments if d.policy == policy]
        if not picked:
            continue
        lines.append(
            f"| {LABELS[policy]} | (before) | {_median([d.before.seconds for d in picked]):.1f} "
            f"| {_median([d.before.p50_ms for d in picked]):.2f} "
            f"| {_median([d.before.p99_ms for d in picked]):.2f} "
            f"| {_median([d.before.max_ms for d in picked]):.1f} "
            f"| {_median([d.before.rps for d in picked]):,.0f} |"
        )
        phases = list(dict.fromkeys(p for d in picked for p in d.phases))
        for phase in phases:
            windows = [d.phases[phase] for d in picked if phase in d.phases]
            lines.append(
                f"| {LABELS[policy]} | {phase} | {_median([w.seconds for w in windows]):.1f} "
                f"| {_median([w.p50_ms for w in windows]):.2f} "
                f"| {_median([w.p99_ms for w in windows]):.2f} "
                f"| {_median([w.max_ms for w in windows]):.1f} "
                f"| {_median([w.rps for w in windows]):,.0f} |"
            )
    return "\n".join(lines)


def _source() -> dict[str, Any]:
    """The commit measured, and the files under src/ that differed from it (others edit too)."""

    def git(*arguments: str) -> str:
        run = subprocess.run(
            ["git", "-C", str(HERE), *arguments], capture_output=True, text=True, check=False
        )
        return run.stdout.rstrip()  # keep status lines' leading space

    return {
        "commit": git("rev-parse", "HEAD"),
        "modified": git("status", "--porcelain", "--", ":/src").splitlines(),
    }


def _environment() -> dict[str, Any]:
    import sklearn

    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "source": _source(),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "load_average_at_start": os.getloadavg(),
    }


# --------------------------------------------------------------------------- main


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (under a minute)")
    parser.add_argument("--rounds", type=int, help=f"rounds (default {FULL.rounds})")
    parser.add_argument("--bake", type=int, help=f"seconds per bake (default {FULL.bake})")
    parser.add_argument("--baseline", type=float, help="seconds measured before each update")
    parser.add_argument("--connections", type=int, help="requests in flight (default 8)")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated subset")
    parser.add_argument("--server-cpu", default="0", help="CPU list for the server (taskset)")
    parser.add_argument("--client-cpu", default="1", help="CPU list for the load (taskset)")
    parser.add_argument("--out", type=Path, help="JSON results file (default beside this file)")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="shipway-bench-deploy-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    base = QUICK if args.quick else FULL
    plan = Plan(
        rounds=args.rounds or base.rounds,
        bake=args.bake if args.bake is not None else base.bake,
        baseline=args.baseline or base.baseline,
        settle=base.settle,
        warmup=base.warmup,
        connections=args.connections or base.connections,
    )
    policies = [p for p in args.policies.split(",") if p]
    if unknown := set(policies) - set(POLICIES):
        sys.exit(f"unknown policies {sorted(unknown)}: choose among {', '.join(POLICIES)}")
    if shutil.which("taskset") is None:
        sys.exit("taskset is not installed (apt-get install util-linux)")
    server_cpus, client_cpus = parse_cpus(args.server_cpu), parse_cpus(args.client_cpu)
    os.sched_setaffinity(0, client_cpus)  # boto3 and the polling stay off the server core
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    started_at = datetime.now(UTC)
    deployments: list[Deployment] = []
    usages: list[list[Usage]] = []
    with _workdir() as workdir:
        body = prepare_model(workdir)
        procs = Processes(workdir)
        try:
            server = start_server(procs, args.server_cpu, workdir / "home", workdir / "model")
            load = start_load(
                procs, args.client_cpu, f"{server.url}/endpoints/{ENDPOINT}/invocations", body,
                plan.connections, workdir,
            )  # fmt: skip

            def sample() -> Usage:
                return Usage.now(server.process.pid, load.process.pid, server_cpus, client_cpus)

            poller = Poller(server)
            poller.wait(plan.warmup)
            current = "v1"
            for round_ in range(1, plan.rounds + 1):
                shift = (round_ - 1) % len(policies)  # each policy in each position in turn
                for policy in policies[shift:] + policies[:shift]:
                    target = "v2" if current == "v1" else "v1"
                    deployment, marks = deploy(server, poller, policy, round_, target, plan,
                                               sample)  # fmt: skip
                    current = target
                    deployments.append(deployment)
                    usages.append(marks)
                    print(
                        f"round {round_} {policy:8} {deployment.seconds:5.1f} s  phases "
                        + " → ".join(f"{m.phase}[{m.step}]" for m in deployment.marks),
                        file=sys.stderr, flush=True,
                    )  # fmt: skip
                    poller.wait(plan.settle)
            records, load_summary = load.stop()
            server.http.close()
        except BaseException:
            for name in ("shipway", "load"):
                print(f"--- {name}.log\n{procs.log_tail(name)}", file=sys.stderr)
            raise
        finally:
            procs.stop_all()
    for deployment, marks in zip(deployments, usages, strict=True):
        fill_windows(deployment, marks, records)
        b, d = deployment.before, deployment.during
        print(
            f"round {deployment.round} {deployment.policy:8} before: {b.rps:6,.0f} req/s "
            f"p50 {b.p50_ms:5.2f} p99 {b.p99_ms:6.2f} max {b.max_ms:6.1f} ms | during: "
            f"{d.rps:6,.0f} req/s p50 {d.p50_ms:5.2f} p99 {d.p99_ms:6.2f} max {d.max_ms:6.1f} ms "
            f"| errors {b.errors + d.errors} | server core busy {b.server_core_busy:.0%}/"
            f"{d.server_core_busy:.0%}, foreign {b.foreign_load:.0%}/{d.foreign_load:.0%} "
            f"| client core busy {b.client_core_busy:.0%}/{d.client_core_busy:.0%}, foreign "
            f"{b.client_foreign_load:.0%}/{d.client_foreign_load:.0%}",
            file=sys.stderr,
        )
    summary = summarize(deployments)
    errors = int((records[:, 2] != 200).sum())
    stamp = f"{started_at:%Y%m%d-%H%M%S}"
    out = args.out or HERE / f"results-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    origin = int(records[0, 0]) if len(records) else 0
    np.savez_compressed(
        out.with_suffix(".requests.npz"),
        sent_us=((records[:, 0] - origin) // 1000).astype(np.int64),
        latency_us=(records[:, 1] // 1000).astype(np.int32),
        status=records[:, 2].astype(np.int16),
        origin_monotonic_ns=np.int64(origin),
    )
    document = {
        "benchmark": "deployments",
        "started_at": started_at.isoformat(),
        "command": " ".join(["python", *sys.argv]),
        "plan": asdict(plan),
        "setup": {"instance_type": INSTANCE_TYPE, "instances": INSTANCES, "image": "sklearn",
                  "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
                  "deployment_configs": {p: deployment_config(p, plan.bake) for p in policies}},
        "environment": _environment(),
        "load": {**load_summary, "errors_in_run": errors},
        "summary": summary,
        "deployments": [asdict(d) for d in deployments],
    }  # fmt: skip
    out.write_text(json.dumps(document, indent=2, default=float))
    print(f"\n{table(summary)}\n")
    print(f"By phase (requests sent while the deployment was in that phase):\n\n"
          f"{phase_table(deployments)}\n")  # fmt: skip
    windows = [w for d in deployments for w in (d.before, d.during)]
    foreign = [w.foreign_load for w in windows]
    client_foreign = [w.client_foreign_load for w in windows]
    print(
        f"Other processes used {statistics.median(foreign):.0%} (median; at most "
        f"{max(foreign):.0%}) of the server core and {statistics.median(client_foreign):.0%} "
        f"(at most {max(client_foreign):.0%}) of the client core during the measured windows. "
        f"The load generator sent {load_summary['requests']:,} requests "
        f"({load_summary['event_loop']}) and used {load_summary['cpu_seconds']:.0f} s of CPU.\n"
    )
    print(f"results: {out}")
    if errors:
        print(f"FAILED: {errors} requests failed; first errors: {load_summary['errors']}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
