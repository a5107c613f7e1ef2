"""Instance start benchmark: an instance forked from its runtime's zygote against one spawned.

Uses the local compute backend directly (no server, no router), with a scikit-learn model
(StandardScaler + LogisticRegression on breast_cancer, joblib) on an instance type of 1 vCPU and
2 GiB, as the platform would start it (sandbox, cgroups where writable). Each round starts one
instance each way, in turn, so both are measured under the same conditions:

- **fork**: ``LocalBackend(start_method="fork")`` whose zygote was started ahead (``prestart``)
  and is ready (``zygotes_ready``);
- **spawn**: ``LocalBackend(start_method="spawn")``: the sandbox launcher, then a fresh
  interpreter that imports the model server and scikit-learn.

An instance's start is the time from ``backend.start()`` to the first HTTP 200 on ``/ping``
over its Unix socket (polled every 2 ms); each instance is stopped before the next starts. Once
before the rounds, the first instance of a fork backend without ``prestart`` is timed too: it is
spawned while its zygote starts beside it.

Then, with instances idle (loaded, one prediction made): the proportional set size (PSS,
``/proc/<pid>/smaps_rollup``) of the zygote and one forked instance against one spawned
instance, and the same with two instances each way.

    .venv/bin/python bench/elasticity/instance_start.py              # 10 rounds, about 30 s
    .venv/bin/python bench/elasticity/instance_start.py --rounds 20

Prints a markdown table (medians, and spawn's median over fork's) and writes every measurement
to ``bench/results/instance-start-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE.parent))

from harness import pss_kib, train_model  # noqa: E402

from shipway.compute.backend import InstanceSpec, StartedInstance  # noqa: E402
from shipway.compute.local import LocalBackend, StartMethod  # noqa: E402
from shipway.domain.instance_types import InstanceType  # noqa: E402
from shipway.serving.runtime import resolve_runtime  # noqa: E402

RESULTS = HERE.parent / "results"
RUNTIME = resolve_runtime("sklearn")
INSTANCE_TYPE = InstanceType(name="ml.bench.small", vcpus=1, memory_gib=2, price_per_hour=0.0)
ROW = json.dumps([[1.0] * 30]).encode()
POLL_SECONDS = 0.002


async def _request(path: str, request: bytes) -> int:
    """The status code of one HTTP/1.1 request over a Unix socket (0: no answer)."""
    try:
        reader, writer = await asyncio.open_unix_connection(path)
    except OSError:
        return 0
    try:
        writer.write(request)
        await writer.drain()
        line = await reader.readline()
        return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else 0
    except (OSError, ValueError, IndexError):
        return 0
    finally:
        writer.close()


async def _until_healthy(started: StartedInstance, timeout: float = 60.0) -> None:
    path = started.address[len("unix:") :]
    ping = b"GET /ping HTTP/1.1\r\nHost: instance\r\nConnection: close\r\n\r\n"
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if await _request(path, ping) == 200:
            return
        await asyncio.sleep(POLL_SECONDS)
    raise RuntimeError(f"instance at {started.address} not healthy within {timeout} s")


async def _predict(started: StartedInstance) -> None:
    path = started.address[len("unix:") :]
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: instance\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(ROW)).encode() + b"\r\n\r\n" + ROW
    )
    status = await _request(path, request)
    if status != 200:
        raise RuntimeError(f"prediction answered {status}")


class Bench:
    def __init__(self, workdir: Path, model_dir: Path) -> None:
        self.workdir = workdir
        self.model_dir = model_dir
        self._ids = 0

    def backend(self, start_method: StartMethod, name: str) -> LocalBackend:
        folder = self.workdir / name
        return LocalBackend(folder / "logs", folder / "run", start_method=start_method)

    def spec(self) -> InstanceSpec:
        self._ids += 1
        return InstanceSpec(
            instance_id=f"bench-{self._ids:04d}",
            model_name="bench",
            runtime=RUNTIME,
            model_dir=self.model_dir,
            instance_type=INSTANCE_TYPE,
        )

    async def start(self, backend: LocalBackend) -> tuple[float, StartedInstance, str]:
        """Seconds from start() to the first 200 on /ping; the instance; its id."""
        spec = self.spec()
        began = time.perf_counter()
        started = await backend.start(spec)
        await _until_healthy(started)
        return time.perf_counter() - began, started, spec.instance_id


async def _memory(bench: Bench) -> dict[str, float]:
    """PSS in MiB of idle instances, forked (with their zygote) and spawned, one and two."""
    figures: dict[str, float] = {}
    for start_method in ("fork", "spawn"):
        backend = bench.backend(start_method, f"memory-{start_method}")
        try:
            backend.prestart([RUNTIME])
            await backend.zygotes_ready()
            pids: list[int] = []
            for count in (1, 2):
                _, started, _ = await bench.start(backend)
                await _predict(started)
                assert started.pid is not None
                pids.append(started.pid)
                await asyncio.sleep(1.0)
                zygote = backend.zygote_pid(RUNTIME)
                measured = [*pids, *([zygote] if zygote is not None else [])]
                figures[f"{start_method} x{count}"] = pss_kib(measured) / 1024
                if zygote is not None and count == 1:
                    figures["zygote alone"] = pss_kib([zygote]) / 1024
        finally:
            await backend.close(5.0)
    return figures


async def run(rounds: int, workdir: Path) -> dict[str, Any]:
    model_dir = train_model(workdir / "model")
    bench = Bench(workdir, model_dir)

    lazy = bench.backend("fork", "lazy")
    try:
        first, _, _ = await bench.start(lazy)  # spawned, its zygote starting beside it
    finally:
        await lazy.close(5.0)

    forked = bench.backend("fork", "fork")
    spawned = bench.backend("spawn", "spawn")
    times: dict[str, list[float]] = {"fork": [], "spawn": []}
    try:
        forked.prestart([RUNTIME])
        await forked.zygotes_ready()
        for _ in range(rounds):
            for name, backend in (("fork", forked), ("spawn", spawned)):
                seconds, _, instance_id = await bench.start(backend)
                times[name].append(seconds)
                await backend.stop(instance_id, 5.0)
    finally:
        await forked.close(5.0)
        await spawned.close(5.0)
    memory = await _memory(bench)
    return {"first_without_zygote": first, "times": times, "pss_mib": memory}


def report(result: dict[str, Any], rounds: int) -> str:
    fork = statistics.median(result["times"]["fork"])
    spawn = statistics.median(result["times"]["spawn"])
    pss = result["pss_mib"]
    lines = [
        f"Instance start, backend.start() to first 200 on /ping, median of {rounds}:",
        "",
        "| start | median | max | spawn / this |",
        "|---|---:|---:|---:|",
        f"| fork (zygote ready) | {fork * 1000:.0f} ms | "
        f"{max(result['times']['fork']) * 1000:.0f} ms | {spawn / fork:.1f} |",
        f"| spawn | {spawn * 1000:.0f} ms | {max(result['times']['spawn']) * 1000:.0f} ms | 1.0 |",
        f"| first of its runtime, no zygote yet: spawned as its zygote starts (once) | "
        f"{result['first_without_zygote'] * 1000:.0f} ms | | "
        f"{spawn / result['first_without_zygote']:.1f} |",
        "",
        "Idle PSS (smaps_rollup), MiB:",
        "",
        "| instances | fork (zygote included) | spawn | fork / spawn |",
        "|---|---:|---:|---:|",
    ]
    for count in (1, 2):
        forked, spawned = pss[f"fork x{count}"], pss[f"spawn x{count}"]
        lines.append(f"| {count} | {forked:.0f} | {spawned:.0f} | {forked / spawned:.2f} |")
    if "zygote alone" in pss:
        lines.append(f"| (the zygote alone, beside 1 fork) | {pss['zygote alone']:.0f} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="shipway-bench-start-"))
    try:
        result = asyncio.run(run(args.rounds, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(result, args.rounds))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    document = {
        "benchmark": "instance-start",
        "rounds": args.rounds,
        "machine": {"python": platform.python_version(), "cores": os.cpu_count()},
        "euid": os.geteuid(),
        **result,
    }
    path = RESULTS / f"instance-start-{stamp}.json"
    path.write_text(json.dumps(document, indent=2))
    print(f"\nwritten to {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
