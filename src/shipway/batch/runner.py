"""The batch runner: runs transform jobs inside the server, as resumable state machines.

A job in progress is: planned (its input objects listed, cut into shards, the plan stored), its
instances started, its shards transformed (each into a part file under the data dir, recorded
as completed with its record count), and each object whose shards are all completed assembled
into its output (written atomically: nothing appears under the name until it is whole). When
every object is done the job ends ``Completed``, or ``Failed`` when a record failed (that object
gets no output; the others do).

A server killed mid-job resumes it when it starts again: completed shards whose part files are
whole are kept, the rest run again, and since the plan and the splitting are deterministic the
outputs are the same bytes as an uninterrupted run's. ``StopTransformJob`` cancels the shards
in flight, drops the parts of objects not yet written, and ends the job ``Stopped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipway.batch.data_processing import data_processor
from shipway.batch.engine import Engine, ExecutionParameters
from shipway.batch.shards import InstanceLost, RecordFailed, ShardInput, ShardWork, open_input
from shipway.batch.splitting import payloads
from shipway.domain.clock import Clock
from shipway.domain.errors import ShipwayError, ValidationError
from shipway.domain.transform_job import (
    AssembleWith,
    BatchStrategy,
    CompressionType,
    S3DataType,
    SplitType,
    TransformJob,
    TransformJobProgress,
    TransformJobStatus,
)
from shipway.domain.transform_plan import InputObject, ObjectStatus, Shard, ShardStatus
from shipway.monitor.metrics import MetricsStore
from shipway.store.artifact_use import release_unused
from shipway.store.artifacts import ArtifactStore
from shipway.store.locations import CHUNK_BYTES, Locations
from shipway.store.metadata import MetadataStore

__all__ = ["BatchRunner", "plan_shards"]

log = logging.getLogger(__name__)

MAX_SHARD_ATTEMPTS = 3
"""Runs of one shard whose instance went away before the object fails."""
SHARD_BYTES = (256 * 1024, 64 * 1024 * 1024)
"""The smallest and largest shard a line-split object is cut into (aiming at four shards per
request slot, so every slot has work and no shard is long)."""
STOP_POLL_SECONDS = 1.0
PROGRESS_SECONDS = 0.5
UNFINISHED = (TransformJobStatus.IN_PROGRESS.value, TransformJobStatus.STOPPING.value)
TRANSFORM_JOBS = "/aws/sagemaker/TransformJobs"
"""The metrics namespace of transform jobs (SageMaker's, where it publishes their CPU and
memory)."""


def plan_shards(
    objects: list[InputObject], split: SplitType, compressed: bool, concurrency: int, limit: int
) -> list[Shard]:
    """Cut uncompressed line-split objects into byte ranges; every other object is one shard."""
    total = sum(o.size for o in objects)
    low, high = SHARD_BYTES
    size = int(min(high, max(low, limit, total // max(1, concurrency * 4))))
    shards: list[Shard] = []
    for obj in objects:
        if split is SplitType.LINE and not compressed and obj.size > size:
            for start in range(0, obj.size, size):
                end = start + size if start + size < obj.size else None
                shards.append(Shard(len(shards), obj.index, start, end))
        else:
            shards.append(Shard(len(shards), obj.index, 0, None))
    return shards


@dataclass
class _Run:
    """One job being run: its plan and what is left of it."""

    job: TransformJob
    objects: list[InputObject]
    shards: list[Shard]
    folder: Path
    started: float
    remaining: dict[int, set[int]] = field(default_factory=dict)
    """Per pending object, its shards not yet completed."""
    attempts: dict[int, int] = field(default_factory=dict)
    records: int = 0
    bytes_done: int = 0
    bytes_before: int = 0
    records_before: int = 0
    """Bytes done before this run (by the server before a restart): not in the rate."""
    objects_completed: int = 0
    objects_failed: int = 0
    reported: float = 0.0
    """When progress was last written (monotonic)."""
    stopping: bool = False


class BatchRunner:
    def __init__(
        self,
        store: MetadataStore,
        locations: Locations,
        artifacts: ArtifactStore,
        engine: Callable[[], Engine],
        clock: Clock,
        work_dir: Path,
        metrics: MetricsStore | None = None,
    ) -> None:
        """``engine`` makes the engine of one job; ``work_dir`` holds jobs' part files;
        ``metrics`` receives each job's RecordsProcessed, BytesProcessed, ObjectsCompleted and
        ObjectsFailed (namespace ``/aws/sagemaker/TransformJobs``, by TransformJobName)."""
        self._store = store
        self._locations = locations
        self._artifacts = artifacts
        self._engine = engine
        self._clock = clock
        self._work_dir = work_dir
        self._metrics = metrics
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._watch())

    def wake(self) -> None:
        """A job was created or stopped (callable from any thread)."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                jobs = await asyncio.to_thread(self._store.transform_jobs.with_status, UNFINISHED)
            except Exception:
                log.exception("could not read transform jobs")
                jobs = []
            for job in jobs:
                name = job.transform_job_name
                if job.transform_job_status.finished or name in self._running:
                    continue
                task = asyncio.get_running_loop().create_task(self._run(name), name=f"job {name}")
                self._running[name] = task
                task.add_done_callback(functools.partial(self._ended, name))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), STOP_POLL_SECONDS * 5)

    def _ended(self, name: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(name, None)

    # --- one job ------------------------------------------------------------------------------

    async def _run(self, name: str) -> None:
        job = await asyncio.to_thread(self._store.transform_jobs.get, name)
        if job is None or job.transform_job_status.finished:
            return
        folder = self._work_dir / name.lower()
        if job.transform_job_status is TransformJobStatus.STOPPING:
            await self._end(name, TransformJobStatus.STOPPED, None, folder)
            return
        engine: Engine | None = None
        try:
            if job.transform_start_time is None:
                job = await self._change(name, transform_start_time=self._clock.now()) or job
            container = job.model.all_containers()[0]
            model_dir = await asyncio.to_thread(
                self._artifacts.fetch, container.model_data_url or ""
            )
            engine = self._engine()
            parameters = await engine.start(job, model_dir)
            work, per_instance = _work(job, parameters)
            run = await self._plan(job, folder, engine.concurrency(per_instance), work)
            status, reason = await self._transform(
                run, engine, work, engine.concurrency(per_instance)
            )
        except asyncio.CancelledError:
            raise  # the server is stopping: the job resumes when it starts again
        except ShipwayError as exc:
            status, reason = TransformJobStatus.FAILED, f"ClientError: {exc.message}"
        except Exception as exc:
            log.exception("transform job %s failed", name)
            status, reason = TransformJobStatus.FAILED, f"InternalServerError: {exc}"
        finally:
            if engine is not None:
                await asyncio.shield(engine.close())
        await self._end(name, status, reason, folder)

    async def _plan(
        self, job: TransformJob, folder: Path, concurrency: int, work: ShardWork
    ) -> _Run:
        """The job's stored plan, or a new one (its objects listed, its shards cut)."""
        name = job.transform_job_name
        plans = self._store.transform_plans
        objects = await asyncio.to_thread(plans.objects, name)
        shards = await asyncio.to_thread(plans.shards, name)
        if not objects:
            objects = await asyncio.to_thread(self._inputs, job)
            shards = plan_shards(
                objects,
                work.split,
                job.transform_input.compression_type is CompressionType.GZIP,
                concurrency,
                work.limit or 0,
            )
            await asyncio.to_thread(plans.save, name, objects, shards)
        run = _Run(job, objects, shards, folder, time.monotonic())
        lost = await asyncio.to_thread(self._lost_parts, run)
        if lost:
            await asyncio.to_thread(plans.reset_shards, name, lost)
            shards = await asyncio.to_thread(plans.shards, name)
            run.shards = shards
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        for obj in objects:
            if obj.status is ObjectStatus.PENDING:
                run.remaining[obj.index] = {
                    s.index
                    for s in shards
                    if s.object_index == obj.index and s.status is ShardStatus.PENDING
                }
        for shard in shards:
            if shard.status is ShardStatus.COMPLETED:
                run.records += shard.records
        run.bytes_done = sum(o.size for o in objects if o.status is not ObjectStatus.PENDING) + sum(
            _shard_bytes(s, objects[s.object_index])
            for s in shards
            if s.status is ShardStatus.COMPLETED
            and objects[s.object_index].status is ObjectStatus.PENDING
        )
        run.bytes_before = run.bytes_done
        run.records_before = run.records
        run.objects_completed = sum(1 for o in objects if o.status is ObjectStatus.COMPLETED)
        run.objects_failed = sum(1 for o in objects if o.status is ObjectStatus.FAILED)
        await self._progress(run, force=True)
        return run

    def _inputs(self, job: TransformJob) -> list[InputObject]:
        source = job.transform_input.data_source.s3_data_source
        uri = source.s3_uri
        if source.s3_data_type is S3DataType.MANIFEST_FILE:
            listed = self._manifest(uri)
        else:
            listed = self._locations.under(uri)
            if not listed:
                raise ValidationError(f"No objects were found under S3Uri {uri}.")
        return [
            InputObject(index=i, url=url, key=key, size=size)
            for i, (url, key, size) in enumerate(listed)
        ]

    def _manifest(self, uri: str) -> list[tuple[str, str, int]]:
        """The objects a manifest lists: ``[{"prefix": "s3://b/p/"}, "key1", "key2", ...]``."""
        with self._locations.open(uri) as handle:
            raw = handle.read(64 * 1024 * 1024)
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise ValidationError(f"The manifest {uri} is not JSON: {exc}") from None
        if (
            not isinstance(document, list)
            or not document
            or not isinstance(document[0], dict)
            or not isinstance(document[0].get("prefix"), str)
            or not all(isinstance(k, str) and k for k in document[1:])
        ):
            raise ValidationError(
                f'The manifest {uri} must be a JSON list: {{"prefix": "<url>"}} followed by '
                "object keys relative to that prefix."
            )
        prefix: str = document[0]["prefix"]
        self._locations.check(prefix, f"The prefix of the manifest {uri}")
        if len(document) == 1:
            raise ValidationError(f"The manifest {uri} lists no objects.")
        objects = []
        for key in document[1:]:
            url = prefix + key if prefix.endswith("/") else f"{prefix}/{key}"
            objects.append((url, key, self._locations.size(url)))
        return objects

    async def _transform(
        self, run: _Run, engine: Engine, work: ShardWork, concurrency: int
    ) -> tuple[TransformJobStatus, str | None]:
        name = run.job.transform_job_name
        # objects whose shards were all completed before a restart: assemble them first
        # (unless the output was written just before the server went down)
        for index, left in list(run.remaining.items()):
            if not left:
                await self._assemble(run, index, resumed=True)
        queue: asyncio.Queue[Shard] = asyncio.Queue()
        for shard in run.shards:
            if shard.status is ShardStatus.PENDING and shard.object_index in run.remaining:
                queue.put_nowait(shard)
        workers = [
            asyncio.get_running_loop().create_task(self._worker(run, engine, work, queue))
            for _ in range(min(concurrency, max(1, queue.qsize())))
        ]
        watcher = asyncio.get_running_loop().create_task(self._watch_stop(run, workers))
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            if not run.stopping:
                raise
        finally:
            watcher.cancel()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, watcher, return_exceptions=True)
        await self._progress(run, force=True)
        if run.stopping:
            return TransformJobStatus.STOPPED, None
        objects = await asyncio.to_thread(self._store.transform_plans.objects, name)
        failed = [o for o in objects if o.status is ObjectStatus.FAILED]
        if not failed:
            return TransformJobStatus.COMPLETED, None
        first = failed[0]
        others = (
            f" ({len(failed)} of {len(objects)} input objects failed)" if len(failed) > 1 else ""
        )
        return TransformJobStatus.FAILED, f"ClientError: {first.failure}{others}"

    async def _watch_stop(self, run: _Run, workers: list[asyncio.Task[None]]) -> None:
        name = run.job.transform_job_name
        while True:
            await asyncio.sleep(STOP_POLL_SECONDS)
            job = await asyncio.to_thread(self._store.transform_jobs.get, name)
            if job is None or job.transform_job_status is TransformJobStatus.STOPPING:
                run.stopping = True
                for worker in workers:
                    worker.cancel()
                return

    async def _worker(
        self, run: _Run, engine: Engine, work: ShardWork, queue: asyncio.Queue[Shard]
    ) -> None:
        while not queue.empty():
            shard = queue.get_nowait()
            if shard.object_index not in run.remaining:
                continue  # its object failed meanwhile
            obj = run.objects[shard.object_index]
            part = self._part(run, shard)
            try:
                result = await engine.transform(work, self._input(run.job, obj, shard), part)
            except InstanceLost as exc:
                attempts = run.attempts.get(shard.index, 0) + 1
                run.attempts[shard.index] = attempts
                if attempts < MAX_SHARD_ATTEMPTS:
                    queue.put_nowait(shard)
                    continue
                await self._fail(
                    run, obj, f"the model server running it went away {attempts} times ({exc})"
                )
                continue
            except RecordFailed as exc:
                number = exc.record + 1 + await self._records_before(run, obj, shard)
                await self._fail(run, obj, f"record {number} of {obj.url} failed: {exc.message}")
                continue
            except ShipwayError as exc:
                await self._fail(run, obj, f"{obj.url}: {exc.message}")
                continue
            await asyncio.to_thread(
                self._store.transform_plans.shard_completed,
                run.job.transform_job_name,
                shard.index,
                result.records,
                result.part_size,
            )
            run.records += result.records
            run.bytes_done += _shard_bytes(shard, obj)
            self._record(run, "RecordsProcessed", result.records, "Count")
            self._record(run, "BytesProcessed", _shard_bytes(shard, obj), "Bytes")
            left = run.remaining.get(obj.index)
            if left is not None:
                left.discard(shard.index)
                if not left:
                    await self._assemble(run, obj.index)
            await self._progress(run)

    def _record(self, run: _Run, name: str, value: float, unit: str) -> None:
        if self._metrics is not None:
            self._metrics.put(
                name,
                {"TransformJobName": run.job.transform_job_name},
                value,
                self._clock.time(),
                unit=unit,
                namespace=TRANSFORM_JOBS,
            )

    async def _records_before(self, run: _Run, obj: InputObject, shard: Shard) -> int:
        """How many records of the object come before the shard (to name a failed record by
        its number in the object)."""
        if shard.start == 0:
            return 0
        work = _work(run.job, ExecutionParameters())[0]

        def count() -> int:
            whole = self._input(run.job, obj, Shard(shard.index, obj.index, 0, None))
            with open_input(self._locations, whole) as reader:
                return sum(
                    p.count
                    for p in payloads(
                        reader,
                        start=0,
                        end=shard.start,
                        split=work.split,
                        strategy=BatchStrategy.MULTI_RECORD,
                        limit=CHUNK_BYTES * 8,
                    )
                )

        try:
            return await asyncio.to_thread(count)
        except Exception:
            return 0

    async def _fail(self, run: _Run, obj: InputObject, reason: str) -> None:
        if run.remaining.pop(obj.index, None) is None:
            return
        log.warning("transform job %s: %s", run.job.transform_job_name, reason)
        run.objects_failed += 1
        self._record(run, "ObjectsFailed", 1, "Count")
        await asyncio.to_thread(
            self._store.transform_plans.object_finished,
            run.job.transform_job_name,
            obj.index,
            ObjectStatus.FAILED,
            reason,
        )
        for shard in run.shards:
            if shard.object_index == obj.index:
                self._part(run, shard).unlink(missing_ok=True)
        await self._progress(run)

    async def _assemble(self, run: _Run, index: int, *, resumed: bool = False) -> None:
        """Write an object's output from its parts, in order, atomically; then drop the parts.

        ``resumed``: the parts were completed before a restart, and the output may have been
        written already (the server went down before recording it): one of the right size is
        that output, and is left as it is."""
        obj = run.objects[index]
        shards = [s for s in run.shards if s.object_index == index]
        parts = [self._part(run, s) for s in shards]
        output = self._locations.join(run.job.transform_output.s3_output_path, obj.key + ".out")
        key = f"{run.job.transform_job_name.lower()}-{index}"

        def written() -> bool:
            try:
                return self._locations.size(output) == sum(s.part_size for s in shards)
            except ShipwayError:
                return False

        def write() -> None:
            if resumed and written():
                return
            writer = self._locations.writer(output, key)
            try:
                for part in parts:
                    with open(part, "rb") as handle:
                        while chunk := handle.read(CHUNK_BYTES):
                            writer.write(chunk)
            except BaseException:
                writer.discard()
                raise
            writer.finish(b"")

        await asyncio.to_thread(write)
        await asyncio.to_thread(
            self._store.transform_plans.object_finished,
            run.job.transform_job_name,
            index,
            ObjectStatus.COMPLETED,
        )
        run.remaining.pop(index, None)
        run.objects_completed += 1
        self._record(run, "ObjectsCompleted", 1, "Count")
        for part in parts:
            part.unlink(missing_ok=True)

    def _lost_parts(self, run: _Run) -> list[int]:
        """Completed shards whose part file is missing or not whole (blocking)."""
        return [
            s.index
            for s in run.shards
            if s.status is ShardStatus.COMPLETED and not _whole(self._part(run, s), s.part_size)
        ]

    def _part(self, run: _Run, shard: Shard) -> Path:
        return run.folder / f"{shard.object_index}-{shard.index}.part"

    def _input(self, job: TransformJob, obj: InputObject, shard: Shard) -> ShardInput:
        gzipped = job.transform_input.compression_type is CompressionType.GZIP
        return ShardInput(obj.url, shard.start, shard.end, gzipped)

    async def _progress(self, run: _Run, *, force: bool = False) -> None:
        """Write the job's progress: at most every :data:`PROGRESS_SECONDS` (a job of many
        small objects would otherwise write its record at each), and when ``force``d."""
        now = time.monotonic()
        if not force and now - run.reported < PROGRESS_SECONDS:
            return
        run.reported = now
        objects = run.objects
        elapsed = max(now - run.started, 1e-6)
        total = sum(o.size for o in objects)
        new = run.bytes_done - run.bytes_before
        rate = new / elapsed if new > 0 else None
        progress = TransformJobProgress(
            objects_total=len(objects),
            objects_completed=run.objects_completed,
            objects_failed=run.objects_failed,
            shards_total=len(run.shards),
            shards_completed=sum(
                1
                for s in run.shards
                if s.object_index not in run.remaining
                or s.index not in run.remaining[s.object_index]
            ),
            records_processed=run.records,
            bytes_total=total,
            bytes_processed=min(run.bytes_done, total),
            records_per_second=(
                (run.records - run.records_before) / elapsed if rate is not None else None
            ),
            bytes_per_second=rate,
            estimated_seconds_remaining=(
                max(0.0, (total - run.bytes_done) / rate) if rate else None
            ),
        )
        await self._change(run.job.transform_job_name, progress=progress)

    async def _change(self, name: str, **update: Any) -> TransformJob | None:
        def change(job: TransformJob) -> TransformJob:
            return job.model_copy(update={**update, "last_modified_time": self._clock.now()})

        return await asyncio.to_thread(self._store.transform_jobs.update, name, change)

    async def _end(
        self, name: str, status: TransformJobStatus, reason: str | None, folder: Path
    ) -> None:
        def change(job: TransformJob) -> TransformJob:
            final = status
            if job.transform_job_status is TransformJobStatus.STOPPING:
                final = TransformJobStatus.STOPPED
            now = self._clock.now()
            return job.model_copy(
                update={
                    "transform_job_status": final,
                    "failure_reason": reason if final is TransformJobStatus.FAILED else None,
                    "transform_end_time": now,
                    "last_modified_time": now,
                }
            )

        ended = await asyncio.to_thread(self._store.transform_jobs.update, name, change)
        # what the plan said lives on in the job's progress and FailureReason
        await asyncio.to_thread(self._store.transform_plans.remove, name)
        if ended is not None:  # its copy of the model may have been the artifact's last user
            await asyncio.to_thread(release_unused, self._store, self._artifacts, [ended.model])
        await asyncio.to_thread(shutil.rmtree, folder, True)


def _whole(part: Path, size: int) -> bool:
    try:
        return part.stat().st_size == size
    except OSError:
        return False


def _shard_bytes(shard: Shard, obj: InputObject) -> int:
    end = obj.size if shard.end is None else shard.end
    return max(0, end - shard.start)


def _work(job: TransformJob, parameters: ExecutionParameters) -> tuple[ShardWork, int]:
    """How the job's shards are transformed, with what its container asked for where the job
    left it open; and how many requests each instance takes at once."""
    split = job.split_type
    strategy = job.batch_strategy or parameters.batch_strategy or BatchStrategy.SINGLE_RECORD
    megabytes = job.max_payload_in_mb
    if megabytes is None:
        megabytes = parameters.max_payload_in_mb or 6
    processor = data_processor(job.model_copy(update={"batch_strategy": strategy}))
    work = ShardWork(
        split=split,
        strategy=strategy,
        limit=megabytes * 1024 * 1024 if megabytes else None,
        assemble_with=job.transform_output.assemble_with or AssembleWith.NONE,
        max_retries=job.invocations_max_retries,
        processor=processor if processor.active else None,
    )
    per_instance = job.max_concurrent_transforms or parameters.max_concurrent_transforms or 1
    return work, per_instance
