"""Instance utilization metrics: CPU, memory and disk of each instance into the metrics store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipway.compute.usage import InstanceProcesses, Usage, read_usage
from shipway.domain.clock import ManualClock, SystemClock
from shipway.monitor import instance_usage
from shipway.monitor.instance_usage import INSTANCE_NAMESPACE, InstanceUsageSampler, SampledInstance
from shipway.monitor.metrics import MetricsStore

GIB = 1024**3
MIB = 1024**2
VARIANT = {"EndpointName": "ep", "VariantName": "v"}


def stat(
    metrics: MetricsStore,
    name: str,
    statistic: str,
    start: float,
    end: float,
    dimensions: Mapping[str, str] = VARIANT,
) -> list[float]:
    points = metrics.query(
        name,
        dimensions,
        start=start,
        end=end,
        period=int(end - start),
        statistic=statistic,
        namespace=INSTANCE_NAMESPACE,
        unit="Percent",
    )
    return [p.value for p in points]


class Readings:
    """The backend's usage, as the test sets it (the one boundary the sampler has)."""

    def __init__(self) -> None:
        self.now: dict[str, Usage] = {}

    def __call__(self) -> Mapping[str, Usage]:
        return dict(self.now)


def test_cpu_is_the_rate_since_the_previous_sample_summed_over_cores() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    metrics = MetricsStore()
    readings = Readings()
    instances = [
        SampledInstance("a", "ep", "v"),
        SampledInstance("b", "ep", "v"),
    ]
    sampler = InstanceUsageSampler(
        metrics, clock, instances=lambda: instances, usage=readings, interval=1.0
    )
    t0 = clock.time()
    readings.now = {"a": Usage(10.0, 1 * GIB, 4 * GIB), "b": Usage(100.0, 2 * GIB, 4 * GIB)}
    assert sampler.sample() == 2  # memory only: no previous CPU reading
    assert stat(metrics, "CPUUtilization", "SampleCount", t0, t0 + 1) == []
    clock.advance(2.0)
    readings.now = {
        "a": Usage(11.0, 1 * GIB, 4 * GIB),  # 0.5 cores
        "b": Usage(103.0, 2 * GIB, 4 * GIB),  # 1.5 cores
    }
    assert sampler.sample() == 4
    window = (t0, t0 + 3)
    assert stat(metrics, "CPUUtilization", "Average", *window) == [pytest.approx(100.0)]
    assert stat(metrics, "CPUUtilization", "Maximum", *window) == [pytest.approx(150.0)]
    assert stat(metrics, "CPUUtilization", "Minimum", *window) == [pytest.approx(50.0)]
    # each sample of each instance is one datapoint: Average is the per-instance average
    assert stat(metrics, "MemoryUtilization", "Average", *window) == [pytest.approx(37.5)]
    assert stat(metrics, "MemoryUtilization", "SampleCount", *window) == [4.0]


