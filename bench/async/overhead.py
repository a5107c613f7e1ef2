"""Asynchronous inference overhead: what the queue costs per request, against real-time invocation
of the same model on the same server, in the same run.

For each queue backend (``sqlite``: the table of the metadata store, the default; ``redis``:
Redis Streams on 127.0.0.1:6379 with ``SHIPWAY_QUEUE_URL`` and a namespace of this run's own), one
``shipway server`` (fresh data dir) pinned to one core (``taskset -c 0``; its instances inherit the
affinity) serves one scikit-learn model (StandardScaler + LogisticRegression on breast_cancer,
trained in a process of its own, ``Image: sklearn``) on two endpoints of one ``ml.m5.large``
instance each: ``bench-realtime`` and ``bench-async`` (AsyncInferenceConfig, outputs and failures
to ``file://`` folders of this run, MaxConcurrentInvocationsPerInstance 8). Every request is the
same JSON body of a few rows. This script and its clients run on the other core (CPU 1).

1. **Throughput of small requests**, ``--rounds`` times (median reported): ``--requests`` N sent
   by ``--concurrency`` C kept-alive HTTP/1.1 connections, one request in flight on each (a raw
   asyncio client on uvloop, the request bytes built beforehand, so the client is not what
   limits): real-time invocations/s (first request sent to last answer read) against async
   completions/s, submitted as fast as the server takes them with the body inline, then with an
   ``X-Amzn-SageMaker-InputLocation`` (one ``file://`` object per request, written beforehand).
   An async run is timed from its first submit to the last output object written (the newest
   output's mtime), and is over when ``GET /api/endpoints/bench-async/queue`` (polled every
   0.1 s) reports a backlog of 0 and every ``<InferenceId>.out`` exists; each output is compared
   with the real-time answer, and nothing may be in the failure folder.
2. **Added latency**, one request at a time, ``--samples`` M times each, interleaved: a real-time
   invocation (send to answer) against async submit to output object visible (the rename of
   ``<InferenceId>.out`` into place, seen with inotify), inline and by InputLocation;
   percentiles are exact (nearest rank), added = async - real-time at each percentile. Each
   async request's record (``GET /api/async-invocations/{id}``: EnqueuedTime, StartTime,
   EndTime) then splits its time into submit to queued, queued to claim, claim to output visible.

Server-side CPU per request (server process: router, REST, dispatcher and queue; the instance;
Redis) is read from /proc around every throughput run, with the server core's foreign load.

    .venv/bin/python bench/async/overhead.py                        # both backends, under 2 minutes
    .venv/bin/python bench/async/overhead.py --requests 500 --backends sqlite

Prints a markdown table and writes every measurement to ``bench/async/results-<time>.json``
(ignored by git). Exits with status 1 if a request failed or an output was missing or wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import platform
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# Run as a file: bench/ on the import path for the shared helpers (bench/harness.py).
sys.path.insert(0, str(HERE.parent))

from harness import (  # noqa: E402  (needs the sys.path entry above)
    CLOCK_TICKS,
    Processes,
    call_json,
    core_ticks,
    cpu_seconds,
    free_port,
    healthy,
    parse_cpus,
    train_model,
    wait_until,
)

REALTIME = "bench-realtime"
ASYNC = "bench-async"
INSTANCE_TYPE = "ml.m5.large"
ASYNC_CONCURRENCY = 8
"""MaxConcurrentInvocationsPerInstance of the async endpoint."""
REDIS_URL = "redis://127.0.0.1:6379/0"
QUEUE_POLL_SECONDS = 0.1
ROWS = [[round(0.5 + 0.37 * ((r * 31 + c * 7) % 23), 3) for c in range(30)] for r in range(4)]
BODY = json.dumps(ROWS).encode()
"""Four rows of the model's 30 features (a few hundred bytes)."""
MODES = ("inline", "location")


# --------------------------------------------------------------------------- HTTP, raw


