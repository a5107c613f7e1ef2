"""Batch transform (issue 13): Shipway's transform jobs against what the same work costs without
Shipway, and against Ray Data, in the same run.

**The model and the rows** ([`dataset.py`](dataset.py), in a process of its own): a scikit-learn
``HistGradientBoostingRegressor`` (100 trees, 31 leaves) trained on ``load_diabetes``
resampled with noise; ``--rows`` rows (2,000,000) of its 10 features, resampled with noise and
rounded to 6 decimals, written as ``--files`` (8) header-less CSV objects, and the same rows as
8 Parquet objects. Every output is checked: Shipway's byte for byte against the one-process
reference's, Ray Data's (its own files and row order) as the sorted predictions.

1. **The local engine against the one-process limit.** One ``shipway server`` (fresh home, the
   data dir's catalog adding an instance type ``bench.1vcpu`` of 1 vCPU: no shipped type has
   one, and an instance's compute threads are its type's vCPUs capped by the cores; a 1-vCPU
   instance also gets a CPU quota of one core), a model (``Image: sklearn``, the joblib file),
   and per round one ``CreateTransformJob`` through boto3's ``sagemaker`` client:
   ``TransformResources`` 2 instances of ``bench.1vcpu``, ``BatchStrategy`` MultiRecord,
   ``MaxPayloadInMB`` 6, ``SplitType`` Line, ``ContentType`` and ``Accept`` text/csv,
   ``AssembleWith`` Line; ``MaxConcurrentTransforms`` left to the model server (2 per
   instance). Timed from the create call to ``Completed`` seen by ``DescribeTransformJob``
   polled every 0.2 s (``TransformStartTime``/``TransformEndTime`` are recorded too). The
   reference ([`reference.py`](reference.py), ``OMP_NUM_THREADS=1``) is one process per core
   (a stdlib pool of 2) doing with no server what an instance does per payload: read a block of
   whole lines of at most 6 MiB, ``codecs.decode`` it as text/csv, predict, ``codecs.encode``
   the predictions as text/csv, write them; timed from both workers holding the model (their
   start and imports excluded: the limit) to the last output written. Ratio = Shipway's rows/s
   ÷ the reference's; the two alternate, ``--rounds`` rounds, median.
2. **Parquet-sourced CSV.** Each round the Parquet objects are converted to CSV with pyarrow
   (``parquet.read_table`` then ``csv.write_csv`` without a header, one object after the other,
   in a process of its own; timed on its own), then the same job and the same reference run
   on that CSV. Reported with and without the conversion.
3. **Memory**, in runs of their own: the PSS (``/proc/<pid>/smaps_rollup``) of the server and
   every process under it (zygote, instances) summed every 0.1 s during a job, peak reported,
   for ``--rows`` and for ``--memory-rows`` (rows ÷ 4 and rows x 4 by default: does the peak
   grow with the dataset?), beside the reference pool's peak and the dataset's size in memory
   (rows x features x 8 bytes, and a pandas DataFrame ``read_csv`` of it). Reading PSS that
   often costs the sampling thread 15 to 30 % of a core, so the throughput rounds read only
   CPU times, at their start and end (own and waited-for children's, by role; and the machine's
   other load).
4. **The Ray engine against Ray Data** (unless ``--skip-ray``): a loopback Ray cluster, a head
   and a worker node of 1 CPU each (``ray start --block``, each node pinned to a core of its own
   with ``taskset``, so that a node is one core, as on two one-core machines), a second
   ``shipway server`` with ``SHIPWAY_RAY_ADDRESS``, the same job with 2 instances of
   ``ml.c5.large`` (Ray reserves a node's 1 CPU per instance; its model server gets 1 thread,
   the node's one core); against [`ray_data.py`](ray_data.py): ``read_csv`` ->
   ``map_batches(callable class, concurrency=2, batch_size=rows of one 6 MiB payload)`` ->
   ``write_csv``, on the same cluster, timed after ``ray.init``. Alternating, median.

Shipway's side includes everything a job does (planning, starting its instances from the zygote
or on Ray, feeding, parts fsynced, outputs assembled); a warm-up job runs first on each server.

    .venv/bin/pip install -c constraints.txt -e ".[dev,bench]"  # Ray Data, pyarrow
    .venv/bin/python bench/batch/transform.py                 # 2M rows, 5 rounds: about 7 min
    .venv/bin/python bench/batch/transform.py --quick         # 100k rows, 1 round, under a minute
    .venv/bin/python bench/batch/transform.py --rows 500000 --rounds 2 --skip-ray

Prints markdown tables and writes every measurement to ``bench/batch/results-<time>.json``
(ignored by git). Exits with status 1 if a job failed or an output differed.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
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
    descendants,
    free_port,
    healthy,
    wait_until,
)

MODEL = "bench-hgb"
LOCAL_TYPE = "bench.1vcpu"
RAY_TYPE = "ml.c5.large"
INSTANCES = 2
PAYLOAD_MB = 6
POLL_SECONDS = 0.2
SAMPLE_SECONDS = 0.1
"""How often a memory run's sampler reads the PSS of every process under the measured one."""
TREE_SECONDS = 0.5
"""How often the sampler looks for new processes under the measured one (a scan of /proc).
Reading PSS every 0.1 s costs the sampler 15 to 30 % of a core with four large processes: it
would slow what it measures, so throughput runs read only CPU times, at their two ends."""
ROLE = "arn:aws:iam::000000000000:role/bench"
MIB = 1024 * 1024
CPUS = set(range(os.cpu_count() or 1))
TARGET_LOCAL = 0.95
TARGET_MEMORY_MIB = 1024
TARGET_RAY = 2.0


