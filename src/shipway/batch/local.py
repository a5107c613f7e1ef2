"""The ``local`` batch engine: the job's instances are model-server processes on this machine
(the same compute backend, sandbox and zygotes as endpoints' instances), fed by the server.

Each request goes to the instance with the fewest requests in flight. An instance that dies
(its connection refused or lost) is replaced, and the shard it was working on runs again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from shipway.batch.engine import ExecutionParameters
from shipway.batch.shards import (
    InstanceLost,
    RequestFailed,
    ShardInput,
    ShardResult,
    ShardWork,
    transform_shard,
)
from shipway.compute.backend import ComputeBackend, InstanceSpec
from shipway.domain.errors import ShipwayError
from shipway.domain.instance_types import InstanceTypeCatalog
from shipway.domain.transform_job import BatchStrategy, TransformJob
from shipway.router.upstream import (
    ConnectFailed,
    ConnectionLost,
    Upstream,
    UpstreamError,
    UpstreamTimeout,
)
from shipway.serving.runtime import resolve_runtime
from shipway.store.locations import Locations

__all__ = ["LocalEngine", "batch_environment"]

log = logging.getLogger(__name__)

PING_SECONDS = 0.05
STOP_GRACE_SECONDS = 5.0


def batch_environment(job: TransformJob) -> dict[str, str]:
    """The container's environment for a job: its own, the job's ``Environment``, and the
    ``SAGEMAKER_BATCH*`` variables SageMaker sets for batch containers."""
    container = job.model.all_containers()[0]
    environment = dict(container.environment or {})
    environment.update(job.environment or {})
    payload = job.max_payload_in_mb
    environment.update(
        {
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(6 if payload is None else payload),
            "SAGEMAKER_BATCH_STRATEGY": job.strategy.environment_value,
        }
    )
    if job.max_concurrent_transforms:
        environment["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(job.max_concurrent_transforms)
    return environment


@dataclass
class _Instance:
    instance_id: str
    upstream: Upstream
    in_flight: int = 0
    lost: bool = False
    replaced: asyncio.Event = field(default_factory=asyncio.Event)


class LocalEngine:
    def __init__(
        self,
        backend: ComputeBackend,
        catalog: InstanceTypeCatalog,
        locations: Locations,
        *,
        startup_timeout: float,
        max_batch_size: int = 64,
    ) -> None:
        self._backend = backend
        self._catalog = catalog
        self._locations = locations
        self._startup_timeout = startup_timeout
        self._max_batch_size = max_batch_size
        self._instances: list[_Instance] = []
        self._job: TransformJob | None = None
        self._model_dir: Path | None = None
        self._timeout = 600.0
        self._replacing: set[asyncio.Task[None]] = set()

    async def start(self, job: TransformJob, model_dir: Path) -> ExecutionParameters:
        self._job, self._model_dir = job, model_dir
        self._timeout = float(job.invocations_timeout)
        count = job.transform_resources.instance_count
        runtime = resolve_runtime(job.model.all_containers()[0].image)
        self._backend.prestart([runtime])
        if self._backend.warming(runtime):
            # its zygote is importing: instances forked from it in a moment start sooner
            # than new interpreters would beside it, and share its memory
            await self._backend.zygotes_ready(self._startup_timeout)
        self._instances = list(await asyncio.gather(*(self._start_one() for _ in range(count))))
        return await self._execution_parameters(self._instances[0])

    async def _start_one(self) -> _Instance:
        job, model_dir = self._job, self._model_dir
        assert job is not None
        assert model_dir is not None
        container = job.model.all_containers()[0]
        instance_id = f"batch-{job.transform_job_name[:32]}-{uuid.uuid4().hex[:8]}".lower()
        spec = InstanceSpec(
            instance_id=instance_id,
            model_name=job.model.model_name,
            runtime=resolve_runtime(container.image),
            model_dir=model_dir,
            instance_type=self._catalog.get(job.transform_resources.instance_type),
            environment=batch_environment(job),
            max_batch_size=self._max_batch_size,
            network_isolation=bool(job.model.enable_network_isolation),
            predict_timeout_seconds=self._timeout,
        )
        started = await self._backend.start(spec)
        instance = _Instance(instance_id, Upstream(started.address))
        try:
            await self._await_ready(instance)
        except BaseException:
            instance.upstream.close()
            await self._backend.stop(instance_id, 0)
            raise
        return instance

    async def _await_ready(self, instance: _Instance) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._startup_timeout
        while True:
            reason = self._backend.exit_reason(instance.instance_id)
            if reason is not None:
                raise ShipwayError(f"the model server could not start: {reason}")
            try:
                if (await instance.upstream.get(b"/ping", 2.0)).status == 200:
                    return
            except UpstreamError:
                pass
            if loop.time() > deadline:
                raise ShipwayError(
                    f"the model server did not answer /ping within {self._startup_timeout:.0f} s"
                )
            await asyncio.sleep(PING_SECONDS)

    async def _execution_parameters(self, instance: _Instance) -> ExecutionParameters:
        """The container's ``GET /execution-parameters``, if it has one."""
        try:
            response = await instance.upstream.get(b"/execution-parameters", 5.0)
            if response.status != 200:
                return ExecutionParameters()
            document = json.loads(response.body)
        except (UpstreamError, ValueError):
            return ExecutionParameters()
        if not isinstance(document, dict):
            return ExecutionParameters()
        concurrent = document.get("MaxConcurrentTransforms")
        strategy = str(document.get("BatchStrategy", "")).upper().replace("_", "")
        payload = document.get("MaxPayloadInMB")
        return ExecutionParameters(
            max_concurrent_transforms=concurrent
            if isinstance(concurrent, int) and concurrent > 0
            else None,
            batch_strategy={
                "MULTIRECORD": BatchStrategy.MULTI_RECORD,
                "SINGLERECORD": BatchStrategy.SINGLE_RECORD,
            }.get(strategy),
            max_payload_in_mb=payload if isinstance(payload, int) and 0 < payload <= 100 else None,
        )

    def concurrency(self, per_instance: int) -> int:
        return max(1, len(self._instances)) * per_instance

    async def transform(self, work: ShardWork, shard: ShardInput, part: Path) -> ShardResult:
        return await transform_shard(work, self._locations, shard, self._send, part)

    async def _send(self, body: bytes) -> bytes:
        instance = await self._pick()
        instance.in_flight += 1
        try:
            response = await instance.upstream.request(
                b"POST",
                b"/invocations",
                self._headers,
                body,
                self._timeout,
            )
        except UpstreamTimeout:
            raise RequestFailed(
                "the model did not answer within InvocationsTimeoutInSeconds "
                f"({self._timeout:.0f} s)",
                retryable=True,
            ) from None
        except (ConnectFailed, ConnectionLost) as exc:
            self._lose(instance)
            raise InstanceLost(str(exc)) from None
        finally:
            instance.in_flight -= 1
        if response.status != 200:
            text = response.body[:2000].decode("utf-8", "replace").strip()
            raise RequestFailed(
                f"the model answered {response.status}: {text}", retryable=response.status >= 500
            )
        return response.body

    @property
    def _headers(self) -> list[tuple[bytes, bytes]]:
        job = self._job
        assert job is not None
        headers = []
        if job.transform_input.content_type:
            headers.append((b"content-type", job.transform_input.content_type.encode()))
        if job.transform_output.accept:
            headers.append((b"accept", job.transform_output.accept.encode()))
        return headers

    async def _pick(self) -> _Instance:
        while True:
            live = [i for i in self._instances if not i.lost]
            if live:
                return min(live, key=lambda i: i.in_flight)
            await asyncio.sleep(PING_SECONDS)

    def _lose(self, instance: _Instance) -> None:
        """Replace an instance that went away (once, whoever noticed first)."""
        if instance.lost:
            return
        instance.lost = True
        reason = self._backend.exit_reason(instance.instance_id) or "its connection was lost"
        log.warning(
            "batch instance %s went away (%s); starting another", instance.instance_id, reason
        )
        task = asyncio.get_running_loop().create_task(self._replace(instance))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _replace(self, instance: _Instance) -> None:
        instance.upstream.close()
        await self._backend.stop(instance.instance_id, 0)
        try:
            fresh = await self._start_one()
        except Exception:
            log.exception("could not replace batch instance %s", instance.instance_id)
            return
        self._instances = [fresh if i is instance else i for i in self._instances]

    async def close(self) -> None:
        for task in list(self._replacing):
            task.cancel()
        instances, self._instances = self._instances, []
        for instance in instances:
            instance.upstream.close()
        await asyncio.gather(
            *(self._backend.stop(i.instance_id, STOP_GRACE_SECONDS) for i in instances),
            return_exceptions=True,
        )
