"""The ``ray`` batch engine: a transform job's instances are Ray actors on a cluster.

Used when ``SHIPWAY_RAY_ADDRESS`` is set (``pip install 'shipway[ray]'``; Ray is imported only
then). Each of ``TransformResources.InstanceCount`` actors is one instance of the job on some
node of the cluster (spread over the nodes, with the instance type's vCPUs reserved): it fetches
the model artifact itself, starts the same sandboxed model server as endpoints use (a
:class:`~shipway.batch.local.LocalEngine` of one instance, on its node) and transforms the shards
the server sends it, reading the input from the object store itself and handing back the part.
So the data flows from the store to the node that scores it; only outputs come back.

Shipway plans the shards and keeps their state; Ray only places the actors and carries calls,
which is why a job here runs at the speed of Ray core (measured at 81 to 93 % of one process per
core), not of Ray Data. The nodes need Shipway installed and the input, output and model URLs
reachable (an object store, or paths every node shares).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from shipway.batch.engine import ExecutionParameters
from shipway.batch.shards import InstanceLost, ShardInput, ShardResult, ShardWork
from shipway.domain.errors import ShipwayError
from shipway.domain.instance_types import InstanceTypeCatalog
from shipway.domain.transform_job import TransformJob

__all__ = ["RayEngine", "ShardActor"]

log = logging.getLogger(__name__)

NAMESPACE = "shipway"
STARTUP_TIMEOUT_SECONDS = 300.0


class ShardActor:
    """One instance of a transform job on a Ray node (the class Ray makes an actor of)."""

    def __init__(self, job_document: str, s3_endpoint_url: str | None) -> None:
        from shipway.domain.transform_job import TransformResources

        job = TransformJob.model_validate_json(job_document)
        resources = TransformResources(
            instance_type=job.transform_resources.instance_type, instance_count=1
        )
        self._job = job.model_copy(update={"transform_resources": resources})
        self._s3_endpoint_url = s3_endpoint_url
        self._folder = Path(tempfile.mkdtemp(prefix="shipway-batch-"))
        self._engine: Any = None

    async def start(self, startup_timeout: float) -> dict[str, Any]:
        from shipway.batch.local import LocalEngine
        from shipway.compute.local import LocalBackend
        from shipway.store.artifacts import ArtifactStore
        from shipway.store.locations import Locations
        from shipway.store.sources import SourcePolicy

        container = self._job.model.all_containers()[0]
        artifacts = ArtifactStore(self._folder / "artifacts", s3_endpoint_url=self._s3_endpoint_url)
        model_dir = await asyncio.to_thread(artifacts.fetch, container.model_data_url or "")
        backend = LocalBackend(self._folder / "logs", self._folder / "run", start_method="spawn")
        self._engine = LocalEngine(
            backend,
            InstanceTypeCatalog.load(),
            Locations(SourcePolicy(), s3_endpoint_url=self._s3_endpoint_url),
            startup_timeout=startup_timeout,
        )
        parameters = await self._engine.start(self._job, model_dir)
        return asdict(parameters)

    async def transform(self, work: ShardWork, shard: ShardInput) -> tuple[bytes, int]:
        """The shard's part (its bytes) and its record count."""
        part = self._folder / f"{uuid.uuid4().hex}.part"
        try:
            result = await self._engine.transform(work, shard, part)
            return await asyncio.to_thread(part.read_bytes), result.records
        finally:
            part.unlink(missing_ok=True)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def _connect(address: str) -> Any:
    """Ray, connected to the cluster at ``address`` (once per server process; blocking)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address=address,
            namespace=NAMESPACE,
            log_to_driver=False,
            configure_logging=False,
            include_dashboard=False,
        )
    return ray


class RayEngine:
    def __init__(
        self,
        address: str,
        catalog: InstanceTypeCatalog,
        *,
        s3_endpoint_url: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
    ) -> None:
        self._address = address
        self._catalog = catalog
        self._s3_endpoint_url = s3_endpoint_url
        self._startup_timeout = startup_timeout
        self._ray: Any = None
        self._actors: list[Any] = []
        self._in_flight: dict[int, int] = {}
        self._job: TransformJob | None = None
        self._replacing: set[asyncio.Task[None]] = set()

    async def start(self, job: TransformJob, model_dir: Path) -> ExecutionParameters:
        try:
            self._ray = await asyncio.to_thread(_connect, self._address)
        except ImportError:
            raise ShipwayError(
                "SHIPWAY_RAY_ADDRESS is set but Ray is not installed: pip install 'shipway[ray]'"
            ) from None
        except Exception as exc:
            message = f"could not reach the Ray cluster at {self._address}: {exc}"
            raise ShipwayError(message) from exc
        self._job = job
        count = job.transform_resources.instance_count
        started = await asyncio.gather(*(self._start_one() for _ in range(count)))
        self._actors = [actor for actor, _ in started]
        return started[0][1]

    def _cpus(self) -> float:
        """The instance type's vCPUs, as many as the largest node has at most (an unsized
        type, such as ``local``: one)."""
        job = self._job
        assert job is not None
        vcpus = self._catalog.get(job.transform_resources.instance_type).vcpus or 1
        nodes = [node for node in self._ray.nodes() if node["Alive"]]
        largest = max((node.get("Resources", {}).get("CPU", 0) for node in nodes), default=1)
        return float(min(vcpus, max(1, largest)))

    async def _start_one(self) -> tuple[Any, ExecutionParameters]:
        job = self._job
        assert job is not None
        ray = self._ray
        cpus = await asyncio.to_thread(self._cpus)
        actor_class = ray.remote(ShardActor)
        actor = actor_class.options(
            num_cpus=cpus, scheduling_strategy="SPREAD", max_concurrency=1000
        ).remote(job.model_dump_json(), self._s3_endpoint_url)
        try:
            parameters = await actor.start.remote(self._startup_timeout)
        except Exception as exc:
            ray.kill(actor)
            raise ShipwayError(f"the model server could not start on the cluster: {exc}") from exc
        self._in_flight[id(actor)] = 0
        return actor, ExecutionParameters(**parameters)

    def concurrency(self, per_instance: int) -> int:
        return max(1, len(self._actors)) * per_instance

    async def transform(self, work: ShardWork, shard: ShardInput, part: Path) -> ShardResult:
        while not self._actors:
            await asyncio.sleep(0.05)
        actor = min(self._actors, key=lambda a: self._in_flight.get(id(a), 0))
        self._in_flight[id(actor)] = self._in_flight.get(id(actor), 0) + 1
        try:
            data, records = await actor.transform.remote(work, shard)
        except self._ray.exceptions.RayActorError as exc:
            self._lose(actor)
            raise InstanceLost(f"its Ray actor died: {exc}") from None
        finally:
            self._in_flight[id(actor)] = self._in_flight.get(id(actor), 1) - 1
        await asyncio.to_thread(_write, part, data)
        return ShardResult(records, len(data))

    def _lose(self, actor: Any) -> None:
        if actor not in self._actors:
            return
        self._actors = [a for a in self._actors if a is not actor]
        log.warning("a Ray actor of the transform job died; starting another")
        task = asyncio.get_running_loop().create_task(self._replace())
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _replace(self) -> None:
        try:
            actor, _ = await self._start_one()
        except Exception:
            log.exception("could not replace a Ray actor of the transform job")
            return
        self._actors.append(actor)

    async def close(self) -> None:
        for task in list(self._replacing):
            task.cancel()
        actors, self._actors = self._actors, []
        if not actors:
            return
        results = await asyncio.gather(
            *(asyncio.wait_for(_awaitable(a.close.remote()), 30) for a in actors),
            return_exceptions=True,
        )
        for actor, result in zip(actors, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("a Ray actor did not close cleanly: %s", result)
            self._ray.kill(actor)


async def _awaitable(ref: Any) -> Any:
    return await ref


def _write(part: Path, data: bytes) -> None:
    with open(part, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