def realtime_request(port: int) -> bytes:
    return (
        f"POST /endpoints/{REALTIME}/invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


def async_request(port: int, inference_id: str, location: str | None) -> bytes:
    """InvokeEndpointAsync as boto3 sends it (members in headers), with the body inline when
    there is no ``location``."""
    body = b"" if location else BODY
    head = (
        f"POST /endpoints/{ASYNC}/async-invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "X-Amzn-SageMaker-Content-Type: application/json\r\n"
        "X-Amzn-SageMaker-Accept: application/json\r\n"
        f"X-Amzn-SageMaker-Inference-Id: {inference_id}\r\n"
    )
    if location:
        head += f"X-Amzn-SageMaker-InputLocation: {location}\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _parse_head(head: bytes) -> tuple[int, int]:
    """(status, content length) of a response head; the server always sends a length."""
    status = int(head[9:12])
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    raise RuntimeError(f"a response without Content-Length: {head[:200]!r}")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status, length = _parse_head(await reader.readuntil(b"\r\n\r\n"))
    return status, await reader.readexactly(length)


@dataclass
class Run:
    """One closed-loop run: per request, when it was sent and answered (``time.time_ns``, the
    clock of file mtimes), its status and answer."""

    sent: list[int]
    done: list[int]
    status: list[int]
    body: list[bytes]

    @property
    def seconds(self) -> float:
        return (max(self.done) - min(self.sent)) / 1e9


def closed_loop(port: int, requests: Sequence[bytes], concurrency: int) -> Run:
    """Send ``requests`` over ``concurrency`` kept-alive connections, one in flight on each,
    connections opened before the first is sent."""
    n = len(requests)
    run = Run([0] * n, [0] * n, [0] * n, [b""] * n)

    async def main() -> None:
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
        for _, writer in connections:
            writer.transport.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
        cursor = iter(range(n))

        async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for i in cursor:
                run.sent[i] = time.time_ns()
                writer.write(requests[i])
                run.status[i], run.body[i] = await _read_response(reader)
                run.done[i] = time.time_ns()

        try:
            await asyncio.gather(*(worker(r, w) for r, w in connections))
        finally:
            for _, writer in connections:
                writer.close()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return run


class Connection:
    """One kept-alive connection for requests one at a time (blocking)."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def send(self, request: bytes) -> None:
        self._sock.sendall(request)

    def response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status, length = _parse_head(head + b"\r\n")
        while len(self._buffer) < length:
            self._buffer += self._recv()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return status, body

    def _recv(self) -> bytes:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self._sock.close()


# --------------------------------------------------------------------------- inotify


class OutputWatch:
    """inotify on the output folder: the moment an answer is renamed into place (the Writer
    writes ``.<name>.<uuid>`` and renames it to ``<name>``: IN_MOVED_TO)."""

    IN_MOVED_TO = 0x80
    _EVENT = struct.Struct("iIII")

    def __init__(self, folder: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self._fd, os.fsencode(folder), self.IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")

    def wait(self, name: str, timeout: float = 30.0) -> int:
        """``time.perf_counter_ns()`` when ``name`` appeared."""
        wanted = name.encode()
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self._fd], [], [], max(0.0, deadline - time.monotonic()))
            seen = time.perf_counter_ns()
            if not ready:
                raise TimeoutError(f"{name} did not appear within {timeout} s")
            data = os.read(self._fd, 65536)
            offset, found = 0, False
            while offset < len(data):
                _, _, _, length = self._EVENT.unpack_from(data, offset)
                start = offset + self._EVENT.size
                found |= data[start : start + length].rstrip(b"\0") == wanted
                offset = start + length
            if found:
                return seen

    def close(self) -> None:
        os.close(self._fd)


# --------------------------------------------------------------------------- CPU use


@dataclass(frozen=True)
class Usage:
    """CPU seconds of the measured processes and ticks of the server core, at one moment."""

    seconds: dict[str, float]
    core_busy: int
    core_total: int

    @staticmethod
    def now(pids: dict[str, int], cores: set[int]) -> Usage:
        busy, total = core_ticks(cores)
        seconds = {name: cpu_seconds(pid) for name, pid in pids.items()}
        seconds["client"] = cpu_seconds("self")
        return Usage(seconds, busy, total)


def cpu_report(
    before: Usage, after: Usage, requests: int, on_core: Sequence[str]
) -> dict[str, Any]:
    """CPU µs per request of each process, and the server core's busy share and foreign load
    (busy time of the core not spent by ``on_core`` processes)."""
    used = {k: after.seconds[k] - before.seconds[k] for k in after.seconds}
    ticks = max(1, after.core_total - before.core_total)
    busy = (after.core_busy - before.core_busy) / ticks
    ours = sum(used[k] for k in on_core) * CLOCK_TICKS / ticks
    return {
        "us_per_request": {k: round(v * 1e6 / requests, 1) for k, v in used.items()},
        "server_core_busy": round(busy, 3),
        "foreign_load": round(max(0.0, busy - ours), 3),
    }


def redis_pid() -> int | None:
    """The local redis-server's pid (read only: its CPU time is reported, never changed)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "redis-server":
                    return int(entry.name)
            except OSError:
                continue
    return None


# --------------------------------------------------------------------------- the server


@dataclass
class Server:
    backend: str
    url: str
    port: int
    pid: int
    data: Path
    namespace: str | None
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def outputs(self) -> Path:
        return self.data / "output"

    @property
    def failures(self) -> Path:
        return self.data / "failure"

    def backlog(self) -> int:
        queue = call_json(self.url, "GET", f"/api/endpoints/{ASYNC}/queue")
        return int(queue["ApproximateBacklogSize"])


def start_server(procs: Processes, backend: str, cpu: str, workdir: Path, model: Path) -> Server:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    namespace = None
    if backend == "redis":
        namespace = f"shipway-bench-{uuid.uuid4().hex[:12]}"
        env |= {"SHIPWAY_QUEUE_URL": REDIS_URL, "SHIPWAY_QUEUE_NAMESPACE": namespace}
    home, data = workdir / f"home-{backend}", workdir / f"data-{backend}"
    command = [
        "taskset",
        "-c",
        cpu,
        sys.executable,
        "-m",
        "shipway",
        "server",
        "--port",
        str(port),
        "--home",
        str(home),
    ]
    process = procs.start(f"server-{backend}", command, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or healthy(url), 60, poll=0.1)
    except TimeoutError:
        raise RuntimeError(procs.log_tail(f"server-{backend}")) from None
    if process.poll() is not None:
        raise RuntimeError(f"the server exited:\n{procs.log_tail(f'server-{backend}')}")
    server = Server(backend, url, port, process.pid, data, namespace)
    server.outputs.mkdir(parents=True)
    (data / "inputs").mkdir()
    call_json(
        url,
        "POST",
        "/api/models",
        {
            "ModelName": "bench",
            "PrimaryContainer": {"Image": "sklearn", "ModelDataUrl": str(model)},
        },
    )
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": "bench",
        "InstanceType": INSTANCE_TYPE,
        "InitialInstanceCount": 1,
    }
    call_json(
        url,
        "POST",
        "/api/endpoint-configs",
        {"EndpointConfigName": REALTIME, "ProductionVariants": [variant]},
    )
    call_json(
        url,
        "POST",
        "/api/endpoint-configs",
        {
            "EndpointConfigName": ASYNC,
            "ProductionVariants": [variant],
            "AsyncInferenceConfig": {
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": ASYNC_CONCURRENCY},
                "OutputConfig": {
                    "S3OutputPath": f"file://{server.outputs}",
                    "S3FailurePath": f"file://{server.failures}",
                },
            },
        },
    )
    for name in (REALTIME, ASYNC):
        call_json(url, "POST", "/api/endpoints", {"EndpointName": name, "EndpointConfigName": name})
    for name in (REALTIME, ASYNC):

        def in_service(name: str = name) -> bool:
            status: str = call_json(url, "GET", f"/api/endpoints/{name}")["EndpointStatus"]
            if status == "Failed":
                raise RuntimeError(f"endpoint {name} failed")
            return status == "InService"

        wait_until(in_service, 120, poll=0.1)
        instances = call_json(url, "GET", f"/api/endpoints/{name}/instances")["Instances"]
        server.pids[name] = int(instances[0]["Pid"])
    server.pids["server"] = process.pid
    return server


