"""Instance utilization metrics: CPUUtilization, MemoryUtilization and DiskUtilization of every
running instance, as SageMaker publishes them in the ``/aws/sagemaker/Endpoints`` namespace
(dimensions ``EndpointName`` and ``VariantName``, unit ``Percent``).

:class:`InstanceUsageSampler` reads every running instance's usage from the compute backend
(:mod:`shipway.compute.usage`) every ``interval`` seconds and writes one datapoint per instance
and metric into the metrics store. So, over any period, a variant's ``Average`` is the
per-instance average a target tracking policy on CPUUtilization tracks, its ``Maximum`` the
busiest instance's.

- CPUUtilization: CPU seconds per second since the instance's previous sample, x 100, summed
  over cores (an instance keeping two cores busy: 200). An instance's first sample has none (no
  previous reading), nor does a reading that went back (a process of the instance exited
  without anyone in the instance reaping it, taking its CPU time along).
- MemoryUtilization: memory in use as a percentage of the memory the instance may use (its
  instance type's, as the backend enforces it), or of the machine's when it has no limit (the
  ``local`` type).
- DiskUtilization: the share of the filesystem that holds the instances' scratch folders in use;
  the same for every instance of this machine, since they share it. One ``statvfs`` per sample.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shipway.compute.usage import Usage, machine_memory_bytes
from shipway.domain.clock import Clock
from shipway.monitor.metrics import MetricsStore
from shipway.periodic import Periodic

__all__ = ["INSTANCE_NAMESPACE", "InstanceUsageSampler", "SampledInstance"]

log = logging.getLogger(__name__)

INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"
PERCENT = "Percent"


@dataclass(frozen=True)
class SampledInstance:
    """A running instance, and the variant its datapoints are of."""

    instance_id: str
    endpoint_name: str
    variant_name: str


@dataclass(frozen=True)
class _Reading:
    cpu_seconds: float
    at: float
    """The clock's monotonic time of the reading."""


class InstanceUsageSampler:
    def __init__(
        self,
        metrics: MetricsStore,
        clock: Clock,
        *,
        instances: Callable[[], Iterable[SampledInstance]],
        usage: Callable[[], Mapping[str, Usage]],
        interval: float,
        disk_path: Path | None = None,
        machine_memory: int | None = None,
    ) -> None:
        """``instances`` lists the running instances; ``usage`` reads the backend's
        (``ComputeBackend.usage``), by instance id; ``disk_path`` is where the instances'
        scratch folders are (no DiskUtilization without it)."""
        self._metrics = metrics
        self._clock = clock
        self._instances = instances
        self._usage = usage
        self._interval = interval
        self._disk_path = disk_path
        self._machine_memory = machine_memory or machine_memory_bytes()
        self._previous: dict[str, _Reading] = {}
        self._periodic = Periodic("sampling instance usage", self.sample, interval)

    def sample(self) -> int:
        """Read every running instance once and write its datapoints; how many were written."""
        instances = {i.instance_id: i for i in self._instances()}
        readings = self._usage() if instances else {}
        now, at = self._clock.time(), self._clock.monotonic()
        disk = self._disk_percent() if readings else None
        written = 0
        previous, self._previous = self._previous, {}
        for instance_id, usage in readings.items():
            instance = instances.get(instance_id)
            if instance is None:
                continue  # the backend's, but not (or no longer) a known endpoint's
            dimensions = (
                ("EndpointName", instance.endpoint_name),
                ("VariantName", instance.variant_name),
            )
            reading = _Reading(usage.cpu_seconds, at)
            self._previous[instance_id] = reading
            before = previous.get(instance_id)
            if before is not None and at > before.at and usage.cpu_seconds >= before.cpu_seconds:
                cpu = (usage.cpu_seconds - before.cpu_seconds) / (at - before.at) * 100.0
                self._put("CPUUtilization", dimensions, cpu, now)
                written += 1
            limit = usage.memory_limit or self._machine_memory
            self._put("MemoryUtilization", dimensions, usage.memory_bytes / limit * 100.0, now)
            written += 1
            if disk is not None:
                self._put("DiskUtilization", dimensions, disk, now)
                written += 1
        return written

    def _put(
        self, name: str, dimensions: tuple[tuple[str, str], ...], value: float, now: float
    ) -> None:
        self._metrics.put(name, dimensions, value, now, unit=PERCENT, namespace=INSTANCE_NAMESPACE)

    def _disk_percent(self) -> float | None:
        if self._disk_path is None:
            return None
        try:
            found = os.statvfs(self._disk_path)
        except OSError:
            return None
        if not found.f_blocks:
            return None
        # as df: used over what non-root users may use (used + available)
        used = found.f_blocks - found.f_bfree
        usable = used + found.f_bavail
        return used / usable * 100.0 if usable else None

    def forget(self, endpoint_name: str, variant_names: Iterable[str] | None = None) -> None:
        """The endpoint (``variant_names`` None) or these variants of it are gone: retire
        their series, as the router retires their invocation metrics."""
        if variant_names is None:
            self._metrics.retire({"EndpointName": endpoint_name}, INSTANCE_NAMESPACE)
        for variant_name in variant_names or ():
            self._metrics.retire(
                {"EndpointName": endpoint_name, "VariantName": variant_name}, INSTANCE_NAMESPACE
            )

    async def start(self) -> None:
        await self._periodic.start()

    async def close(self) -> None:
        """Stop after the sample under way, if any."""
        await self._periodic.close()
