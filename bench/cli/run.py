"""CLI start-time benchmark: how long ``shipway`` commands take, against ``python -c pass``.

A command line is used interactively, so its start time is most of what a user waits for. The
benchmark starts ``shipway server --demo`` (one endpoint, ``demo``, serving a small model) and
times, each as a fresh process:

- ``python -c pass``: the reference, the interpreter starting and stopping;
- ``shipway --help``;
- ``shipway models list``, ``shipway endpoints describe demo``: one or two REST calls;
- ``shipway invoke demo``: one invocation (JSON body, its content type inferred).

Each round runs every command once, in turn (so each figure has its reference measured next to
it); the table gives the median over the rounds of the wall time and of the CPU time (user +
system) the process used, and the ratio of each to ``python -c pass``'s. Commands run as
``python -m shipway`` (what the ``shipway`` console script runs, too).

    .venv/bin/python bench/cli/run.py              # 25 rounds, about 40 s
    .venv/bin/python bench/cli/run.py --rounds 5   # quicker
    .venv/bin/python bench/cli/run.py --baseline 26ac79e   # also the CLI at that commit

With ``--baseline REV`` every ``shipway`` command is also timed from a git worktree of that
commit (through ``PYTHONPATH``), in the same rounds, against the same server.

Prints a markdown table and writes every measurement to ``bench/results/cli-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# run as a script: put bench/ on the import path for the helpers the benchmarks share
sys.path.insert(0, str(HERE.parent))

from harness import Processes, free_port  # noqa: E402  (needs the sys.path entry above)

RESULTS = HERE.parent / "results"
TARGET_SECONDS = 0.3
BODY = json.dumps([[1.0] * 30])
"""One row of the demo model's 30 features."""


@dataclass(frozen=True)
class Command:
    label: str
    args: tuple[str, ...]
    """Arguments after ``python``; empty for the reference."""
    version: str = "current"


@dataclass
class Timing:
    label: str
    version: str
    round: int
    wall_seconds: float
    cpu_seconds: float


def commands(url: str) -> list[Command]:
    shipway = ("-m", "shipway", "--url", url)
    return [
        Command("python -c pass", ("-c", "pass"), version="-"),
        Command("shipway --help", ("-m", "shipway", "--help")),
        Command("shipway models list", (*shipway, "models", "list")),
        Command("shipway endpoints describe demo", (*shipway, "endpoints", "describe", "demo")),
        Command("shipway invoke demo --body ...", (*shipway, "invoke", "demo", "--body", BODY)),
    ]


def run_once(command: Command, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``command`` (which must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *command.args], env=env, capture_output=True, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(
            f"{command.label} ({command.version}) exited {result.returncode}: "
            f"{result.stderr.decode(errors='replace')}"
        )
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A detached git worktree of ``rev``, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="shipway-bench-cli-")) / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), rev],
        check=True,
        capture_output=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder.parent, ignore_errors=True)


def wait_in_service(url: str, name: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/endpoints/{name}", timeout=5) as answer:
                if json.load(answer).get("EndpointStatus") == "InService":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"endpoint {name} is not InService after {timeout:g} s")


@dataclass(frozen=True)
class Row:
    """One command (at one version): medians over the rounds, and ratios to the reference's."""

    command: str
    version: str
    runs: int
    wall_ms: float
    wall_p90_ms: float
    cpu_ms: float
    wall_ratio: float
    cpu_ratio: float


def summarize(timings: Sequence[Timing]) -> list[Row]:
    keys = list(dict.fromkeys((t.label, t.version) for t in timings))
    reference = [t for t in timings if t.version == "-"]
    ref_wall = statistics.median(t.wall_seconds for t in reference)
    ref_cpu = statistics.median(t.cpu_seconds for t in reference)
    rows: list[Row] = []
    for label, version in keys:
        mine = [t for t in timings if (t.label, t.version) == (label, version)]
        walls = sorted(t.wall_seconds for t in mine)
        wall = statistics.median(walls)
        cpu = statistics.median(t.cpu_seconds for t in mine)
        rows.append(
            Row(
                command=label,
                version=version,
                runs=len(mine),
                wall_ms=wall * 1000,
                wall_p90_ms=walls[int(0.9 * (len(walls) - 1))] * 1000,
                cpu_ms=cpu * 1000,
                wall_ratio=wall / ref_wall,
                cpu_ratio=cpu / ref_cpu if ref_cpu else float("nan"),
            )
        )
    return rows


def table(rows: Sequence[Row]) -> str:
    limit = TARGET_SECONDS * 1000
    lines = [
        "| command | version | wall ms (median) | wall ms (p90) | CPU ms | wall ÷ python -c pass "
        f"| target (< {limit:.0f} ms) |",
        "|---|---|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        target = "-" if row.version == "-" else ("met" if row.wall_ms < limit else "missed")
        lines.append(
            f"| `{row.command}` | {row.version} | {row.wall_ms:.0f} | {row.wall_p90_ms:.0f} | "
            f"{row.cpu_ms:.0f} | {row.wall_ratio:.1f}x | {target} |"
        )
    return "\n".join(lines)


def measure(args: argparse.Namespace, baseline: Path | None) -> list[Timing]:
    workdir = Path(tempfile.mkdtemp(prefix="shipway-bench-cli-"))
    procs = Processes(workdir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    env.pop("SHIPWAY_TOKEN", None)
    try:
        home = workdir / "home"
        server = ["-m", "shipway", "server", "--port", str(port), "--home", str(home), "--demo"]
        procs.start("server", [sys.executable, *server], env)
        wait_in_service(url, "demo")
        plan = commands(url)
        if baseline is not None:
            plan += [
                Command(c.label, c.args, version=args.baseline)
                for c in plan
                if c.version == "current"
            ]
        environments = {
            "current": env,
            "-": env,
            args.baseline: {**env, "PYTHONPATH": str(baseline / "src")} if baseline else env,
        }
        for command in plan:  # warm the page cache and the server
            run_once(command, environments[command.version])
        timings: list[Timing] = []
        for n in range(args.rounds):
            for command in plan:
                wall, cpu = run_once(command, environments[command.version])
                timings.append(Timing(command.label, command.version, n, wall, cpu))
    except Exception:
        print(f"--- server.log\n{procs.log_tail('server', lines=30)}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)  # kept when the run failed, to read its logs
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=25, help="rounds (default 25)")
    parser.add_argument("--baseline", help="also time the CLI at this git revision")
    parser.add_argument("--out", type=Path, help="JSON results file (default bench/results/)")
    args = parser.parse_args(argv)
    if args.baseline:
        with worktree(args.baseline) as tree:
            timings = measure(args, tree)
    else:
        timings = measure(args, None)
    rows = summarize(timings)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    now = datetime.now(UTC)
    out = args.out or RESULTS / f"cli-{now:%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "time": now.isoformat(),
                "commit": commit,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "rounds": args.rounds,
                "summary": [asdict(row) for row in rows],
                "timings": [asdict(t) for t in timings],
            },
            indent=2,
        )
    )
    print(
        f"\nCLI start time, median of {args.rounds} rounds, at commit {commit}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {now:%Y-%m-%d %H:%M} UTC\n"
    )
    print(table(rows))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
