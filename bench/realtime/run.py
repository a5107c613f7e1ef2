"""Real-time inference benchmark: Shipway's router, one model server, and a bare Starlette app.

One scikit-learn pipeline (StandardScaler + LogisticRegression on breast_cancer), JSON requests.
The server side runs on one core (``taskset -c 0``) and h2load on the other (``taskset -c 1``).
Three targets serve the same model file:

- ``router``: ``shipway server`` with one endpoint of one instance; requests go through the router
  to the instance (router and model server share the one core: the instance inherits it);
- ``server``: one Shipway model server alone (``python -m shipway.serving``);
- ``bare``: the reference, ``bare_app.py`` under uvicorn.

Workloads: 1 row per request at concurrency 1 (p50, p99) and at 32 (req/s, p99); 100 rows per
request at concurrency 8 (rows/s). Each round measures every workload against every target back to
back, so each figure has its reference measured next to it; the summary is the median over rounds.
Latency percentiles come from h2load's per-request log, not its summary.

    .venv/bin/python bench/realtime/run.py            # full run, about 3.5 minutes
    .venv/bin/python bench/realtime/run.py --quick    # one short round, about 35 s
    .venv/bin/python bench/realtime/run.py --baseline 21bb1bc   # also Shipway at that commit

With ``--baseline REV`` a fourth target, ``baseline``, is ``shipway server`` from a git worktree of
that commit (imported through ``PYTHONPATH``), measured in the same rounds: the table of
``router ÷ baseline`` says what the commits since cost or saved on the hot path.

Prints a markdown table and writes every measurement to ``bench/results/realtime-<time>.json``.
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
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

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

RESULTS = HERE.parent / "results"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
ENDPOINT = "bench"


# --------------------------------------------------------------------------- what is measured


@dataclass(frozen=True)
class Workload:
    name: str
    rows: int
    connections: int


WORKLOADS = (
    Workload("1 row, c=1", rows=1, connections=1),
    Workload("1 row, c=32", rows=1, connections=32),
    Workload("100 rows, c=8", rows=100, connections=8),
)


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    url: str
    pids: tuple[int, ...]
    """The server-side processes, whose CPU time is charged to the requests they answer."""


@dataclass
class Measurement:
    target: str
    workload: str
    round: int
    requests: int
    seconds: float
    rps: float
    rows_per_second: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    """Server-side CPU time (user + system) per request, by process role."""
    server_cores_busy: float = 0.0
    """Share of the server cores' time that was busy, whoever used it."""
    foreign_load: float = 0.0
    """Share of the server cores' time used by processes other than the target's: other work on
    this machine that competed with the target (high values make the figure unreliable)."""


@dataclass(frozen=True)
class Plan:
    rounds: int
    duration: float
    warmup: float


FULL = Plan(rounds=3, duration=6.0, warmup=1.0)
QUICK = Plan(rounds=1, duration=2.0, warmup=0.5)


@dataclass(frozen=True)
class Goal:
    """One figure of the acceptance text: what is read, how good it must be."""

    workload: str
    metric: str
    label: str
    higher_is_better: bool
    target: float | None = None


GOALS = (
    Goal("1 row, c=1", "p50_ms", "p50 ms", False, 0.8),
    Goal("1 row, c=1", "p99_ms", "p99 ms", False),
    Goal("1 row, c=32", "rps", "req/s", True, 2800),
    Goal("1 row, c=32", "p99_ms", "p99 ms", False),
    Goal("100 rows, c=8", "rows_per_second", "rows/s", True, 150_000),
    Goal("100 rows, c=8", "p99_ms", "p99 ms", False),
)


# --------------------------------------------------------------------------- processes