# --------------------------------------------------------------------------- memory and CPU


class Sampler:
    """In a thread, each process's CPU time (user + system) under a process and the process
    itself, by role; with ``memory``, also their PSS and RSS summed every 0.1 s, and the peak.
    The sampler's own CPU time is kept, to show what the sampling costs."""

    def __init__(
        self,
        root: int,
        roles: Callable[[int, int, str], str],
        memory: bool = False,
        rest: str = "instances",
        waited: bool = False,
    ) -> None:
        """``waited``: the root is this process's child and will have been waited for at the
        end; its CPU (and its children's) is then read from this process's children's."""
        self.root = root
        self.rest = rest
        self.waited = waited
        self.memory = memory
        self._roles = roles
        self.peak_pss_kib = 0
        self.peak_rss_kib = 0
        self.peak_by_role: dict[str, int] = {}
        self.samples = 0
        self.own_cpu_seconds = 0.0
        self.foreign_load = 0.0
        self.cpu_roles: dict[str, float] = {}
        self._cpu_before: dict[tuple[int, int], tuple[str, float, float]] = {}
        self._children_before = 0.0
        """Of the machine's CPU time during the run, the share used by processes neither
        measured nor this benchmark (other work on the machine disturbing the figure)."""
        self._ticks = (0, 0)
        self._self_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._ticks = core_ticks(CPUS)
        self._self_cpu = cpu_seconds("self")
        self._cpu_before = self._tree_cpu()
        self._children_before = _children_cpu()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        after = self._tree_cpu()
        busy, total = (a - b for a, b in zip(core_ticks(CPUS), self._ticks, strict=True))
        roles: dict[str, float] = {}
        for key, (role, own, _) in after.items():
            before = self._cpu_before.get(key, (role, 0.0, 0.0))
            roles[role] = roles.get(role, 0.0) + own - before[1]
        every = sum(v[2] for v in after.values()) - sum(v[2] for v in self._cpu_before.values())
        if self.waited:
            roles, every = {}, _children_cpu() - self._children_before
        # the rest of the tree's (instances, or the pool's workers), live or waited for
        named = {k: v for k, v in roles.items() if k in ("server", "zygote", "main")}
        self.cpu_roles = {**named, self.rest: every - sum(named.values())}
        ours = every + cpu_seconds("self") - self._self_cpu
        self.foreign_load = max(0.0, busy / CLOCK_TICKS - ours) / max(total / CLOCK_TICKS, 1e-9)

    def _tree_cpu(self) -> dict[tuple[int, int], tuple[str, float, float]]:
        """Per process of the tree: its role, its own CPU seconds, and those with its children
        it has waited for (an instance that exited is counted in its parent's)."""
        found = {}
        for pid, start, role in self._tree():
            own = _cpu_seconds(pid, start)
            if own is not None:
                found[(pid, start)] = (role, own, cpu_seconds(pid, children=True))
        return found

    def _run(self) -> None:
        if not self.memory:  # CPU times are read at both ends
            return
        started = time.thread_time()
        tree: list[tuple[int, int, str]] = []
        looked = 0.0
        while True:
            now = time.monotonic()
            if now - looked >= TREE_SECONDS:
                tree = self._tree()
                looked = now
            pss = rss = 0
            by_role: dict[str, int] = {}
            for pid, _, role in tree:
                memory = _memory_kib(pid)
                if memory is None:
                    continue
                pss += memory[0]
                rss += memory[1]
                by_role[role] = by_role.get(role, 0) + memory[0]
            self.samples += 1
            if pss > self.peak_pss_kib:
                self.peak_pss_kib, self.peak_by_role = pss, by_role
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            if self._stop.wait(SAMPLE_SECONDS):
                break
        self.own_cpu_seconds = time.thread_time() - started

    def _tree(self) -> list[tuple[int, int, str]]:
        root_start = _start_time(self.root)
        found = [(self.root, root_start or 0), *descendants(self.root)]
        return [(pid, start, self._roles(pid, start, _cmdline(pid))) for pid, start in found]

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds used during the run: the server's and the zygote's own, and the rest of
        the tree's (instances; for the reference: ``main`` and ``instances``, its workers),
        counted from each process's own and waited-for children's times at both ends."""
        return self.cpu_roles

    def summary(self) -> dict[str, Any]:
        if not self.memory:
            return {
                "samples": self.samples,
                "sampler_cpu_seconds": round(self.own_cpu_seconds, 3),
                "foreign_load": round(self.foreign_load, 3),
            }
        return {
            "peak_pss_mib": round(self.peak_pss_kib / 1024, 1),
            "peak_rss_mib": round(self.peak_rss_kib / 1024, 1),
            "peak_pss_by_role_mib": {k: round(v / 1024, 1) for k, v in self.peak_by_role.items()},
            "samples": self.samples,
            "sampler_cpu_seconds": round(self.own_cpu_seconds, 3),
            "foreign_load": round(self.foreign_load, 3),
        }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _memory_kib(pid: int) -> tuple[int, int] | None:
    """(PSS, RSS) of a process, KiB; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    pss = rss = 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
        elif line.startswith("Rss:"):
            rss = int(line.split()[1])
    return pss, rss


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _cpu_seconds(pid: int, start: int) -> float | None:
    fields = _stat(pid)
    if not fields or int(fields[19]) != start:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class ShipwayRoles:
    """Names the processes under a Shipway server: the server, the zygote (forks instances),
    instances (model servers, forked or spawned), and anything else."""

    def __init__(self, server: int) -> None:
        self.server = server
        self._known: dict[tuple[int, int], str] = {}

    def __call__(self, pid: int, start: int, cmdline: str) -> str:
        if (pid, start) in self._known:
            return self._known[(pid, start)]
        if pid == self.server:
            role = "server"
        elif "shipway.compute.zygote" in cmdline and _parent(pid) == self.server:
            role = "zygote"
        elif "shipway.compute.zygote" in cmdline or "shipway.serving" in cmdline:
            role = "instances"
        else:
            role = "other"
        self._known[(pid, start)] = role
        return role


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def reference_roles(pid: int, start: int, cmdline: str) -> str:
    return "workers" if "multiprocessing" in cmdline else "main"