def forget_namespace(namespace: str) -> None:
    """Delete this run's keys from the shared Redis."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        doomed = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        for start in range(0, len(doomed), 1000):
            client.unlink(*doomed[start : start + 1000])
    finally:
        client.close()


# --------------------------------------------------------------------------- measurements


def throughput_realtime(
    server: Server, n: int, concurrency: int, cores: set[int]
) -> dict[str, Any]:
    requests = [realtime_request(server.port)] * n
    pids = {k: server.pids[k] for k in ("server", REALTIME)}
    before = Usage.now(pids, cores)
    run = closed_loop(server.port, requests, concurrency)
    after = Usage.now(pids, cores)
    statuses = Counter(run.status)
    expected = run.body[0]
    return {
        "kind": "realtime",
        "requests": n,
        "seconds": run.seconds,
        "per_second": n / run.seconds,
        "statuses": dict(statuses),
        "wrong_answers": sum(1 for b in run.body if b != expected),
        "answer": expected.decode(),
        "cpu": cpu_report(before, after, n, list(pids)),
    }


def throughput_async(
    server: Server,
    mode: str,
    label: str,
    n: int,
    concurrency: int,
    cores: set[int],
    expected: bytes,
    redis: int | None,
) -> dict[str, Any]:
    ids = [f"{label}-{i:05d}" for i in range(n)]
    locations: list[str | None] = [None] * n
    if mode == "location":
        for i, inference_id in enumerate(ids):
            path = server.data / "inputs" / f"{inference_id}.json"
            path.write_bytes(BODY)
            locations[i] = f"file://{path}"
    requests = [async_request(server.port, i, loc) for i, loc in zip(ids, locations, strict=True)]
    pids = {k: server.pids[k] for k in ("server", ASYNC)}
    if redis is not None:
        pids["redis"] = redis
    before = Usage.now(pids, cores)
    run = closed_loop(server.port, requests, concurrency)
    submitted = time.time_ns()
    wait_until(lambda: server.backlog() == 0, 300, poll=QUEUE_POLL_SECONDS)
    detected = time.time_ns()
    after = Usage.now(pids, cores)
    first = min(run.sent)
    newest, missing, wrong = 0, 0, 0
    for inference_id in ids:
        path = server.outputs / f"{inference_id}.out"
        try:
            newest = max(newest, path.stat().st_mtime_ns)
            wrong += path.read_bytes() != expected
        except FileNotFoundError:
            missing += 1
    failed = (
        sorted(p.name for p in server.failures.glob(f"{label}-*"))
        if server.failures.exists()
        else []
    )
    seconds = (newest - first) / 1e9
    return {
        "kind": f"async {mode}",
        "requests": n,
        "submit_seconds": run.seconds,
        "submits_per_second": n / run.seconds,
        "seconds": seconds,
        "per_second": n / seconds,
        "drained_seen_after_seconds": (detected - first) / 1e9,
        "submitted_at_seconds": (submitted - first) / 1e9,
        "statuses": dict(Counter(run.status)),
        "submit_errors": [
            b.decode(errors="replace")
            for s, b in zip(run.status, run.body, strict=True)
            if s != 202
        ][:5],
        "missing_outputs": missing,
        "wrong_answers": wrong,
        "failures": failed[:5],
        "failure_count": len(failed),
        "cpu": cpu_report(before, after, n, [k for k in pids if k != "redis"]),
    }


def latency(server: Server, samples: int, label: str, expected: bytes) -> dict[str, list[float]]:
    """Per sample, in turn: a real-time invocation, an inline async request, an async request
    by InputLocation; milliseconds."""
    measured: dict[str, list[float]] = {
        "realtime": [],
        "async inline": [],
        "async location": [],
        "submit inline": [],
        "submit location": [],
    }
    sent: dict[str, tuple[float, float]] = {}
    """Per async request: when it was sent (wall clock, s) and seen (s after that)."""
    realtime = realtime_request(server.port)
    watch = OutputWatch(server.outputs)
    connection = Connection(server.port)
    try:
        for i in range(samples):
            started = time.perf_counter_ns()
            connection.send(realtime)
            status, body = connection.response()
            measured["realtime"].append((time.perf_counter_ns() - started) / 1e6)
            if status != 200 or body != expected:
                raise RuntimeError(f"real-time invocation: {status} {body[:200]!r}")
            for mode in MODES:
                inference_id = f"{label}-{mode}-{i:05d}"
                location = None
                if mode == "location":
                    path = server.data / "inputs" / f"{inference_id}.json"
                    path.write_bytes(BODY)
                    location = f"file://{path}"
                request = async_request(server.port, inference_id, location)
                wall, started = time.time_ns(), time.perf_counter_ns()
                connection.send(request)
                status, body = connection.response()
                measured[f"submit {mode}"].append((time.perf_counter_ns() - started) / 1e6)
                if status != 202:
                    raise RuntimeError(f"async submit: {status} {body[:200]!r}")
                seen = watch.wait(f"{inference_id}.out")
                measured[f"async {mode}"].append((seen - started) / 1e6)
                sent[inference_id] = (wall / 1e9, (seen - started) / 1e9)
                answer = (server.outputs / f"{inference_id}.out").read_bytes()
                if answer != expected:
                    raise RuntimeError(f"async answer {answer[:200]!r} != {expected[:200]!r}")
    finally:
        connection.close()
        watch.close()
    measured |= phases(server, sent)
    return measured


def phases(server: Server, sent: dict[str, tuple[float, float]]) -> dict[str, list[float]]:
    """Where an async request's time goes, from its record's EnqueuedTime, StartTime (the
    dispatcher's clock when it began the claim that took it) and EndTime (the server's wall
    clock, this machine's): submit to queued, queued to claim, claim to output visible (the
    claim's own time included), and visible to EndTime (set just after the output's rename:
    near 0, a check that the clocks agree); milliseconds."""
    found: dict[str, list[float]] = {}
    for inference_id, (wall, visible) in sent.items():
        record = call_json(server.url, "GET", f"/api/async-invocations/{inference_id}")
        queued, claimed, ended = (
            datetime.fromisoformat(record[key]).timestamp()
            for key in ("EnqueuedTime", "StartTime", "EndTime")
        )
        mode = inference_id.split("-")[1]
        for name, seconds in (
            ("submit to queued", queued - wall),
            ("queued to claim", claimed - queued),
            ("claim to visible", wall + visible - claimed),
            ("visible to finished", ended - wall - visible),
        ):
            found.setdefault(f"{mode}: {name}", []).append(seconds * 1e3)
    return found


def percentile(values: Sequence[float], p: float) -> float:
    """Exact, nearest rank."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


