"""Strict wire input on a real server: the JSON types of members, finite weights, and ARNs of
this server's own account and region, through boto3 (its client-side checks off, as a caller
of the raw API would be) and the REST API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.fixtures.server import ShipwayServer, module_server

REGION = "us-east-1"
ACCOUNT = "123456789012"
VARIANT = {"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large",
           "InitialInstanceCount": 1}  # fmt: skip


server = module_server("strict")


@pytest.fixture(scope="module")
def sagemaker(server: ShipwayServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    client = boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    folder: Path = tmp_path_factory.mktemp("model")
    (folder / "model.joblib").write_bytes(b"never loaded: no endpoint is created")
    client.create_model(
        ModelName="m", PrimaryContainer={"Image": "sklearn", "ModelDataUrl": str(folder)}
    )
    return client


def refused(call: Any, *fragments: str) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException", error
    for fragment in fragments:
        assert fragment in error["Message"], error["Message"]
    return str(error["Message"])


@pytest.mark.parametrize(
    ("member", "value", "rule"),
    [
        ("InitialInstanceCount", "2", "Member must be an integer"),
        ("InitialInstanceCount", True, "Member must be an integer"),
        ("EnableSSMAccess", "true", "Member must be a boolean"),
        ("InstanceType", 5, "Member must be a string"),
    ],
)
def test_a_member_of_the_wrong_json_type_is_a_validation_exception(
    sagemaker: Any, member: str, value: Any, rule: str
) -> None:
    field = member[0].lower() + member[1:]
    refused(
        lambda: sagemaker.create_endpoint_config(
            EndpointConfigName="typed", ProductionVariants=[{**VARIANT, member: value}]
        ),
        f"at 'productionVariants.1.member.{field}'",
        rule,
    )
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []


def test_a_number_sent_as_a_string_is_refused(server: ShipwayServer) -> None:
    # botocore cannot send it (it serializes floats itself), a raw caller can
    document = {
        "EndpointConfigName": "typed",
        "ProductionVariants": [{**VARIANT, "InitialVariantWeight": "0.5"}],
    }
    with server.client() as api:
        response = api.post(
            "/",
            json=document,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "SageMaker.CreateEndpointConfig",
            },
        )
    assert response.status_code == 400
    assert response.json()["__type"] == "ValidationException"
    assert (
        "Value '0.5' at 'productionVariants.1.member.initialVariantWeight' failed to satisfy "
        "constraint: Member must be a number"
    ) in response.json()["Message"]


def test_the_rest_api_is_as_strict(server: ShipwayServer) -> None:
    with server.client() as api:
        for value, rule in [
            ("2", "Member must be an integer"),
            (True, "Member must be an integer"),
        ]:
            response = api.post(
                "/api/endpoint-configs",
                json={
                    "EndpointConfigName": "typed",
                    "ProductionVariants": [{**VARIANT, "InitialInstanceCount": value}],
                },
            )
            assert response.status_code == 400
            body = response.json()
            assert body["code"] == "ValidationException"
            assert "productionVariants.1.member.initialInstanceCount" in body["message"]
            assert rule in body["message"]


def test_weights_that_would_overflow_the_split_are_refused(sagemaker: Any) -> None:
    infinite = [{**VARIANT, "InitialVariantWeight": float("inf")}]  # botocore sends "Infinity"
    refused(
        lambda: sagemaker.create_endpoint_config(
            EndpointConfigName="huge", ProductionVariants=infinite
        ),
        "at 'productionVariants.1.member.initialVariantWeight'",
    )
    variants = [{**VARIANT, "VariantName": n, "InitialVariantWeight": 1.7e308} for n in "ab"]
    refused(
        lambda: sagemaker.create_endpoint_config(
            EndpointConfigName="huge", ProductionVariants=variants
        ),
        "at 'productionVariants.1.member.initialVariantWeight'",
        "at 'productionVariants.2.member.initialVariantWeight'",
    )
    refused(
        lambda: sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="e",
            DesiredWeightsAndCapacities=[{"VariantName": "v", "DesiredWeight": 1.7e308}],
        ),
        "at 'desiredWeightsAndCapacities.1.member.desiredWeight'",
    )


@pytest.mark.parametrize(
    "arn",
    [
        f"arn:aws:sagemaker:{REGION}:210987654321:model/m",
        f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:model/m",
        f"arn:aws-cn:sagemaker:{REGION}:{ACCOUNT}:model/m",
    ],
)
def test_tags_refuse_another_accounts_or_regions_arn(sagemaker: Any, arn: str) -> None:
    own = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/m"
    refused(lambda: sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}]), arn)
    refused(lambda: sagemaker.list_tags(ResourceArn=arn), "not valid for this account")
    refused(lambda: sagemaker.delete_tags(ResourceArn=arn, TagKeys=["k"]), arn)
    assert sagemaker.list_tags(ResourceArn=own)["Tags"] == []
    sagemaker.add_tags(ResourceArn=own, Tags=[{"Key": "k", "Value": "v"}])
    assert sagemaker.list_tags(ResourceArn=own)["Tags"] == [{"Key": "k", "Value": "v"}]
    sagemaker.delete_tags(ResourceArn=own, TagKeys=["k"])