# --------------------------------------------------------------------------- set-up


def python_env(src: Path | str, **extra: str) -> dict[str, str]:
    """This environment with ``src`` as the import path for Shipway (and ``extra``)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return env | {"PYTHONPATH": str(src)} | extra


def run_json(command: Sequence[str], env: dict[str, str], what: str) -> dict[str, Any]:
    """Run a helper script; its last line of output, as JSON."""
    done = subprocess.run(list(command), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def export_source(commit: str, workdir: Path) -> Path:
    """The ``src`` folder of a commit, exported (the working tree may hold others' changes)."""
    folder = workdir / "source"
    folder.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


class Server:
    """One ``shipway server`` (fresh home) with the model, and boto3's sagemaker client."""

    def __init__(
        self, procs: Processes, name: str, workdir: Path, src: Path | str, model: Path, **env: str
    ) -> None:
        import boto3
        from botocore.config import Config

        home = workdir / f"home-{name}"
        home.mkdir()
        (home / "instance-types.json").write_text(
            json.dumps(
                {
                    "instance_types": [
                        {"name": LOCAL_TYPE, "vcpus": 1, "memory_gib": 4, "price_per_hour": 0.05}
                    ]
                }
            )
        )
        port = free_port()
        command = [sys.executable, "-m", "shipway", "server", "--port", str(port)]
        self.process = procs.start(
            f"server-{name}", [*command, "--home", str(home)], python_env(src, **env)
        )
        self.url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: self.process.poll() is not None or healthy(self.url), 90, 0.1)
        except TimeoutError:
            raise RuntimeError(procs.log_tail(f"server-{name}")) from None
        if self.process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{procs.log_tail(f'server-{name}')}")
        call_json(
            self.url,
            "POST",
            "/api/models",
            {
                "ModelName": MODEL,
                "PrimaryContainer": {"Image": "sklearn", "ModelDataUrl": str(model)},
            },
        )
        self.sagemaker = boto3.client(
            "sagemaker",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 1}, read_timeout=120),
        )
        self.roles = ShipwayRoles(self.process.pid)
        self.warm_up: dict[str, Any] = {}
        self._jobs = 0

    def transform(
        self, source: Path, output: Path, instance_type: str, sample: str | None = "cpu"
    ) -> dict[str, Any]:
        """One transform job over the objects in ``source``; its timing, and with ``sample``
        its CPU (``"cpu"``) or also its memory (``"memory"``)."""
        self._jobs += 1
        name = f"bench-{self._jobs:03d}"
        sampler = Sampler(self.process.pid, self.roles, memory=sample == "memory")
        wall = time.time()
        started = time.monotonic()
        with sampler if sample else contextlib.nullcontext():
            self.sagemaker.create_transform_job(
                TransformJobName=name,
                ModelName=MODEL,
                BatchStrategy="MultiRecord",
                MaxPayloadInMB=PAYLOAD_MB,
                TransformInput={
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{source}/"}
                    },
                    "ContentType": "text/csv",
                    "SplitType": "Line",
                },
                TransformOutput={
                    "S3OutputPath": f"file://{output}",
                    "Accept": "text/csv",
                    "AssembleWith": "Line",
                },
                TransformResources={"InstanceType": instance_type, "InstanceCount": INSTANCES},
            )
            while True:
                job = self.sagemaker.describe_transform_job(TransformJobName=name)
                if job["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
                    seen = time.monotonic()
                    break
                time.sleep(POLL_SECONDS)
        described = call_json(self.url, "GET", f"/api/transform-jobs/{name}")
        created = job["CreationTime"].timestamp()
        start = job["TransformStartTime"].timestamp()
        end = job["TransformEndTime"].timestamp()
        return {
            "job": name,
            "status": job["TransformJobStatus"],
            "failure": job.get("FailureReason"),
            "seconds": seen - started,
            "create_to_end_seconds": end - wall,
            "start_to_end_seconds": end - start,
            "create_to_start_seconds": start - created,
            "records": (described.get("Progress") or {}).get("RecordsProcessed"),
            "progress": described.get("Progress"),
            "memory": sampler.summary() if sample else None,
            "cpu_seconds": sampler.cpu_by_role() if sample else None,
        }


# --------------------------------------------------------------------------- the reference


def reference(
    procs: Processes,
    model: Path,
    files: list[Path],
    out: Path,
    src: Path,
    run: int,
    memory: bool = False,
) -> dict[str, Any]:
    """The one-process limit over ``files`` (see reference.py); its timing and memory."""
    command = [
        sys.executable,
        str(HERE / "reference.py"),
        "--model",
        str(model / "model.joblib"),
        "--out",
        str(out),
        "--processes",
        str(INSTANCES),
        "--payload-mb",
        str(PAYLOAD_MB),
        *map(str, files),
    ]
    log = procs.workdir / f"reference-{run}.out"
    with log.open("wb") as stdout:
        process = procs.start(
            f"reference-{run}", command, python_env(src, OMP_NUM_THREADS="1"), stdout=stdout
        )
        sampler = Sampler(process.pid, reference_roles, memory, rest="pool", waited=True)
        with sampler:
            code = process.wait()
    if code != 0:
        raise RuntimeError(f"the reference failed:\n{procs.log_tail(f'reference-{run}')}")
    timing = json.loads(log.read_text().strip().splitlines()[-1])
    rows = sum(o["rows"] for o in timing["objects"])
    spent: dict[str, float] = {}
    for obj in timing["objects"]:
        for step, seconds in obj["seconds"].items():
            spent[step] = spent.get(step, 0.0) + seconds
    return {
        "rows": rows,
        "seconds": timing["ended"] - timing["ready"],
        "with_start_seconds": timing["ended"] - timing["started"],
        "start_seconds": timing["ready"] - timing["started"],
        "step_seconds": {k: round(v, 3) for k, v in spent.items()},
        "memory": sampler.summary(),
        "cpu_seconds": sampler.cpu_by_role(),
    }


def same_outputs(expected: Path, got: Path) -> list[str]:
    """The outputs that differ from the expected ones, byte for byte (or are missing)."""
    wrong = []
    for path in sorted(expected.glob("*.out")):
        other = got / path.name
        if not other.exists() or not filecmp.cmp(path, other, shallow=False):
            wrong.append(path.name)
    if extra := {p.name for p in got.glob("*.out")} - {p.name for p in expected.glob("*.out")}:
        wrong.extend(sorted(extra))
    return wrong


def convert_parquet(folder: Path, out: Path, src: Path) -> float:
    """Parquet objects to header-less CSV with pyarrow, one after the other; seconds."""
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "import pyarrow.csv, pyarrow.parquet\n"
        "source, out = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "out.mkdir(parents=True, exist_ok=True)\n"
        "options = pyarrow.csv.WriteOptions(include_header=False)\n"
        "started = time.perf_counter()\n"
        "for path in sorted(source.glob('*.parquet')):\n"
        "    table = pyarrow.parquet.read_table(path)\n"
        "    pyarrow.csv.write_csv(table, out / (path.stem + '.csv'), options)\n"
        "print(json.dumps({'seconds': time.perf_counter() - started}))\n"
    )
    result = run_json(
        [sys.executable, "-c", script, str(folder), str(out)], python_env(src), "conversion"
    )
    return float(result["seconds"])