def _affinity(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return "?"


# --------------------------------------------------------------------------- HTTP helpers


def _http(method: str, url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, bytes]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_until_ok(url: str, process: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        with contextlib.suppress(OSError):
            if _http("GET", url, timeout=1.0)[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:g} s")


# --------------------------------------------------------------------------- the model and bodies


def prepare_model(folder: Path) -> dict[int, Path]:
    """Train and save the pipeline in ``folder``; return a JSON body file per row count."""
    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    (folder / "model").mkdir(parents=True)
    joblib.dump(model, folder / "model" / "model.joblib")
    bodies: dict[int, Path] = {}
    for rows in sorted({w.rows for w in WORKLOADS}):
        path = folder / f"body-{rows}.json"
        path.write_text(json.dumps(x[:rows].tolist()))
        bodies[rows] = path
    return bodies


# --------------------------------------------------------------------------- the three targets


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in THREAD_VARIABLES:
        env[name] = "1"
    return env


def start_bare(procs: Processes, cpu: str, model_dir: Path) -> Target:
    port = free_port()
    env = {**_server_env(), "MODEL_PATH": str(model_dir / "model.joblib")}
    command = ["taskset", "-c", cpu, sys.executable, "-m", "uvicorn", "bare_app:app",
               "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port),
               "--no-access-log", "--log-level", "warning"]  # fmt: skip
    process = procs.start("bare", command, env)
    url = f"http://127.0.0.1:{port}"
    _wait_until_ok(url + "/ping", process, 60, "the bare Starlette app")
    return Target("bare", "bare Starlette", url + "/invocations", (process.pid,))


def start_model_server(procs: Processes, cpu: str, model_dir: Path) -> Target:
    port = free_port()
    command = ["taskset", "-c", cpu, sys.executable, "-m", "shipway.serving",
               "--runtime", "sklearn", "--model-dir", str(model_dir), "--model-name", "m",
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
    process = procs.start("server", command, _server_env())
    url = f"http://127.0.0.1:{port}"
    _wait_until_ok(url + "/ping", process, 60, "the model server")
    return Target("server", "model server", url + "/invocations", (process.pid,))


def start_shipway(
    procs: Processes, cpu: str, model_dir: Path, home: Path, source: Path | None = None
) -> Target:
    """``shipway server`` with the endpoint; from the code in ``source`` (a checkout's ``src``)
    when given, else the installed one."""
    port = free_port()
    command = ["taskset", "-c", cpu, sys.executable, "-m", "shipway", "server",
               "--port", str(port), "--home", str(home)]  # fmt: skip
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    process = procs.start("shipway" if source is None else "baseline", command, env)
    url = f"http://127.0.0.1:{port}"
    _wait_until_ok(url + "/healthz", process, 60, "shipway server")
    steps = [
        ("/api/models", {"ModelName": ENDPOINT,
                         "PrimaryContainer": {"Image": "sklearn", "ModelDataUrl": str(model_dir)}}),
        ("/api/endpoint-configs", {"EndpointConfigName": ENDPOINT, "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": ENDPOINT, "InstanceType": "ml.m5.large",
             "InitialInstanceCount": 1}]}),
        ("/api/endpoints", {"EndpointName": ENDPOINT, "EndpointConfigName": ENDPOINT}),
    ]  # fmt: skip
    for path, document in steps:
        status, answer = _http("POST", url + path, document)
        if status >= 300:
            raise RuntimeError(f"POST {path} answered {status}: {answer.decode(errors='replace')}")
    deadline = time.monotonic() + 120
    while True:
        status, answer = _http("GET", f"{url}/api/endpoints/{ENDPOINT}")
        state = json.loads(answer).get("EndpointStatus") if status == 200 else None
        if state == "InService":
            break
        if state == "Failed" or time.monotonic() > deadline:
            raise RuntimeError(f"endpoint {ENDPOINT} is {state}: {answer.decode(errors='replace')}")
        time.sleep(0.2)
    instances = tuple(pid for pid, _ in descendants(process.pid))
    return Target(
        "router" if source is None else "baseline",
        "through router" if source is None else "baseline router",
        f"{url}/endpoints/{ENDPOINT}/invocations",
        (process.pid, *instances),
    )  # fmt: skip


# --------------------------------------------------------------------------- h2load


def h2load(
    cpu: str,
    url: str,
    body: Path,
    connections: int,
    duration: float,
    warmup: float,
    log: Path,
    on_measuring: Callable[[], None] = lambda: None,
) -> tuple[float, list[int]]:
    """Run h2load for ``duration`` seconds after ``warmup``; return (req/s, latencies in µs).

    ``on_measuring`` is called when the warm-up is over and the measured part starts.
    """
    command = ["taskset", "-c", cpu, "h2load", "--h1", "-t", "1", "-c", str(connections),
               "-D", _duration(duration), "--warm-up-time", _duration(warmup), "-d", str(body),
               "-H", "Content-Type: application/json", "--log-file", str(log), url]  # fmt: skip
    log.unlink(missing_ok=True)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    ) as process:  # fmt: skip
        try:
            time.sleep(warmup)
            on_measuring()
            output, _ = process.communicate(timeout=duration + 30)
        finally:
            if process.poll() is None:
                process.kill()
    if process.returncode != 0:
        raise RuntimeError(f"h2load failed ({process.returncode}):\n{output}")
    summary = _h2load_summary(output)
    if summary["failed"] or summary["errored"] or summary["non_2xx"]:
        raise RuntimeError(f"requests to {url} failed:\n{output}")
    latencies = []
    for line in log.read_text().splitlines():
        _start, status, micros = line.split("\t")
        if status == "0":
            continue  # still in flight when the time was up: h2load logs it without a status
        if not status.startswith("2"):
            raise RuntimeError(f"{url} answered {status} during the measurement")
        latencies.append(int(micros))
    return summary["rps"], sorted(latencies)


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _h2load_summary(output: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in output.splitlines():
        words = line.replace(",", "").split()
        if line.startswith("finished in"):
            found["rps"] = float(words[words.index("req/s") - 1])
        elif line.startswith("requests:"):
            found["failed"] = float(words[words.index("failed") - 1])
            found["errored"] = float(words[words.index("errored") - 1])
        elif line.startswith("status codes:"):
            found["non_2xx"] = sum(float(words[words.index(k) - 1]) for k in ("3xx", "4xx", "5xx"))
    if len(found) != 4:
        raise RuntimeError(f"cannot read h2load's summary:\n{output}")
    return found


def _percentile(sorted_values: Sequence[int], p: float) -> float:
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


@dataclass(frozen=True)
class Usage:
    """CPU time used so far by a target's processes, and by the server cores (anyone's)."""

    process_seconds: tuple[float, ...]
    core_busy_ticks: int
    core_ticks: int

    @classmethod
    def now(cls, pids: Sequence[int], cores: set[int]) -> Usage:
        busy, total = core_ticks(cores)
        return cls(tuple(cpu_seconds(pid) for pid in pids), busy, total)


def measure(
    target: Target,
    workload: Workload,
    round_: int,
    bodies: dict[int, Path],
    plan: Plan,
    server_cpu: str,
    client_cpu: str,
    workdir: Path,
) -> Measurement:
    cores = parse_cpus(server_cpu)
    marks: list[Usage] = []
    rps, latencies = h2load(
        client_cpu, target.url, bodies[workload.rows], workload.connections,
        plan.duration, plan.warmup, workdir / "h2load.log",
        on_measuring=lambda: marks.append(Usage.now(target.pids, cores)),
    )  # fmt: skip
    before, after = marks[0], Usage.now(target.pids, cores)
    requests = len(latencies)
    names = [target.key] + ["instance"] * (len(target.pids) - 1)  # Shipway's first pid routes
    cpu: dict[str, float] = {}
    for name, start, end in zip(names, before.process_seconds, after.process_seconds, strict=True):
        cpu[name] = cpu.get(name, 0.0) + (end - start) * 1e6 / max(1, requests)
    ticks = max(1, after.core_ticks - before.core_ticks)
    busy = (after.core_busy_ticks - before.core_busy_ticks) / ticks
    ours = (sum(after.process_seconds) - sum(before.process_seconds)) * CLOCK_TICKS / ticks
    return Measurement(
        target=target.key,
        workload=workload.name,
        round=round_,
        requests=requests,
        seconds=plan.duration,
        rps=rps,
        rows_per_second=rps * workload.rows,
        p50_ms=_percentile(latencies, 50) / 1000,
        p99_ms=_percentile(latencies, 99) / 1000,
        mean_ms=statistics.fmean(latencies) / 1000,
        max_ms=latencies[-1] / 1000,
        cpu_us_per_request={k: round(v, 1) for k, v in cpu.items()},
        server_cores_busy=round(busy, 3),
        foreign_load=round(max(0.0, busy - ours), 3),
    )


def check_answers(targets: Sequence[Target], bodies: dict[int, Path]) -> None:
    """Every target must give the same predictions for the same rows."""
    for rows, body in bodies.items():
        answers: dict[str, Any] = {}
        for target in targets:
            status, answer = _http("POST", target.url, body.read_bytes())
            if status != 200:
                raise RuntimeError(f"{target.label} answered {status}: {answer[:500]!r}")
            answers[target.key] = json.loads(answer)
        if len({json.dumps(a) for a in answers.values()}) != 1:
            raise RuntimeError(f"the targets disagree on {rows} rows: {answers}")


# --------------------------------------------------------------------------- the report


def summarize(measurements: Sequence[Measurement], targets: Sequence[str]) -> dict[str, Any]:
    """The median over rounds of each figure, per target and workload."""
    summary: dict[str, Any] = {}
    for goal in GOALS:
        values = {
            t: statistics.median(
                getattr(m, goal.metric)
                for m in measurements
                if m.target == t and m.workload == goal.workload
            )
            for t in targets
        }
        summary[f"{goal.workload} {goal.label}"] = values
    return summary


def _figure(value: float, metric: str) -> str:
    if metric.endswith("_ms"):
        return f"{value:.2f}"
    return f"{value:,.0f}"


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def _verdict(goal: Goal, value: float) -> str:
    if goal.target is None:
        return "-"
    met = value >= goal.target if goal.higher_is_better else value <= goal.target
    sign = "≥" if goal.higher_is_better else "≤"
    return f"{sign} {_figure(goal.target, goal.metric)} {'met' if met else 'missed'}"


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| workload | figure | through router | model server | bare Starlette "
        "| router ÷ bare | server ÷ bare | target (router) |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for goal in GOALS:
        values = summary[f"{goal.workload} {goal.label}"]
        router, server, bare = values["router"], values["server"], values["bare"]
        lines.append(
            f"| {goal.workload} | {goal.label} | {_figure(router, goal.metric)} "
            f"| {_figure(server, goal.metric)} | {_figure(bare, goal.metric)} "
            f"| {_ratio(router, bare)} "
            f"| {_ratio(server, bare)} | {_verdict(goal, router)} |"
        )
    return "\n".join(lines)


def paired_ratios(measurements: Sequence[Measurement]) -> dict[str, float]:
    """Per figure, the median over rounds of router ÷ baseline measured in the same round: the
    machine's drift from round to round cancels out of each pair."""
    ratios: dict[str, float] = {}
    for goal in GOALS:
        pairs = []
        for round_ in sorted({m.round for m in measurements}):
            found = {
                m.target: getattr(m, goal.metric)
                for m in measurements
                if m.round == round_ and m.workload == goal.workload
            }
            if found.get("baseline") and "router" in found:
                pairs.append(found["router"] / found["baseline"])
        if pairs:
            ratios[f"{goal.workload} {goal.label}"] = statistics.median(pairs)
    return ratios


def baseline_table(summary: dict[str, Any], ratios: dict[str, float], revision: str) -> str:
    lines = [
        f"| workload | figure | through router | baseline router ({revision}) "
        "| router ÷ baseline (median of the rounds' ratios) |",
        "|---|---|--:|--:|--:|",
    ]
    for goal in GOALS:
        key = f"{goal.workload} {goal.label}"
        router, baseline = summary[key]["router"], summary[key]["baseline"]
        lines.append(
            f"| {goal.workload} | {goal.label} | {_figure(router, goal.metric)} "
            f"| {_figure(baseline, goal.metric)} | {ratios[key]:.3f}x |"
        )
    return "\n".join(lines)


def cpu_table(measurements: Sequence[Measurement]) -> str:
    """Median server-side CPU µs per request, by process, per workload and target."""
    lines = ["| workload | target | CPU µs / request |", "|---|---|---|"]
    for workload in WORKLOADS:
        for key in ("router", "baseline", "server", "bare"):
            picked = [m for m in measurements if m.target == key and m.workload == workload.name]
            if not picked:
                continue
            roles = picked[0].cpu_us_per_request
            parts = [
                f"{role} {statistics.median(m.cpu_us_per_request[role] for m in picked):,.0f}"
                for role in roles
            ]
            lines.append(f"| {workload.name} | {key} | {', '.join(parts)} |")
    return "\n".join(lines)


def _source() -> dict[str, Any]:
    """The commit measured, and the files under src/ that differed from it (others edit too)."""

    def git(*arguments: str) -> str:
        run = subprocess.run(
            ["git", "-C", str(HERE), *arguments], capture_output=True, text=True, check=False
        )
        return run.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "modified": git("status", "--porcelain", "--", ":/src").splitlines(),
    }


