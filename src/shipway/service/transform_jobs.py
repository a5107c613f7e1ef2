"""Transform job operations: create, describe, list, stop.

A job is checked whole when it is created: its model exists (the job keeps a copy of it), its
instance type is in the catalog, its input and output locations are where the server may read
and write, and its DataProcessing filters parse. What can only be known by reading the input
(an empty prefix, a manifest naming a missing object, a record too large) fails the job when it
runs, with a FailureReason saying which object and why.
"""

from __future__ import annotations

from collections.abc import Callable

from shipway.batch.data_processing import data_processor
from shipway.domain.clock import Clock
from shipway.domain.errors import InvalidState, NotFound
from shipway.domain.instance_types import InstanceTypeCatalog
from shipway.domain.names import Account
from shipway.domain.transform_job import (
    CreateTransformJobInput,
    CreateTransformJobOutput,
    DescribeTransformJobOutput,
    ListTransformJobsInput,
    TransformJob,
    TransformJobStatus,
    TransformJobSummary,
)
from shipway.store.locations import Locations
from shipway.store.metadata import MetadataStore

__all__ = ["TransformJobService"]

KIND = "transform-job"


class TransformJobService:
    def __init__(
        self,
        store: MetadataStore,
        locations: Locations,
        catalog: InstanceTypeCatalog,
        account: Account,
        clock: Clock,
        *,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        """``wake`` tells the batch runner a job was created or stopped (from any thread)."""
        self._store = store
        self._locations = locations
        self._catalog = catalog
        self._account = account
        self._clock = clock
        self._wake = wake

    def arn(self, name: str) -> str:
        return self._account.arn(KIND, name)

    def create_transform_job(self, request: CreateTransformJobInput) -> CreateTransformJobOutput:
        model = self._store.models.get(request.model_name)
        if model is None:
            raise NotFound(
                "model", request.model_name, self._account.arn("model", request.model_name)
            )
        self._catalog.get(request.transform_resources.instance_type)
        self._locations.check(request.transform_input.data_source.s3_data_source.s3_uri, "S3Uri")
        self._locations.check(request.transform_output.s3_output_path, "S3OutputPath")
        data_processor(request)  # its filters parse and its formats can be read
        now = self._clock.now()
        arn = self.arn(request.transform_job_name)
        job = TransformJob(
            **request.model_dump(),
            transform_job_arn=arn,
            transform_job_status=TransformJobStatus.IN_PROGRESS,
            creation_time=now,
            last_modified_time=now,
            model=model,
        )
        self._store.transform_jobs.add(job, "transform job", arn)
        self._wake()
        return CreateTransformJobOutput(transform_job_arn=arn)

    def get(self, name: str) -> TransformJob:
        job = self._store.transform_jobs.get(name)
        if job is None:
            raise NotFound("transform job", name, self.arn(name))
        return job

    def describe_transform_job(self, name: str) -> DescribeTransformJobOutput:
        return DescribeTransformJobOutput.of(self.get(name))

    def list_transform_jobs(
        self, query: ListTransformJobsInput
    ) -> tuple[list[TransformJobSummary], str | None]:
        jobs, token = self._store.transform_jobs.page(query)
        return [TransformJobSummary.of(j) for j in jobs], token

    def stop_transform_job(self, name: str) -> None:
        """Ask a job in progress to stop: ``Stopping`` now, ``Stopped`` once its work has
        ended (objects not yet written get no output). Stopping a stopping job does nothing;
        a finished one cannot be stopped."""
        job = self.get(name)
        if job.transform_job_status is TransformJobStatus.STOPPING:
            return

        def stopping(current: TransformJob) -> TransformJob:
            return current.model_copy(
                update={
                    "transform_job_status": TransformJobStatus.STOPPING,
                    "last_modified_time": self._clock.now(),
                }
            )

        changed = self._store.transform_jobs.update(
            name, stopping, expected_status=TransformJobStatus.IN_PROGRESS.value
        )
        if changed is None:
            current = self.get(name)
            if current.transform_job_status is TransformJobStatus.STOPPING:
                return
            raise InvalidState(
                f"Transform job {current.transform_job_name} is "
                f"{current.transform_job_status.value}; only a job in progress can be stopped."
            )
        self._wake()