# --------------------------------------------------------------------------- Ray


def start_ray(procs: Processes, src: Path) -> str:
    """A head and a worker node of 1 CPU each, each pinned to a core of its own; the
    address. Stopped with the other processes (by pid: ``ray stop`` would stop every Ray
    node on the machine)."""
    ray = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = python_env(src, RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
    common = ["--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    temp = Path(tempfile.mkdtemp(prefix="sw-ray-"))
    procs.start(
        "ray-head",
        ["taskset", "-c", "0", ray, "start", "--head", f"--port={port}",
         "--include-dashboard=false", f"--temp-dir={temp / 'head'}", *common],
        env,
    )  # fmt: skip
    wait_until(lambda: _listening(port), 60, 0.2)
    procs.start(
        "ray-worker",
        ["taskset", "-c", "1", ray, "start", f"--address={address}",
         f"--temp-dir={temp / 'worker'}", *common],
        env,
    )  # fmt: skip
    script = (
        "import sys, time, ray\n"
        "ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)\n"
        "deadline = time.monotonic() + 60\n"
        "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.monotonic() < deadline:\n"
        "    time.sleep(0.2)\n"
        "print(sum(n['Alive'] for n in ray.nodes()))\n"
    )
    alive = subprocess.run(
        [sys.executable, "-c", script, address], env=env, capture_output=True, text=True
    )
    if alive.stdout.strip().splitlines()[-1:] != ["2"]:
        raise RuntimeError(f"the Ray cluster did not come up: {alive.stderr[-2000:]}")
    return address


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ray_data(
    address: str, model: Path, files: list[Path], out: Path, batch: int, expected: Path, src: Path
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(HERE / "ray_data.py"),
        "--address",
        address,
        "--model",
        str(model / "model.joblib"),
        "--out",
        str(out),
        "--batch-size",
        str(batch),
        "--concurrency",
        str(INSTANCES),
        "--expected",
        str(expected),
        *map(str, files),
    ]
    return run_json(command, python_env(src, RAY_USAGE_STATS_ENABLED="0"), "Ray Data")


# --------------------------------------------------------------------------- the benchmark


def dataset(rows: int, files: int, folder: Path, src: Path, parquet: bool) -> dict[str, Any]:
    command = [sys.executable, str(HERE / "dataset.py"), "--rows", str(rows)]
    command += ["--files", str(files), "--csv", str(folder / "csv")]
    if parquet:
        command += ["--parquet", str(folder / "parquet")]
    return run_json(command, python_env(src), "the dataset")


def local_servers(
    procs: Processes, workdir: Path, src: Path, model: Path, warm: Path
) -> dict[str, Server]:
    """The server, after a warm-up job."""
    servers = {"shipway": Server(procs, "local", workdir, src, model)}
    for name, server in servers.items():
        run = server.transform(warm, workdir / f"warm-{name.replace(' ', '-')}", LOCAL_TYPE)
        server.warm_up = run
    return servers


def measure(args: argparse.Namespace, workdir: Path, src: Path) -> dict[str, Any]:
    procs = Processes(workdir)
    problems: list[str] = []
    model = workdir / "model"
    trained = run_json(
        [sys.executable, str(HERE / "dataset.py"), "--model", str(model)], python_env(src), "model"
    )
    data = workdir / "data"
    made = dataset(args.rows, args.files, data, src, parquet=True)
    made |= run_json(
        [sys.executable, str(HERE / "dataset.py"), "--frame", str(data / "csv")],
        python_env(src),
        "the DataFrame",
    )
    print(f"dataset: {json.dumps(made)}", file=sys.stderr)
    files = sorted((data / "csv").glob("*.csv"))
    warm = workdir / "warm"
    warm.mkdir()
    with files[0].open("rb") as head:
        (warm / "warm.csv").write_bytes(b"".join(head.readline() for _ in range(5000)))
    expected = workdir / "expected"
    result: dict[str, Any] = {"dataset": made, "model": trained, "rounds": [], "memory": []}
    try:
        servers = local_servers(procs, workdir, src, model, warm)
        result["variants"] = list(servers)
        result["warm_up"] = {name: server.warm_up for name, server in servers.items()}
        result["reference_warm_up"] = reference(procs, model, files, expected, src, 0)
        for number in range(1, args.rounds + 1):
            kinds = ["reference", *servers]
            shift = (number - 1) % len(kinds)
            order = kinds[shift:] + kinds[:shift]
            runs: dict[str, Any] = {}
            converted = workdir / f"r{number}-parquet-csv"
            for source in ("csv", "parquet"):
                if source == "parquet":
                    runs["conversion seconds"] = convert_parquet(data / "parquet", converted, src)
                folder = data / "csv" if source == "csv" else converted
                for kind in order:
                    out = workdir / f"r{number}-{kind.replace(' ', '-')}-{source}"
                    if kind == "reference":
                        inputs = sorted(folder.glob("*.csv"))
                        run = reference(procs, model, inputs, out, src, number)
                    else:
                        run = servers[kind].transform(folder, out, LOCAL_TYPE)
                    runs[f"{kind} {source}"] = run
                    problems += check(run, args.rows, f"round {number} {kind} {source}")
                    if wrong := same_outputs(expected, out):
                        problems.append(f"round {number} {kind} {source}: differ: {wrong}")
                    shutil.rmtree(out)
            shutil.rmtree(converted)
            result["rounds"].append(runs)
            print(f"round {number}: {round_line(runs, args.rows)}", file=sys.stderr)
        result["reference_memory"] = reference(
            procs, model, files, workdir / "memory-reference", src, 99, memory=True
        )
        shutil.rmtree(workdir / "memory-reference")
        for rows in sorted({*args.memory_rows, args.rows}):
            folder = data if rows == args.rows else workdir / f"memory-{rows}"
            size = made if rows == args.rows else dataset(rows, args.files, folder, src, False)
            item: dict[str, Any] = {"dataset": size}
            for name, server in servers.items():
                out = workdir / f"memory-{rows}-out"
                run = server.transform(folder / "csv", out, LOCAL_TYPE, sample="memory")
                problems += check(run, rows, f"memory run of {rows} rows, {name}")
                item[name] = run
                print(
                    f"memory {rows:,} rows, {name}: peak PSS "
                    f"{run['memory']['peak_pss_mib']:.0f} MiB, {rows / run['seconds']:,.0f} rows/s",
                    file=sys.stderr,
                )
                shutil.rmtree(out)
            result["memory"].append(item)
            if rows != args.rows:
                shutil.rmtree(folder)
        procs.stop_all()
        if not args.skip_ray:
            result["ray"] = measure_ray(args, procs, workdir, src, model, data, expected, problems)
    finally:
        procs.stop_all()
    result["problems"] = problems
    return result


def check(run: dict[str, Any], rows: int, where: str) -> list[str]:
    if run.get("status", "Completed") != "Completed":
        return [f"{where}: {run['status']} {run.get('failure')}"]
    if run.get("records", rows) != rows:
        return [f"{where}: {run['records']} records of {rows}"]
    return []


def measure_ray(
    args: argparse.Namespace,
    procs: Processes,
    workdir: Path,
    src: Path,
    model: Path,
    data: Path,
    expected: Path,
    problems: list[str],
) -> dict[str, Any]:
    address = start_ray(procs, src)
    server = Server(procs, "ray", workdir, src, model, SHIPWAY_RAY_ADDRESS=address)
    files = sorted((data / "csv").glob("*.csv"))
    row_bytes = sum(f.stat().st_size for f in files) / args.rows
    batch = int(PAYLOAD_MB * MIB / row_bytes)
    warm = server.transform(workdir / "warm", workdir / "ray-warm-out", RAY_TYPE, sample=None)
    rounds = []
    for number in range(1, args.rounds + 1):
        runs: dict[str, Any] = {}
        order = ("ray data", "shipway") if number % 2 else ("shipway", "ray data")
        for kind in order:
            out = workdir / f"ray-r{number}-{kind.replace(' ', '-')}"
            if kind == "ray data":
                runs[kind] = ray_data(address, model, files, out, batch, expected, src)
                if not runs[kind].get("equal"):
                    problems.append(
                        f"Ray round {number}: Ray Data's predictions differ "
                        f"(max {runs[kind].get('max_abs_difference')})"
                    )
            else:
                runs[kind] = server.transform(data / "csv", out, RAY_TYPE, sample=None)
                problems += check(runs[kind], args.rows, f"Ray round {number} shipway")
                if wrong := same_outputs(expected, out):
                    problems.append(f"Ray round {number} shipway: outputs differ: {wrong}")
            shutil.rmtree(out, ignore_errors=True)
        rounds.append(runs)
        print(
            f"ray round {number}: shipway {args.rows / runs['shipway']['seconds']:,.0f} rows/s, "
            f"ray data {args.rows / runs['ray data']['seconds']:,.0f} rows/s",
            file=sys.stderr,
        )
    return {"address": address, "batch_size": batch, "warm_up": warm, "rounds": rounds}


def round_line(runs: dict[str, Any], rows: int) -> str:
    parts = []
    for name, run in runs.items():
        if isinstance(run, dict):
            load = run["memory"]["foreign_load"]
            parts.append(f"{name} {rows / run['seconds']:,.0f} rows/s (foreign load {load:.0%})")
    return ", ".join(parts) + f", conversion {runs['conversion seconds']:.1f} s"


# --------------------------------------------------------------------------- the report


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summary(result: dict[str, Any], rows: int) -> dict[str, Any]:
    """Medians over the rounds; each ratio is the median of the rounds' own ratios."""
    rounds = result["rounds"]
    found: dict[str, Any] = {
        "conversion_seconds": _median([r["conversion seconds"] for r in rounds])
    }
    for source in ("csv", "parquet"):
        ref = [rows / r[f"reference {source}"]["seconds"] for r in rounds]
        ref_start = [rows / r[f"reference {source}"]["with_start_seconds"] for r in rounds]
        converted = [
            rows / (r[f"reference {source}"]["seconds"] + r["conversion seconds"]) for r in rounds
        ]
        found[f"reference {source}"] = {
            "rows_per_second": _median(ref),
            "with_start": _median(ref_start),
            "with_conversion": _median(converted),
        }
        for variant in result["variants"]:
            runs = [r[f"{variant} {source}"] for r in rounds]
            ship = [rows / run["seconds"] for run in runs]
            with_conversion = [
                rows / (run["seconds"] + r["conversion seconds"])
                for run, r in zip(runs, rounds, strict=True)
            ]
            found[f"{variant} {source}"] = {
                "rows_per_second": _median(ship),
                "ratio": _median([s / r for s, r in zip(ship, ref, strict=True)]),
                "ratio_with_start": _median([s / r for s, r in zip(ship, ref_start, strict=True)]),
                "server_side": _median([rows / run["start_to_end_seconds"] for run in runs]),
                "with_conversion": _median(with_conversion),
                "ratio_with_conversion": _median(
                    [s / r for s, r in zip(with_conversion, converted, strict=True)]
                ),
            }
    if "ray" in result:
        ray_rounds = result["ray"]["rounds"]
        ship = [rows / r["shipway"]["seconds"] for r in ray_rounds]
        data = [rows / r["ray data"]["seconds"] for r in ray_rounds]
        found["ray"] = {
            "shipway": _median(ship),
            "ray_data": _median(data),
            "ratio": _median([s / d for s, d in zip(ship, data, strict=True)]),
        }
    return found


LABELS = {
    "shipway": "Shipway",
}


def print_report(result: dict[str, Any], args: argparse.Namespace, src_commit: str) -> None:
    rows, made, s = args.rows, result["dataset"], result["summary"]
    print(
        f"\nMeasured on {datetime.now(UTC):%Y-%m-%d at %H:%M} UTC with "
        f"`{' '.join(['.venv/bin/python', 'bench/batch/transform.py', *sys.argv[1:]])}`, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, Shipway {src_commit}; "
        f"{rows:,} rows x {made['features']} features in {made['files']} objects "
        f"({made['csv_bytes'] / MIB:,.0f} MiB of CSV, {made.get('parquet_bytes', 0) / MIB:,.0f} "
        f"MiB of Parquet), {args.rounds} rounds (medians).\n"
    )

    def verdict(value: float, target: float, above: bool = True) -> str:
        return "met" if (value >= target if above else value < target) else "missed"

    print("| figure | Shipway | reference | Shipway ÷ reference | target |")
    print("|---|--:|--:|--:|---|")
    ref_csv, ref_pq = s["reference csv"], s["reference parquet"]
    for variant in result["variants"]:
        label = LABELS[variant]
        csv, pq = s[f"{variant} csv"], s[f"{variant} parquet"]
        print(
            f"| {label}: local engine, CSV, rows/s (create → Completed) | "
            f"{csv['rows_per_second']:,.0f} | {ref_csv['rows_per_second']:,.0f} | "
            f"{csv['ratio']:.3f} | ≥ {TARGET_LOCAL} {verdict(csv['ratio'], TARGET_LOCAL)} |"
        )
        print(
            f"| {label}: the same, the reference timed with its start (spawn, imports, model) | "
            f"{csv['rows_per_second']:,.0f} | {ref_csv['with_start']:,.0f} | "
            f"{csv['ratio_with_start']:.3f} | - |"
        )
        print(
            f"| {label}: CSV, rows/s (TransformStartTime → TransformEndTime) | "
            f"{csv['server_side']:,.0f} | {ref_csv['rows_per_second']:,.0f} | "
            f"{csv['server_side'] / ref_csv['rows_per_second']:.3f} | - |"
        )
        print(
            f"| {label}: Parquet-sourced CSV, rows/s (the job) | {pq['rows_per_second']:,.0f} | "
            f"{ref_pq['rows_per_second']:,.0f} | {pq['ratio']:.3f} | - |"
        )
        print(
            f"| {label}: Parquet-sourced CSV, rows/s (pyarrow conversion, "
            f"{s['conversion_seconds']:.1f} s, + the job) | {pq['with_conversion']:,.0f} | "
            f"{ref_pq['with_conversion']:,.0f} | {pq['ratio_with_conversion']:.3f} | - |"
        )
        ref_peak = result["reference_memory"]["memory"]["peak_pss_mib"]
        for item in result["memory"]:
            size, run = item["dataset"], item[variant]
            peak = run["memory"]["peak_pss_mib"]
            print(
                f"| {label}: peak PSS (server + zygote + instances), {size['rows']:,} rows "
                f"({size['csv_bytes'] / MIB:,.0f} MiB of CSV), MiB | {peak:,.0f} | "
                f"{ref_peak if size['rows'] == rows else '-'} | - | < {TARGET_MEMORY_MIB} "
                f"{verdict(peak, TARGET_MEMORY_MIB, above=False)} |"
            )
    if "ray" in s:
        ray = s["ray"]
        print(
            f"| Ray engine (2 x {RAY_TYPE}) vs Ray Data `map_batches`, CSV, rows/s | "
            f"{ray['shipway']:,.0f} | {ray['ray_data']:,.0f} | {ray['ratio']:.2f} | "
            f"≥ {TARGET_RAY} {verdict(ray['ratio'], TARGET_RAY)} |"
        )
    print(
        f"\nThe rows in memory: {made['float64_bytes'] / MIB:,.0f} MiB as float64, "
        f"{made['frame_bytes'] / MIB:,.0f} MiB as a pandas DataFrame (its read_csv raised the "
        f"process's peak RSS by {made['frame_peak_rss_growth_bytes'] / MIB:,.0f} MiB)."
    )
    print("\nMemory runs (PSS sampled every 0.1 s; peak by process kind, MiB):\n")
    print("| rows | run | rows/s | peak PSS | peak RSS | at the peak | sampler CPU s |")
    print("|--:|---|--:|--:|--:|---|--:|")
    for item in result["memory"]:
        size = item["dataset"]["rows"]
        for variant in result["variants"]:
            run, mem = item[variant], item[variant]["memory"]
            parts = ", ".join(
                f"{k} {v:.0f}" for k, v in sorted(mem["peak_pss_by_role_mib"].items())
            )
            print(
                f"| {size:,} | {LABELS[variant]} | {size / run['seconds']:,.0f} | "
                f"{mem['peak_pss_mib']:.0f} | {mem['peak_rss_mib']:.0f} | {parts} | "
                f"{mem['sampler_cpu_seconds']:.1f} |"
            )
    mem = result["reference_memory"]["memory"]
    parts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(mem["peak_pss_by_role_mib"].items()))
    print(
        f"| {rows:,} | reference (pool of 2) | - | {mem['peak_pss_mib']:.0f} | "
        f"{mem['peak_rss_mib']:.0f} | {parts} | {mem['sampler_cpu_seconds']:.1f} |"
    )
    print("\nEvery run (CPU seconds used meanwhile, by process; other processes' share):\n")
    print("| round | run | rows/s | seconds | CPU s | foreign load |")
    print("|---|---|--:|--:|---|--:|")
    for number, runs in enumerate(result["rounds"], start=1):
        for name, run in runs.items():
            if isinstance(run, dict):
                cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted(run["cpu_seconds"].items()))
                print(
                    f"| {number} | {name} | {rows / run['seconds']:,.0f} | "
                    f"{run['seconds']:.2f} | {cpu} | "
                    f"{run['memory']['foreign_load']:.0%} |"
                )
    steps = result["rounds"][0]["reference csv"]["step_seconds"]
    print(
        "\nThe reference's seconds per step, both workers together (round 1, CSV): "
        + ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
    )
    if "ray" in result:
        print("\nRay rounds (rows/s):\n")
        print("| round | Shipway Ray engine | Ray Data | ratio |")
        print("|---|--:|--:|--:|")
        for number, runs in enumerate(result["ray"]["rounds"], start=1):
            ship, data = rows / runs["shipway"]["seconds"], rows / runs["ray data"]["seconds"]
            print(f"| {number} | {ship:,.0f} | {data:,.0f} | {ship / data:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=8, help="input objects")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--memory-rows",
        help="comma-separated row counts of the memory runs besides --rows (rows/4,rows*4)",
    )
    parser.add_argument("--quick", action="store_true", help="100k rows, 1 round, no memory runs")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument(
        "--commit", help="measure this commit's src (git archive), not the working tree"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.rounds = 100_000, 1
        args.memory_rows = args.memory_rows or ""
    if args.memory_rows is None:
        args.memory_rows = f"{args.rows // 4},{args.rows * 4}"
    args.memory_rows = [int(n) for n in args.memory_rows.split(",") if n.strip()]
    if shutil.which("taskset") is None:
        sys.exit("taskset is not installed (apt-get install util-linux)")
    workdir = Path(tempfile.mkdtemp(prefix="shipway-bench-batch-"))
    src = export_source(args.commit, workdir) if args.commit else REPO / "src"
    described = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", args.commit or "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    dirty = (
        not args.commit
        and subprocess.run(
            ["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "src"]
        ).returncode
    )
    src_commit = f"commit {described}" + (" with uncommitted changes in src" if dirty else "")
    started = time.monotonic()
    result = measure(args, workdir, src)
    result["summary"] = summary(result, args.rows)
    print_report(result, args, src_commit)
    out = HERE / f"results-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    record = {"args": vars(args), "source": src_commit, "workdir": str(workdir), **result}
    record["seconds"] = time.monotonic() - started
    out.write_text(json.dumps(record, indent=1, default=str))
    print(f"\nwrote {out} ({record['seconds']:.0f} s in all)")
    if result["problems"]:
        print("\nPROBLEMS:\n" + "\n".join(result["problems"]), file=sys.stderr)
        sys.exit(1)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
