"""The compute backend interface: start, stop and watch instances, wherever they run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shipway.compute.usage import Usage
from shipway.domain.instance_types import InstanceType

__all__ = ["ComputeBackend", "InstanceSpec", "StartedInstance"]


@dataclass(frozen=True)
class InstanceSpec:
    """What to run: one model server for one variant's model."""

    instance_id: str
    model_name: str
    runtime: str
    """The runtime's import string (``shipway.serving.runtimes.sklearn:SklearnRuntime``)."""
    model_dir: Path
    instance_type: InstanceType
    environment: dict[str, str] = field(default_factory=dict)
    max_batch_size: int = 64
    max_batch_delay_ms: float = 0.0
    network_isolation: bool = False
    """The model's ``EnableNetworkIsolation``: no network, whatever the server allows."""
    predict_timeout_seconds: float | None = None
    """A request in flight longer than this means the model is hung: the instance stops
    itself (and is replaced) rather than keep every later request waiting."""


@dataclass(frozen=True)
class StartedInstance:
    address: str
    """Where the router reaches it: ``unix:/path.sock`` or ``http://host:port``."""
    port: int | None
    """The TCP port of its container contract (``/ping``, ``/invocations``), when it has one."""
    pid: int | None


class ComputeBackend(Protocol):
    def prestart(self, runtimes: Iterable[str]) -> None:
        """Get ready to start instances of these runtimes fast (names, images or import
        strings); returns at once. Idempotent; a backend with nothing to prepare does nothing."""
        ...

    def warming(self, runtime: str) -> bool:
        """Whether an instance of ``runtime`` (an import string) would start faster, and
        share more memory, if started a moment later (its zygote is still importing)."""
        ...

    async def zygotes_ready(self, timeout: float) -> None:
        """Until what :meth:`prestart` began is ready (or ``timeout`` seconds have passed)."""
        ...

    async def start(self, spec: InstanceSpec) -> StartedInstance:
        """Start an instance; return as soon as it is started (it loads its model after)."""
        ...

    async def stop(self, instance_id: str, grace_seconds: float) -> None:
        """Stop gracefully (SIGTERM), forcibly after ``grace_seconds``; forget the instance."""
        ...

    def exit_reason(self, instance_id: str) -> str | None:
        """Why the instance is gone if it has exited or was never known, else None."""
        ...

    def log_path(self, instance_id: str) -> Path | None:
        """Where the instance's output (its model's log and tracebacks) goes, if in a file."""
        ...

    def usage(self) -> dict[str, Usage]:
        """CPU time and memory of each running instance, by instance id (unreadable ones left
        out); called from a worker thread."""
        ...

    async def close(self, grace_seconds: float) -> None:
        """Stop every instance this backend started."""
        ...
