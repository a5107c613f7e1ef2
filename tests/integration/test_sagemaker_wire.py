"""boto3's own ``sagemaker`` and ``sagemaker-runtime`` clients, unchanged, against Shipway."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import httpx
import pytest

from tests.fixtures import models
from tests.fixtures.server import ShipwayServer, module_server, start_server

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ARN = "arn:aws:sagemaker:us-east-1:123456789012"
FAST = {"Delay": 1, "MaxAttempts": 60}


server = module_server("wire")


def _client(server: ShipwayServer, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-checked-when-auth-is-off",
    )


@pytest.fixture(scope="module")
def sagemaker(server: ShipwayServer) -> Any:
    return _client(server, "sagemaker")


@pytest.fixture(scope="module")
def runtime(server: ShipwayServer) -> Any:
    return _client(server, "sagemaker-runtime")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> models.Trained:
    return models.train_sklearn(tmp_path_factory.mktemp("wire-model") / "model")


def test_deploy_invoke_and_delete_as_a_sagemaker_script_does(
    sagemaker: Any, runtime: Any, trained: models.Trained, tmp_path: Path
) -> None:
    archive = models.pack(trained.folder, tmp_path / "model.tar.gz")
    created = sagemaker.create_model(
        ModelName="cancer",
        PrimaryContainer={"Image": "sklearn", "ModelDataUrl": str(archive)},
        ExecutionRoleArn=ROLE,
        Tags=[{"Key": "team", "Value": "ml"}],
    )
    assert created["ModelArn"] == f"{ARN}:model/cancer"
    described = sagemaker.describe_model(ModelName="cancer")
    assert described["PrimaryContainer"]["ModelDataUrl"] == str(archive)
    assert described["ExecutionRoleArn"] == ROLE
    assert isinstance(described["CreationTime"], datetime)

    sagemaker.create_endpoint_config(
        EndpointConfigName="cancer-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "cancer",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1.0,
            }
        ],
    )
    config = sagemaker.describe_endpoint_config(EndpointConfigName="cancer-config")
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"

    sagemaker.create_endpoint(EndpointName="cancer", EndpointConfigName="cancer-config")
    assert sagemaker.describe_endpoint(EndpointName="cancer")["EndpointStatus"] in (
        "Creating",
        "InService",
    )
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="cancer", WaiterConfig=FAST)
    endpoint = sagemaker.describe_endpoint(EndpointName="cancer")
    assert endpoint["EndpointStatus"] == "InService"
    variant = endpoint["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == variant["DesiredInstanceCount"] == 1

    answer = runtime.invoke_endpoint(
        EndpointName="cancer",
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps(trained.rows.tolist()),
    )
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert answer["ContentType"] == "application/json"
    assert json.loads(answer["Body"].read()) == trained.expected.tolist()

    csv = "\n".join(",".join(str(v) for v in row) for row in trained.rows)
    answer = runtime.invoke_endpoint(EndpointName="cancer", ContentType="text/csv", Body=csv)
    assert json.loads(answer["Body"].read()) == trained.expected.tolist()

    sagemaker.delete_endpoint(EndpointName="cancer")
    sagemaker.get_waiter("endpoint_deleted").wait(EndpointName="cancer", WaiterConfig=FAST)
    sagemaker.delete_endpoint_config(EndpointConfigName="cancer-config")
    sagemaker.delete_model(ModelName="cancer")
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        sagemaker.describe_model(ModelName="cancer")
    assert missing.value.response["Error"]["Code"] == "ValidationException"
    assert (
        missing.value.response["Error"]["Message"] == f'Could not find model "{ARN}:model/cancer".'
    )


def test_lists_page_filter_and_sort(sagemaker: Any, trained: models.Trained) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    names = [f"page-{i:02d}" for i in range(12)]
    for name in names:
        sagemaker.create_model(
            ModelName=name,
            PrimaryContainer={"Image": "sklearn", "ModelDataUrl": str(trained.folder)},
        )
    paginator = sagemaker.get_paginator("list_models")
    pages = list(paginator.paginate(NameContains="page-", PaginationConfig={"PageSize": 5}))
    assert [len(p["Models"]) for p in pages] == [5, 5, 2]
    listed = [m["ModelName"] for p in pages for m in p["Models"]]
    assert sorted(listed) == names
    ascending = sagemaker.list_models(
        NameContains="page-", SortBy="Name", SortOrder="Ascending", MaxResults=3
    )
    assert [m["ModelName"] for m in ascending["Models"]] == names[:3]
    assert "NextToken" in ascending
    recent = sagemaker.list_models(CreationTimeAfter=before, MaxResults=100)["Models"]
    assert {m["ModelName"] for m in recent} >= set(names)
    future = sagemaker.list_models(CreationTimeAfter=datetime.now(UTC) + timedelta(hours=1))
    assert future["Models"] == []
    assert "NextToken" not in future
    for name in names:
        sagemaker.delete_model(ModelName=name)


def test_list_endpoints_by_status(
    sagemaker: Any, server: ShipwayServer, trained: models.Trained
) -> None:
    sagemaker.create_model(
        ModelName="listed",
        PrimaryContainer={"Image": "sklearn", "ModelDataUrl": str(trained.folder)},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="listed",
        ProductionVariants=[{"VariantName": "v", "ModelName": "listed",
                             "InstanceType": "ml.t2.medium", "InitialInstanceCount": 1}],
    )  # fmt: skip
    sagemaker.create_endpoint(EndpointName="listed", EndpointConfigName="listed")
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="listed", WaiterConfig=FAST)
    in_service = sagemaker.list_endpoints(StatusEquals="InService")["Endpoints"]
    assert "listed" in [e["EndpointName"] for e in in_service]
    assert sagemaker.list_endpoints(StatusEquals="Failed")["Endpoints"] == []
    pages = sagemaker.get_paginator("list_endpoints").paginate(SortBy="Status")
    assert any(e["EndpointName"] == "listed" for p in pages for e in p["Endpoints"])
    configs = sagemaker.list_endpoint_configs(NameContains="listed")["EndpointConfigs"]
    assert [c["EndpointConfigName"] for c in configs] == ["listed"]


def test_tags(sagemaker: Any, trained: models.Trained) -> None:
    arn = sagemaker.create_model(
        ModelName="tagged",
        PrimaryContainer={"Image": "sklearn", "ModelDataUrl": str(trained.folder)},
        Tags=[{"Key": "team", "Value": "ml"}],
    )["ModelArn"]
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "stage", "Value": "dev"},
                                              {"Key": "team", "Value": "platform"}])  # fmt: skip
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    assert tags == {"team": "platform", "stage": "dev"}
    sagemaker.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "stage", "Value": "dev"}]
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        sagemaker.list_tags(ResourceArn=f"{ARN}:model/nobody")
    assert missing.value.response["Error"]["Code"] == "ValidationException"


def test_errors_arrive_as_botos_exceptions(
    sagemaker: Any, runtime: Any, server: ShipwayServer, trained: models.Trained
) -> None:
    spec = {"Image": "sklearn", "ModelDataUrl": str(trained.folder)}
    sagemaker.create_model(ModelName="errors", PrimaryContainer=spec)
    with pytest.raises(botocore.exceptions.ClientError) as duplicate:
        sagemaker.create_model(ModelName="errors", PrimaryContainer=spec)
    assert duplicate.value.response["Error"]["Code"] == "ValidationException"
    assert "Cannot create already existing model" in str(duplicate.value)

    with pytest.raises(botocore.exceptions.ClientError) as too_long:
        sagemaker.create_model(ModelName="x" * 64, PrimaryContainer=spec)
    assert too_long.value.response["Error"]["Code"] == "ValidationException"
    assert "'modelName'" in too_long.value.response["Error"]["Message"]

    sagemaker.create_endpoint_config(
        EndpointConfigName="errors",
        ProductionVariants=[{"VariantName": "v", "ModelName": "errors",
                             "InstanceType": "ml.t2.medium", "InitialInstanceCount": 1}],
    )  # fmt: skip
    sagemaker.create_endpoint(EndpointName="errors", EndpointConfigName="errors")
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="errors", WaiterConfig=FAST)

    with pytest.raises(runtime.exceptions.ValidationError) as unknown:
        runtime.invoke_endpoint(EndpointName="nowhere", Body=b"[[1]]")
    assert "Endpoint nowhere of account 123456789012 not found." in str(unknown.value)

    started = time.monotonic()
    with pytest.raises(runtime.exceptions.ModelError) as failed:
        runtime.invoke_endpoint(
            EndpointName="errors", ContentType="application/json", Body=b"[[1, 2, 3]]"
        )
    error = failed.value.response
    assert error["OriginalStatusCode"] == 400
    assert "expecting 30 features" in error["OriginalMessage"]
    assert error["ResponseMetadata"]["RetryAttempts"] == 0  # a model error is never retried
    assert time.monotonic() - started < 2

    with pytest.raises(runtime.exceptions.ValidationError):
        runtime.invoke_endpoint(
            EndpointName="errors", ContentType="text/csv", Body=b"1" * (6 * 1024 * 1024 + 1)
        )

    unknown_op = httpx.post(
        server.url + "/",
        headers={"X-Amz-Target": "SageMaker.CreateTrainingJob",
                 "Content-Type": "application/x-amz-json-1.1"},
        content=b"{}",
    )  # fmt: skip
    assert unknown_op.status_code == 400
    assert unknown_op.json()["__type"] == "UnknownOperationException"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"EndpointName": "bad_name"}, "'endpointName'"),
        ({"EndpointName": "e" * 64}, "'endpointName'"),
        ({"CustomAttributes": "a" * 1025}, "'customAttributes'"),
        ({"TargetVariant": "v" * 64}, "'targetVariant'"),
        ({"InferenceId": "i" * 65}, "'inferenceId'"),
        ({"ContentType": "t/" + "x" * 1023}, "'contentType'"),
        ({"Accept": "t/" + "x" * 1023}, "'accept'"),
    ],
)
def test_a_bad_invocation_parameter_is_a_validation_error_naming_it(
    runtime: Any, arguments: dict[str, Any], field: str
) -> None:
    call = {"EndpointName": "somewhere", "Body": b"[[1]]", **arguments}
    with pytest.raises(runtime.exceptions.ValidationError) as refused:
        runtime.invoke_endpoint(**call)
    assert field in refused.value.response["Error"]["Message"]
    with pytest.raises(runtime.exceptions.ValidationError) as streamed:
        runtime.invoke_endpoint_with_response_stream(**call)
    assert field in streamed.value.response["Error"]["Message"]


def test_a_quota_is_resource_limit_exceeded(tmp_path: Path, trained: models.Trained) -> None:
    small = start_server(tmp_path / "home", env={"SHIPWAY_MAX_INSTANCES": "2"})
    try:
        sagemaker = _client(small, "sagemaker")
        sagemaker.create_model(
            ModelName="q",
            PrimaryContainer={"Image": "sklearn", "ModelDataUrl": str(trained.folder)},
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName="two",
            ProductionVariants=[{"VariantName": "v", "ModelName": "q",
                                 "InstanceType": "ml.t2.medium", "InitialInstanceCount": 2}],
        )  # fmt: skip
        sagemaker.create_endpoint(EndpointName="first", EndpointConfigName="two")
        with pytest.raises(sagemaker.exceptions.ResourceLimitExceeded) as refused:
            sagemaker.create_endpoint(EndpointName="second", EndpointConfigName="two")
        assert "SHIPWAY_MAX_INSTANCES" in refused.value.response["Error"]["Message"]
        names = [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
        assert names == ["first"]
    finally:
        small.stop()


def test_update_weights_and_capacities_in_place(
    sagemaker: Any, runtime: Any, trained: models.Trained
) -> None:
    spec = {"Image": "sklearn", "ModelDataUrl": str(trained.folder)}
    sagemaker.create_model(ModelName="scaled", PrimaryContainer=spec)
    sagemaker.create_endpoint_config(
        EndpointConfigName="scaled",
        ProductionVariants=[
            {"VariantName": name, "ModelName": "scaled", "InstanceType": "ml.t2.medium",
             "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}
            for name in ("Blue", "Green")
        ],
    )  # fmt: skip
    sagemaker.create_endpoint(EndpointName="scaled", EndpointConfigName="scaled")
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="scaled", WaiterConfig=FAST)

    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName="scaled",
        DesiredWeightsAndCapacities=[
            {"VariantName": "Blue", "DesiredWeight": 0.0},
            {"VariantName": "Green", "DesiredInstanceCount": 2},
        ],
    )
    assert sagemaker.describe_endpoint(EndpointName="scaled")["EndpointStatus"] == "Updating"
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="scaled", WaiterConfig=FAST)
    variants = {
        v["VariantName"]: v
        for v in sagemaker.describe_endpoint(EndpointName="scaled")["ProductionVariants"]
    }
    assert variants["Green"]["CurrentInstanceCount"] == 2
    assert variants["Blue"]["DesiredWeight"] == 0.0
    served = {
        runtime.invoke_endpoint(
            EndpointName="scaled", ContentType="application/json",
            Body=json.dumps(trained.rows[:1].tolist()),
        )["InvokedProductionVariant"]
        for _ in range(40)
    }  # fmt: skip
    assert served == {"Green"}  # weight 0: Blue takes no traffic

    with pytest.raises(botocore.exceptions.ClientError) as unknown:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="scaled",
            DesiredWeightsAndCapacities=[{"VariantName": "Red", "DesiredWeight": 1.0}],
        )
    assert "Red" in unknown.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as nothing_left:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="scaled",
            DesiredWeightsAndCapacities=[{"VariantName": "Green", "DesiredWeight": 0.0}],
        )
    assert "weight above 0" in nothing_left.value.response["Error"]["Message"]