def test_a_reading_that_went_back_and_an_unknown_instance_give_nothing() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    metrics = MetricsStore()
    readings = Readings()
    sampler = InstanceUsageSampler(
        metrics,
        clock,
        instances=lambda: [SampledInstance("a", "ep", "v")],
        usage=readings,
        interval=1.0,
    )
    t0 = clock.time()
    readings.now = {"a": Usage(10.0, GIB // 2), "stray": Usage(1.0, GIB)}
    assert sampler.sample() == 1
    clock.advance(1.0)
    readings.now = {"a": Usage(9.0, GIB // 2)}  # a child exited unreaped: its time went along
    assert sampler.sample() == 1
    clock.advance(1.0)
    readings.now = {"a": Usage(9.5, GIB // 2)}  # measured again from the lower reading
    assert sampler.sample() == 2
    assert stat(metrics, "CPUUtilization", "Sum", t0, t0 + 3) == [pytest.approx(50.0)]
    assert metrics.series(INSTANCE_NAMESPACE, EndpointName="stray") == []


def test_memory_of_an_instance_without_a_limit_is_of_the_machine() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    metrics = MetricsStore()
    sampler = InstanceUsageSampler(
        metrics,
        clock,
        instances=lambda: [SampledInstance("a", "ep", "v")],
        usage=lambda: {"a": Usage(0.0, 2 * GIB)},
        interval=1.0,
        machine_memory=8 * GIB,
    )
    t0 = clock.time()
    sampler.sample()
    assert stat(metrics, "MemoryUtilization", "Average", t0, t0 + 1) == [pytest.approx(25.0)]


def test_disk_is_the_share_in_use_of_the_filesystem_of_the_scratch_folders(
    tmp_path: Path,
) -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    metrics = MetricsStore()
    kwargs = {
        "instances": lambda: [SampledInstance("a", "ep", "v")],
        "usage": lambda: {"a": Usage(0.0, GIB, 4 * GIB)},
        "interval": 1.0,
    }
    t0 = clock.time()
    InstanceUsageSampler(metrics, clock, disk_path=tmp_path, **kwargs).sample()  # type: ignore[arg-type]
    (disk,) = stat(metrics, "DiskUtilization", "Average", t0, t0 + 1)
    assert 0.0 < disk <= 100.0
    other = MetricsStore()
    InstanceUsageSampler(other, clock, **kwargs).sample()  # type: ignore[arg-type]
    assert stat(other, "DiskUtilization", "Average", t0, t0 + 1) == []


@pytest.fixture
def busy() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-c", "b = bytearray(100 * 1024 * 1024)\nwhile True: b[0] = 1"],
        start_new_session=True,
    )
    yield process
    process.kill()
    process.wait()


def test_a_real_busy_instance_is_about_100_percent_cpu(busy: subprocess.Popen[bytes]) -> None:
    """The sampler over the real kernel readings (compute/usage.py) of a process in a loop."""
    metrics = MetricsStore()
    sampler = InstanceUsageSampler(
        metrics,
        SystemClock(),
        instances=lambda: [SampledInstance("busy", "ep", "v")],
        usage=lambda: read_usage({"busy": InstanceProcesses(busy.pid, memory_limit=GIB)}),
        interval=1.0,
    )
    start = time.time()
    time.sleep(0.3)  # started and allocated
    sampler.sample()
    time.sleep(1.0)
    sampler.sample()
    end = time.time() + 1
    (cpu,) = stat(metrics, "CPUUtilization", "Average", start, end)
    assert 15.0 <= cpu <= 110.0  # the cores are shared with other tests: up to one of them
    (memory,) = stat(metrics, "MemoryUtilization", "Minimum", start, end)
    assert memory >= 100 * MIB / GIB * 100


def test_the_sampling_task_writes_every_interval_and_never_dies() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    metrics = MetricsStore()
    calls = 0

    def usage() -> Mapping[str, Usage]:
        nonlocal calls
        calls += 1
        clock.advance(1.0)
        if calls == 2:
            raise OSError("a backend that failed once")
        return {"a": Usage(float(calls), GIB, 4 * GIB)}

    sampler = InstanceUsageSampler(
        metrics,
        clock,
        instances=lambda: [SampledInstance("a", "ep", "v")],
        usage=usage,
        interval=0.01,
    )
    t0 = clock.time()

    async def main() -> None:
        await sampler.start()
        deadline = time.monotonic() + 5
        while calls < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await sampler.close()
        await sampler.close()  # a second close is harmless

    asyncio.run(main())
    assert calls >= 5
    assert stat(metrics, "MemoryUtilization", "SampleCount", t0, t0 + 60) == [calls - 1]


def test_exports() -> None:
    assert sorted(instance_usage.__all__) == [
        "INSTANCE_NAMESPACE",
        "InstanceUsageSampler",
        "SampledInstance",
    ]


def test_a_gone_variant_or_endpoint_leaves_prometheus() -> None:
    """As the router retires a removed variant's invocation metrics, the sampler retires its
    utilization series: /metrics stops showing them."""
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    metrics = MetricsStore()
    sampler = InstanceUsageSampler(
        metrics,
        clock,
        instances=lambda: [SampledInstance("a", "ep", "v"), SampledInstance("b", "ep", "w")],
        usage=lambda: {"a": Usage(0.0, GIB), "b": Usage(0.0, GIB)},
        interval=1.0,
        machine_memory=8 * GIB,
    )
    sampler.sample()

    def shown() -> set[str]:
        return {
            sample.labels["variant_name"]
            for family in metrics.collector().collect()
            for sample in family.samples
            if "variant_name" in sample.labels
        }

    assert shown() == {"v", "w"}
    sampler.forget("ep", ["v"])
    assert shown() == {"w"}
    sampler.forget("ep")
    assert shown() == set()