def _environment(targets: Sequence[Target]) -> dict[str, Any]:
    import numpy
    import sklearn

    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    h2load_version = subprocess.run(
        ["h2load", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "source": _source(),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "h2load": h2load_version,
        "affinity": {t.key: {str(pid): _affinity(pid) for pid in t.pids} for t in targets},
        "load_average": os.getloadavg(),
    }


# --------------------------------------------------------------------------- main


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (under a minute)")
    parser.add_argument("--rounds", type=int, help=f"rounds (default {FULL.rounds})")
    parser.add_argument("--duration", type=float, help="seconds measured per figure")
    parser.add_argument("--server-cpu", default="0", help="CPU list for the servers (taskset)")
    parser.add_argument("--client-cpu", default="1", help="CPU list for h2load (taskset)")
    parser.add_argument("--out", type=Path, help="JSON results file (default bench/results/)")
    parser.add_argument(
        "--baseline", metavar="REV", help="also measure shipway server at this git commit"
    )
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="shipway-bench-"))
    path.chmod(0o755)  # the model folder inside: readable by an instance's user of its own
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_targets(
    procs: Processes, cpu: str, workdir: Path, baseline: str | None = None
) -> list[Target]:
    model_dir = workdir / "model"
    try:
        targets = [
            start_shipway(procs, cpu, model_dir, workdir / "home"),
            start_model_server(procs, cpu, model_dir),
            start_bare(procs, cpu, model_dir),
        ]
        if baseline is not None:
            checkout = workdir / "baseline"
            subprocess.run(
                ["git", "-C", str(HERE), "worktree", "add", "--detach", str(checkout), baseline],
                check=True, capture_output=True,
            )  # fmt: skip
            # measured right after the router in each round: the pair sees the same machine
            targets.insert(
                1, start_shipway(procs, cpu, model_dir, workdir / "baseline-home", checkout / "src")
            )
        return targets
    except RuntimeError:
        for name in ("shipway", "baseline", "server", "bare"):
            print(f"--- {name}.log\n{procs.log_tail(name, lines=20)}", file=sys.stderr)
        raise