# --------------------------------------------------------------------------- one backend


def measure(
    procs: Processes, backend: str, args: argparse.Namespace, workdir: Path, model: Path
) -> dict[str, Any]:
    cores = parse_cpus(args.server_cpu)
    server = start_server(procs, backend, args.server_cpu, workdir, model)
    redis = redis_pid() if backend == "redis" else None
    try:
        # warm-up: both paths, the instance's batcher, the dispatcher, the queue's tables
        warm = throughput_realtime(server, 500, args.concurrency, cores)
        expected = warm["answer"].encode()
        if warm["statuses"] != {200: 500} or warm["wrong_answers"]:
            raise RuntimeError(f"real-time warm-up failed: {warm['statuses']}")
        for mode in MODES:
            throughput_async(
                server, mode, f"warm-{mode}", 200, args.concurrency, cores, expected, redis
            )
        rounds: list[dict[str, Any]] = []
        for round_ in range(args.rounds):
            results = [throughput_realtime(server, args.requests, args.concurrency, cores)]
            for mode in MODES:
                results.append(
                    throughput_async(
                        server,
                        mode,
                        f"r{round_}-{mode}",
                        args.requests,
                        args.concurrency,
                        cores,
                        expected,
                        redis,
                    )
                )
            rounds.append({"round": round_ + 1, "runs": results})
            print(
                f"{backend} round {round_ + 1}: "
                + ", ".join(f"{r['kind']} {r['per_second']:,.0f}/s" for r in results),
                file=sys.stderr,
            )
        latencies = latency(server, args.samples, "lat", expected)
        described = call_json(server.url, "GET", f"/api/endpoints/{ASYNC}/queue")
    finally:
        procs.stop_all()
        if server.namespace is not None:
            forget_namespace(server.namespace)
    return {"backend": backend, "rounds": rounds, "latency_ms": latencies, "queue_after": described}


