"""What the benchmarks share: starting and stopping their processes, pinned to cores, and reading
the CPU time those processes and cores use, from /proc (Linux only).

The benchmark scripts are run as files (``python bench/realtime/run.py``), not as a package: each
puts ``bench/`` on ``sys.path`` and imports this module as ``harness``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
"""Clock ticks per second, the unit of the CPU times in /proc."""


# --------------------------------------------------------------------------- processes


class Processes:
    """Every process the benchmark starts; all of them are stopped on exit, whatever happens.

    Each runs in its own session (a Ctrl-C at the terminal reaches only the benchmark script, which
    then stops them). Shipway's instances run in sessions of their own too, so the descendants of
    each process are recorded when stopping it and killed by pid if they outlive it.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._started: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, command: Sequence[str], env: dict[str, str], **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` with its output in ``workdir/<name>.log``; ``kwargs`` go to Popen
        and may override its standard streams."""
        log = (self.workdir / f"{name}.log").open("wb")
        with log:
            options: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": log,
                                       "stderr": subprocess.STDOUT, **kwargs}  # fmt: skip
            process = subprocess.Popen(list(command), env=env, start_new_session=True, **options)
        self._started.append(process)
        return process

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self, grace: float = 20.0) -> None:
        found = [d for p in self._started for d in descendants(p.pid)]
        for process in self._started:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self._started:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for pid, started in found:
            while _start_time(pid) == started and time.monotonic() < deadline:
                time.sleep(0.05)
            if _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._started.clear()


def descendants(root: int) -> list[tuple[int, int]]:
    """(pid, start time) of every live descendant of ``root``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[tuple[int, int]] = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        if (started := _start_time(pid)) is not None:
            found.append((pid, started))
        pending.extend(children.get(pid, []))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- CPU time


def cpu_seconds(pid: int | str, children: bool = False) -> float:
    """User + system CPU time of a process (``pid`` or ``"self"``), and with ``children`` that of
    its children it has waited for; 0 if it is gone."""
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def parse_cpus(spec: str) -> set[int]:
    """The CPUs of a taskset list such as ``0``, ``0,2`` or ``0-3``."""
    cpus: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def core_ticks(cpus: set[int]) -> tuple[int, int]:
    """(busy, total) clock ticks of these CPUs since boot, from /proc/stat."""
    busy = total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def _start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


# --------------------------------------------------------------------------- Shipway


_TRAIN = """
import sys
import joblib
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

x, y = load_breast_cancer(return_X_y=True)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
joblib.dump(model, sys.argv[1])
"""


def train_model(folder: Path) -> Path:
    """The benchmarks' model: StandardScaler + LogisticRegression on breast_cancer (30
    features), saved with joblib as ``folder/model.joblib``; the folder. Trained in a process
    of its own: a benchmark that held scikit-learn would share its pages with the processes it
    measures, and flatter their memory."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", _TRAIN, str(folder / "model.joblib")], check=True)
    return folder


def call_json(url: str, method: str, path: str, body: Any = None) -> Any:
    """One request to a Shipway server's REST API (a fresh connection); its JSON answer."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, data, {"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read()
    finally:
        connection.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {text[:300]!r}")
    return json.loads(text) if text else None


def healthy(url: str) -> bool:
    """Whether the server answers ``/healthz``."""
    try:
        call_json(url, "GET", "/healthz")
    except (OSError, RuntimeError):
        return False
    return True


def wait_until(condition: Callable[[], bool], timeout: float, poll: float = 0.02) -> float:
    """Seconds until ``condition()`` holds (polled every ``poll``); TimeoutError after
    ``timeout``."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"not within {timeout} s")
        time.sleep(poll)
    return time.perf_counter() - started


def pss_kib(pids: Sequence[int]) -> int:
    """Proportional set size of these processes together (``/proc/<pid>/smaps_rollup``), KiB;
    a process gone meanwhile counts 0."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))
    return total