def run_rounds(
    targets: Sequence[Target], bodies: dict[int, Path], plan: Plan, args: argparse.Namespace,
    workdir: Path,
) -> list[Measurement]:  # fmt: skip
    """Every workload against every target, back to back, ``plan.rounds`` times."""
    for target in targets:  # first requests: imports, caches, the batcher's estimate
        h2load(args.client_cpu, target.url, bodies[1], 8, 1.0, 0.5, workdir / "h2load.log")
    measurements = []
    for round_ in range(1, plan.rounds + 1):
        for workload in WORKLOADS:
            for target in targets:
                m = measure(
                    target, workload, round_, bodies, plan, args.server_cpu, args.client_cpu,
                    workdir,
                )  # fmt: skip
                measurements.append(m)
                print(
                    f"round {round_} {workload.name:14} {target.label:15} "
                    f"{m.rps:9,.0f} req/s  p50 {m.p50_ms:6.3f} ms  p99 {m.p99_ms:6.3f} ms  "
                    f"CPU µs/req {m.cpu_us_per_request}  foreign load {m.foreign_load:.0%}",
                    file=sys.stderr,
                    flush=True,
                )
    return measurements


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    base = QUICK if args.quick else FULL
    plan = Plan(args.rounds or base.rounds, args.duration or base.duration, base.warmup)
    for tool in ("taskset", "h2load"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install util-linux nghttp2-client)")
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (&)
        signal.signal(signum, _interrupt)
    started_at = datetime.now(UTC)
    with _workdir() as workdir:
        bodies = prepare_model(workdir)
        procs = Processes(workdir)
        try:
            targets = start_targets(procs, args.server_cpu, workdir, args.baseline)
            check_answers(targets, bodies)
            environment = _environment(targets)
            measurements = run_rounds(targets, bodies, plan, args, workdir)
        finally:
            procs.stop_all()
            if args.baseline is not None:
                subprocess.run(
                    ["git", "-C", str(HERE), "worktree", "remove", "--force",
                     str(workdir / "baseline")],
                    capture_output=True,
                )  # fmt: skip
    summary = summarize(measurements, [t.key for t in targets])
    foreign = [m.foreign_load for m in measurements]
    out = args.out or RESULTS / f"realtime-{started_at:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "realtime",
        "started_at": started_at.isoformat(),
        "command": " ".join(["python", *sys.argv]),
        "plan": asdict(plan),
        "environment": environment,
        "summary": summary,
        "router_over_baseline": paired_ratios(measurements) if args.baseline else None,
        "measurements": [asdict(m) for m in measurements],
    }
    out.write_text(json.dumps(document, indent=2))
    print(f"\n{table(summary)}\n")
    if args.baseline is not None:
        print(f"{baseline_table(summary, paired_ratios(measurements), args.baseline)}\n")
    print(
        f"Other processes used {statistics.median(foreign):.0%} (median; at most "
        f"{max(foreign):.0%}) of the server core during the measurements.\n"
    )
    print(f"Server-side CPU time per request (median over rounds):\n\n{cpu_table(measurements)}\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
