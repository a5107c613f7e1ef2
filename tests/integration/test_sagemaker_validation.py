"""Every constraint botocore leaves to the server: ValidationException naming the field.

botocore checks required members, types and minimums; maximums, patterns and enums reach the
server (reference §1.7), which must refuse them with AWS's wording and change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

from tests.fixtures.server import ShipwayServer, start_server

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
# any existing folder that holds no server's data dir (no instance is ever started here)
CONTAINER = {"Image": "sklearn", "ModelDataUrl": str(Path(__file__).resolve().parent)}
VARIANT = {"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large",
           "InitialInstanceCount": 1}  # fmt: skip


@pytest.fixture(scope="module")
def sagemaker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server: ShipwayServer = start_server(tmp_path_factory.mktemp("validation") / "home")
    client = boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    client.create_model(ModelName="m", PrimaryContainer=CONTAINER)
    yield client
    server.stop()


def _set(members: dict[str, Any]) -> dict[str, Any]:
    """Members given as None are left out, as a caller would leave them out."""
    return {k: v for k, v in members.items() if v is not None}


def model(**overrides: Any) -> dict[str, Any]:
    return _set({"ModelName": "fine", "PrimaryContainer": CONTAINER, **overrides})


def container(**overrides: Any) -> dict[str, Any]:
    return model(PrimaryContainer={**CONTAINER, **overrides})


def config(**overrides: Any) -> dict[str, Any]:
    return {"EndpointConfigName": "fine", "ProductionVariants": [VARIANT], **overrides}


def variant(**overrides: Any) -> dict[str, Any]:
    return config(ProductionVariants=[_set({**VARIANT, **overrides})])


CASES = [
    ("create_model", model(ModelName="x" * 64), "'modelName'"),
    ("create_model", model(ModelName="bad_name"), "'modelName'"),
    ("create_model", model(ModelName="-leading"), "'modelName'"),
    ("create_model", container(Image="has space"), "'primaryContainer.image'"),
    ("create_model", container(Image="i" * 256), "'primaryContainer.image'"),
    ("create_model", container(ContainerHostname="bad_host"),
     "'primaryContainer.containerHostname'"),
    ("create_model", container(Mode="Multi"), "'primaryContainer.mode'"),
    ("create_model", container(ModelDataUrl="s3://b/" + "k" * 1020),
     "'primaryContainer.modelDataUrl'"),
    ("create_model", container(Environment={"1BAD": "x"}), "'primaryContainer.environment'"),
    ("create_model", container(Environment={"K": "v" * 1025}), "'primaryContainer.environment'"),
    ("create_model", container(ImageConfig={"RepositoryAccessMode": "Public"}),
     "'primaryContainer.imageConfig.repositoryAccessMode'"),
    ("create_model", container(MultiModelConfig={"ModelCacheSetting": "Sometimes"}),
     "'primaryContainer.multiModelConfig.modelCacheSetting'"),
    ("create_model", model(ExecutionRoleArn="arn:aws:iam::12345:role/too-short-account"),
     "'executionRoleArn'"),
    ("create_model", model(PrimaryContainer=None, Containers=[CONTAINER] * 16), "'containers'"),
    ("create_model", model(InferenceExecutionConfig={"Mode": "Parallel"}),
     "'inferenceExecutionConfig.mode'"),
    ("create_model", model(VpcConfig={"SecurityGroupIds": ["sg-1"] * 6, "Subnets": ["s-1"]}),
     "'vpcConfig.securityGroupIds'"),
    ("create_model", model(Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)]), "'tags'"),
    ("create_model", model(Tags=[{"Key": "k" * 129, "Value": "v"}]), "'tags.1.member.key'"),
    ("create_model", model(Tags=[{"Key": "k", "Value": "v" * 257}]), "'tags.1.member.value'"),
    ("create_endpoint_config", config(EndpointConfigName="c" * 64), "'endpointConfigName'"),
    ("create_endpoint_config", config(ProductionVariants=[
        {**VARIANT, "VariantName": f"v{i}"} for i in range(11)]), "'productionVariants'"),
    ("create_endpoint_config", variant(VariantName="bad_variant"),
     "'productionVariants.1.member.variantName'"),
    ("create_endpoint_config", variant(ModelName="m" * 64),
     "'productionVariants.1.member.modelName'"),
    ("create_endpoint_config", variant(VolumeSizeInGB=513),
     "'productionVariants.1.member.volumeSizeInGB'"),
    ("create_endpoint_config", variant(ModelDataDownloadTimeoutInSeconds=3601),
     "'productionVariants.1.member.modelDataDownloadTimeoutInSeconds'"),
    ("create_endpoint_config", variant(ContainerStartupHealthCheckTimeoutInSeconds=3601),
     "'productionVariants.1.member.containerStartupHealthCheckTimeoutInSeconds'"),
    ("create_endpoint_config", variant(RoutingConfig={"RoutingStrategy": "ROUND_ROBIN"}),
     "'productionVariants.1.member.routingConfig.routingStrategy'"),
    ("create_endpoint_config", variant(InstanceType=None, InitialInstanceCount=None,
     ServerlessConfig={"MemorySizeInMB": 1500, "MaxConcurrency": 5}),
     "'productionVariants.1.member.serverlessConfig'"),
    ("create_endpoint_config", variant(InstanceType=None, InitialInstanceCount=None,
     ServerlessConfig={"MemorySizeInMB": 2048, "MaxConcurrency": 201}),
     "'productionVariants.1.member.serverlessConfig.maxConcurrency'"),
    ("create_endpoint_config", variant(InstanceType="ml.nonexistent.xlarge"),
     "ml.nonexistent.xlarge"),
    ("create_endpoint_config", config(KmsKeyId="k" * 2049), "'kmsKeyId'"),
    ("create_endpoint", {"EndpointName": "bad_name", "EndpointConfigName": "c"}, "'endpointName'"),
    ("create_endpoint", {"EndpointName": "e", "EndpointConfigName": "c" * 64},
     "'endpointConfigName'"),
    ("describe_endpoint", {"EndpointName": "e" * 64}, "'endpointName'"),
    ("list_models", {"MaxResults": 101}, "'maxResults'"),
    ("list_models", {"NameContains": "a_b"}, "'nameContains'"),
    ("list_models", {"SortBy": "Size"}, "'sortBy'"),
    ("list_models", {"SortOrder": "Up"}, "'sortOrder'"),
    ("list_endpoints", {"StatusEquals": "Running"}, "'statusEquals'"),
    ("list_endpoint_configs", {"NextToken": "n" * 8193}, "'nextToken'"),
]  # fmt: skip


@pytest.mark.parametrize(("operation", "arguments", "field"), CASES)
def test_a_bad_field_is_a_validation_exception_naming_it(
    sagemaker: Any, operation: str, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        getattr(sagemaker, operation)(**arguments)
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert field in error["Message"]
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    names = [m["ModelName"] for m in sagemaker.list_models(MaxResults=100)["Models"]]
    assert names == ["m"]  # nothing was created