# --------------------------------------------------------------------------- the report


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds of each kind's throughput and CPU per request, and ratios of each
    round's async figure to the same round's real-time one."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    ratios: dict[str, list[float]] = {}
    for round_ in result["rounds"]:
        realtime = round_["runs"][0]["per_second"]
        for run in round_["runs"]:
            kinds.setdefault(run["kind"], []).append(run)
            ratios.setdefault(run["kind"], []).append(run["per_second"] / realtime)
    table: dict[str, Any] = {}
    for kind, runs in kinds.items():
        cpu_keys = runs[0]["cpu"]["us_per_request"].keys()
        table[kind] = {
            "per_second": statistics.median(r["per_second"] for r in runs),
            "ratio": statistics.median(ratios[kind]),
            "submits_per_second": statistics.median(r.get("submits_per_second", 0.0) for r in runs),
            "cpu_us": {
                k: statistics.median(r["cpu"]["us_per_request"][k] for r in runs) for k in cpu_keys
            },
            "foreign_load_max": max(r["cpu"]["foreign_load"] for r in runs),
        }
    lat = result["latency_ms"]
    percentiles = {
        kind: {p: percentile(values, p) for p in (50, 90, 99)} for kind, values in lat.items()
    }
    return {"throughput": table, "latency": percentiles}


