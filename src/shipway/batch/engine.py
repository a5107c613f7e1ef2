"""The engine interface: where a transform job's model servers run and its shards are sent.

Both engines run the job's model in the same model server as endpoints do (one inference path)
and transform shards with the same code (:func:`~shipway.batch.shards.transform_shard`); they
differ in where: the ``local`` engine starts instances as processes of this machine and feeds
them from the server; the ``ray`` engine runs each instance in a Ray actor on the cluster, which
feeds its own model server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shipway.batch.shards import ShardInput, ShardResult, ShardWork
from shipway.domain.transform_job import BatchStrategy, TransformJob

__all__ = ["Engine", "ExecutionParameters"]


@dataclass(frozen=True)
class ExecutionParameters:
    """What a job's model server asks for (``GET /execution-parameters``) where the job left
    it to the container; None where it said nothing."""

    max_concurrent_transforms: int | None = None
    batch_strategy: BatchStrategy | None = None
    max_payload_in_mb: int | None = None


class Engine(Protocol):
    async def start(self, job: TransformJob, model_dir: Path) -> ExecutionParameters:
        """Start the job's instances (``TransformResources.InstanceCount``) and wait until
        they answer; what their container asks for."""
        ...

    def concurrency(self, per_instance: int) -> int:
        """How many shards may be transformed at once with ``per_instance`` requests in
        flight per instance."""
        ...

    async def transform(self, work: ShardWork, shard: ShardInput, part: Path) -> ShardResult:
        """Transform one shard into ``part``; :class:`~shipway.batch.shards.InstanceLost`
        when the instance went away (the shard may run again)."""
        ...

    async def close(self) -> None:
        """Stop every instance of the job."""
        ...
