"""Instance: one running model server hosting one variant's model, and its lifecycle."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

__all__ = ["Instance", "InstanceStatus"]


class InstanceStatus(StrEnum):
    STARTING = "Starting"
    """Process started; loading the model, not yet answering /ping."""
    IN_SERVICE = "InService"
    """Healthy: the router may send it requests."""
    DRAINING = "Draining"
    """Taken out of routing; finishing its in-flight requests before it stops."""
    STOPPED = "Stopped"
    FAILED = "Failed"
    """Exited, or never became healthy; ``failure_reason`` says why."""


@dataclass(frozen=True)
class Instance:
    instance_id: str
    endpoint_name: str
    variant_name: str
    instance_type: str
    model_name: str
    generation: int
    """The endpoint generation (config version) this instance was started for."""
    status: InstanceStatus = InstanceStatus.STARTING
    address: str = ""
    """Where the router reaches it: ``http://127.0.0.1:PORT`` or ``unix:/path.sock``."""
    pid: int | None = None
    started_at: float = 0.0
    failure_reason: str | None = None
    failed_at: float = 0.0
    """When it failed (epoch seconds)."""
    consecutive_ping_failures: int = field(default=0, compare=False)

    @property
    def live(self) -> bool:
        return self.status in (InstanceStatus.STARTING, InstanceStatus.IN_SERVICE)

    def with_status(self, status: InstanceStatus, reason: str | None = None) -> Instance:
        return replace(self, status=status, failure_reason=reason or self.failure_reason)