def print_report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"\nMeasured on {datetime.now(UTC):%Y-%m-%d at %H:%M} UTC with "
        f"`{' '.join(['.venv/bin/python', 'bench/async/overhead.py', *sys.argv[1:]])}`, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, commit {commit}; "
        f"{args.requests:,} requests of {len(ROWS)} rows ({len(BODY)} bytes) by "
        f"{args.concurrency} connections, {args.rounds} rounds (medians); latency over "
        f"{args.samples} sequential samples.\n"
    )
    print(
        "| queue | figure | real-time | async inline | async InputLocation "
        "| inline ÷ real-time | location ÷ real-time |"
    )
    print("|---|---|--:|--:|--:|--:|--:|")
    for result in results:
        s = result["summary"]
        t, lat = s["throughput"], s["latency"]
        rt, inline, location = t["realtime"], t["async inline"], t["async location"]
        q = result["backend"]
        print(
            f"| {q} | completions/s | {rt['per_second']:,.0f} | {inline['per_second']:,.0f} | "
            f"{location['per_second']:,.0f} | {inline['ratio']:.2f}x | {location['ratio']:.2f}x |"
        )
        print(
            f"| {q} | submits/s (202s) | - | {inline['submits_per_second']:,.0f} | "
            f"{location['submits_per_second']:,.0f} | "
            f"{inline['submits_per_second'] / rt['per_second']:.2f}x | "
            f"{location['submits_per_second'] / rt['per_second']:.2f}x |"
        )
        for p in (50, 90, 99):
            r, i, loc = lat["realtime"][p], lat["async inline"][p], lat["async location"][p]
            print(
                f"| {q} | p{p} latency ms | {r:.2f} | {i:.2f} | {loc:.2f} | "
                f"+{i - r:.2f} ms | +{loc - r:.2f} ms |"
            )
        for p in (50, 99):
            print(
                f"| {q} | p{p} submit (202) ms | - | {lat['submit inline'][p]:.2f} | "
                f"{lat['submit location'][p]:.2f} | - | - |"
            )
    print("\nWhere a sequential async request's time goes (p50 ms, from its record's times):\n")
    print("| queue | input | submit to queued | queued to claim | claim to output visible |")
    print("|---|---|--:|--:|--:|")
    for result in results:
        lat = result["summary"]["latency"]
        for mode in MODES:
            cells = " | ".join(
                f"{lat[f'{mode}: {name}'][50]:.2f}"
                for name in (
                    "submit to queued",
                    "queued to claim",
                    "claim to visible",
                )
            )
            print(f"| {result['backend']} | {mode} | {cells} |")
    print("\nServer-side CPU per request (µs, median over rounds, throughput runs):\n")
    print("| queue | path | server process | instance | redis-server | client | max foreign load |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for result in results:
        for kind, row in result["summary"]["throughput"].items():
            cpu = row["cpu_us"]
            instance = cpu.get(REALTIME, cpu.get(ASYNC, 0.0))
            redis = f"{cpu['redis']:.0f}" if "redis" in cpu else "-"
            print(
                f"| {result['backend']} | {kind} | {cpu['server']:.0f} | {instance:.0f} | "
                f"{redis} | {cpu['client']:.0f} | {row['foreign_load_max']:.0%} |"
            )


def problems(results: list[dict[str, Any]]) -> list[str]:
    found = []
    for result in results:
        for round_ in result["rounds"]:
            for run in round_["runs"]:
                where = f"{result['backend']} round {round_['round']} {run['kind']}"
                ok = 200 if run["kind"] == "realtime" else 202
                if set(run["statuses"]) != {ok}:
                    found.append(f"{where}: statuses {run['statuses']}")
                if run["wrong_answers"]:
                    found.append(f"{where}: {run['wrong_answers']} wrong answers")
                if run.get("missing_outputs") or run.get("failure_count"):
                    found.append(
                        f"{where}: {run['missing_outputs']} outputs missing, "
                        f"{run['failure_count']} failures {run['failures']}"
                    )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per throughput run")
    parser.add_argument("--concurrency", type=int, default=16, help="client connections")
    parser.add_argument("--samples", type=int, default=200, help="sequential latency samples")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per backend")
    parser.add_argument("--backends", default="sqlite,redis", help="queue backends, in order")
    parser.add_argument("--server-cpu", default="0", help="CPU list for the server (taskset)")
    parser.add_argument("--client-cpu", default="1", help="CPU list for this script's clients")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"sqlite", "redis"}:
        sys.exit(f"unknown backends {sorted(unknown)}: choose from sqlite, redis")
    if shutil.which("taskset") is None:
        sys.exit("taskset is not installed (apt-get install util-linux)")
    os.sched_setaffinity(0, parse_cpus(args.client_cpu))
    workdir = Path(tempfile.mkdtemp(prefix="shipway-bench-async-"))
    model = train_model(workdir / "model")
    procs = Processes(workdir)
    results = []
    started = time.monotonic()
    try:
        for backend in backends:
            result = measure(procs, backend, args, workdir, model)
            result["summary"] = summary(result)
            results.append(result)
    finally:
        procs.stop_all()
    print_report(results, args)
    out = HERE / f"results-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "results": results,
                "workdir": str(workdir),
                "seconds": time.monotonic() - started,
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nwrote {out} ({time.monotonic() - started:.0f} s in all)")
    if found := problems(results):
        print("\nPROBLEMS:\n" + "\n".join(found), file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
