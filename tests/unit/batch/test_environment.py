"""What a batch container's environment holds: its own, the job's, and SageMaker's batch
variables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shipway.batch.local import batch_environment
from shipway.domain.shape import parse
from shipway.domain.transform_job import TransformJob

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def job(**changes: Any) -> TransformJob:
    document: dict[str, Any] = {
        "TransformJobName": "nightly",
        "ModelName": "m",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}}
        },
        "TransformOutput": {"S3OutputPath": "s3://b/out"},
        "TransformResources": {"InstanceType": "local", "InstanceCount": 1},
        "TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:transform-job/nightly",
        "TransformJobStatus": "InProgress",
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
        "Model": {
            "ModelName": "m",
            "PrimaryContainer": {
                "Image": "sklearn",
                "ModelDataUrl": "s3://b/m.tar.gz",
                "Environment": {"FROM_MODEL": "1", "SHARED": "model"},
            },
            "ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m",
            "CreationTime": NOW,
        },
        **changes,
    }
    return parse(TransformJob, document)


def test_defaults() -> None:
    assert batch_environment(job()) == {
        "FROM_MODEL": "1",
        "SHARED": "model",
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "6",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
    }


def test_the_jobs_settings_and_environment() -> None:
    environment = batch_environment(
        job(
            Environment={"SHARED": "job"},
            MaxPayloadInMB=20,
            BatchStrategy="MultiRecord",
            MaxConcurrentTransforms=4,
        )
    )
    assert environment["SHARED"] == "job"
    assert environment["SAGEMAKER_MAX_PAYLOAD_IN_MB"] == "20"
    assert environment["SAGEMAKER_BATCH_STRATEGY"] == "MULTI_RECORD"
    assert environment["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] == "4"
