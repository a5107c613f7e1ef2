"""Shapes: PascalCase on the wire, snake_case in Python, and AWS-worded validation errors."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from shipway.domain.endpoint import (
    CreateEndpointInput,
    DescribeEndpointOutput,
    EndpointStatus,
    UpdateEndpointWeightsAndCapacitiesInput,
)
from shipway.domain.endpoint_config import CreateEndpointConfigInput
from shipway.domain.errors import ValidationError
from shipway.domain.listing import ListEndpointsInput, ListInput, SortBy, SortOrder
from shipway.domain.model import CreateModelInput, Model
from shipway.domain.names import Account
from shipway.domain.shape import Shape, dump, parse

FULL_MODEL = {
    "ModelName": "fraud-model",
    "PrimaryContainer": {
        "ContainerHostname": "primary",
        "Image": "sklearn:1.5",
        "Mode": "SingleModel",
        "ModelDataUrl": "s3://bucket/models/fraud/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "_private": "1"},
    },
    "InferenceExecutionConfig": {"Mode": "Serial"},
    "ExecutionRoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
    "Tags": [{"Key": "team", "Value": "risk"}],
    "VpcConfig": {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
    "EnableNetworkIsolation": False,
}

FULL_CONFIG = {
    "EndpointConfigName": "fraud-config",
    "ProductionVariants": [
        {
            "VariantName": "blue",
            "ModelName": "fraud-model",
            "InitialInstanceCount": 2,
            "InstanceType": "ml.m5.large",
            "InitialVariantWeight": 0.75,
            "VolumeSizeInGB": 30,
            "ModelDataDownloadTimeoutInSeconds": 600,
            "ContainerStartupHealthCheckTimeoutInSeconds": 600,
            "EnableSSMAccess": True,
            "RoutingConfig": {"RoutingStrategy": "RANDOM"},
        },
        {
            "VariantName": "green",
            "ModelName": "fraud-model",
            "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large",
            "InitialVariantWeight": 0.25,
        },
    ],
    "KmsKeyId": "key",
    "Tags": [{"Key": "team", "Value": "risk"}],
}


def variant(**fields: Any) -> dict[str, Any]:
    return {
        "VariantName": "v",
        "ModelName": "m",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
        **fields,
    }


def config(*variants: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"EndpointConfigName": "c", "ProductionVariants": list(variants), **fields}


def model(**fields: Any) -> dict[str, Any]:
    return {"ModelName": "m", "PrimaryContainer": {"Image": "sklearn"}, **fields}


def container(**fields: Any) -> dict[str, Any]:
    return model(PrimaryContainer={"Image": "sklearn", **fields})


def error_of(shape: type[Shape], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        parse(shape, data)
    assert caught.value.code == "ValidationException"
    return caught.value.message


# -- the wire form ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "wire"),
    [(CreateModelInput, FULL_MODEL), (CreateEndpointConfigInput, FULL_CONFIG)],
    ids=["model", "endpoint-config"],
)
def test_pascal_case_round_trips(shape: type[Shape], wire: dict[str, Any]) -> None:
    assert dump(parse(shape, wire)) == wire


def test_irregular_aliases_keep_aws_spelling() -> None:
    serverless = parse(
        CreateEndpointConfigInput,
        config(
            variant(
                InstanceType=None,
                InitialInstanceCount=None,
                ServerlessConfig={"MemorySizeInMB": 2048, "MaxConcurrency": 5},
            )
        ),
    )
    instance = parse(
        CreateEndpointConfigInput,
        config(variant(VariantName="w", VolumeSizeInGB=4, EnableSSMAccess=False)),
    )

    parsed = serverless.production_variants[0].serverless_config
    assert parsed is not None
    assert parsed.memory_size_in_mb == 2048
    sized = instance.production_variants[0]
    assert (sized.volume_size_in_gb, sized.enable_ssm_access) == (4, False)
    assert dump(serverless)["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 5,
    }
    wire = dump(instance)["ProductionVariants"][0]
    assert (wire["VolumeSizeInGB"], wire["EnableSSMAccess"]) == (4, False)


def test_python_names_are_accepted_and_dumped_in_pascal_case() -> None:
    parsed = parse(CreateModelInput, {"model_name": "m", "primary_container": {"image": "x"}})

    assert dump(parsed) == {"ModelName": "m", "PrimaryContainer": {"Image": "x"}}


def test_omitted_optional_members_are_none_and_left_out_of_the_wire_form() -> None:
    parsed = parse(CreateModelInput, model())

    assert parsed.containers is None
    assert parsed.tags is None
    assert parsed.primary_container is not None
    assert parsed.primary_container.environment is None
    assert dump(parsed) == {"ModelName": "m", "PrimaryContainer": {"Image": "sklearn"}}


def test_list_inputs_default_to_newest_first_ten_at_a_time() -> None:
    query = parse(ListInput, None)

    assert (query.sort_by, query.sort_order, query.max_results) == (
        SortBy.CREATION_TIME,
        SortOrder.DESCENDING,
        10,
    )
    assert query.next_token is None


def test_times_and_enums_dump_as_json_values() -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    described = DescribeEndpointOutput(
        endpoint_name="ep",
        endpoint_arn="arn",
        endpoint_status=EndpointStatus.IN_SERVICE,
        creation_time=created,
        last_modified_time=created,
    )

    assert dump(described) == {
        "EndpointName": "ep",
        "EndpointArn": "arn",
        "EndpointStatus": "InService",
        "CreationTime": "2026-01-02T03:04:05Z",
        "LastModifiedTime": "2026-01-02T03:04:05Z",
    }


def test_a_stored_model_round_trips_through_json() -> None:
    stored = Model(
        **parse(CreateModelInput, FULL_MODEL).model_dump(),
        model_arn="arn:aws:sagemaker:us-east-1:123456789012:model/fraud-model",
        creation_time=datetime(2026, 1, 1, tzinfo=UTC),
    )

    assert Model.model_validate_json(stored.model_dump_json(by_alias=True)) == stored


# -- constraints, each named by its wire path -------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "data", "path", "constraint"),
    [
        pytest.param(
            CreateModelInput, model(ModelName="m" * 64), "modelName",
            "Member must have length less than or equal to 63", id="model-name-64",
        ),
        pytest.param(
            CreateModelInput, model(ModelName="-model"), "modelName",
            "Member must satisfy regular expression pattern", id="model-name-leading-hyphen",
        ),
        pytest.param(
            CreateModelInput, model(ModelName="my_model"), "modelName",
            "Member must satisfy regular expression pattern", id="model-name-underscore",
        ),
        pytest.param(
            CreateEndpointConfigInput, config(variant(), EndpointConfigName="c" * 64),
            "endpointConfigName", "Member must have length less than or equal to 63",
            id="config-name-64",
        ),
        pytest.param(
            CreateEndpointConfigInput, config(variant(), EndpointConfigName="config-"),
            "endpointConfigName", "Member must satisfy regular expression pattern",
            id="config-name-trailing-hyphen",
        ),
        pytest.param(
            CreateEndpointInput, {"EndpointName": "e" * 64, "EndpointConfigName": "c"},
            "endpointName", "Member must have length less than or equal to 63",
            id="endpoint-name-64",
        ),
        pytest.param(
            CreateEndpointInput, {"EndpointName": "my endpoint", "EndpointConfigName": "c"},
            "endpointName", "Member must satisfy regular expression pattern",
            id="endpoint-name-space",
        ),
        pytest.param(
            CreateEndpointConfigInput, config(variant(VariantName="v" * 64)),
            "productionVariants.1.member.variantName",
            "Member must have length less than or equal to 63", id="variant-name-64",
        ),
        pytest.param(
            CreateEndpointConfigInput, config(variant(), variant(VariantName="b.lue")),
            "productionVariants.2.member.variantName",
            "Member must satisfy regular expression pattern", id="variant-name-pattern",
        ),
        pytest.param(
            CreateEndpointConfigInput,
            config(variant(), variant(VariantName="w", InitialVariantWeight=-0.5)),
            "productionVariants.2.member.initialVariantWeight",
            "Member must have value greater than or equal to 0", id="weight-negative",
        ),
        pytest.param(
            CreateEndpointConfigInput, config(variant(InitialInstanceCount=0)),
            "productionVariants.1.member.initialInstanceCount",
            "Member must have value greater than or equal to 1", id="count-zero",
        ),
        pytest.param(
            CreateEndpointConfigInput, config(*[variant(VariantName=f"v{i}") for i in range(11)]),
            "productionVariants", "Member must have length less than or equal to 10",
            id="eleven-variants",
        ),
        pytest.param(
            CreateEndpointConfigInput, config(),
            "productionVariants", "Member must have length greater than or equal to 1",
            id="no-variants",
        ),
        pytest.param(
            CreateEndpointConfigInput, config(variant(VolumeSizeInGB=513)),
            "productionVariants.1.member.volumeSizeInGB",
            "Member must have value less than or equal to 512", id="volume-too-big",
        ),
        pytest.param(
            CreateEndpointConfigInput,
            config(variant(RoutingConfig={"RoutingStrategy": "ROUND_ROBIN"})),
            "productionVariants.1.member.routingConfig.routingStrategy",
            "Member must satisfy enum value set", id="routing-strategy-enum",
        ),
        pytest.param(
            CreateEndpointConfigInput,
            config(variant(InstanceType=None, InitialInstanceCount=None,
                           ServerlessConfig={"MemorySizeInMB": 512, "MaxConcurrency": 1})),
            "productionVariants.1.member.serverlessConfig.memorySizeInMB",
            "Member must have value greater than or equal to 1024", id="serverless-memory",
        ),
        pytest.param(
            CreateModelInput, model(Tags=[{"Key": "", "Value": "x"}]), "tags.1.member.key",
            "Member must have length greater than or equal to 1", id="tag-key-empty",
        ),
        pytest.param(
            CreateModelInput, model(Bogus=1), "bogus",
            "Member is not a known field of this request", id="unknown-field",
        ),
        pytest.param(
            CreateModelInput, container(Colour="red"), "primaryContainer.colour",
            "Member is not a known field of this request", id="unknown-nested-field",
        ),
        pytest.param(
            ListInput, {"MaxResults": 101}, "maxResults",
            "Member must have value less than or equal to 100", id="max-results",
        ),
        pytest.param(
            ListInput, {"NameContains": "a_b"}, "nameContains",
            "Member must satisfy regular expression pattern", id="name-contains",
        ),
    ],
)  # fmt: skip
def test_each_constraint_names_its_field_path(
    shape: type[Shape], data: dict[str, Any], path: str, constraint: str
) -> None:
    message = error_of(shape, data)

    assert message.startswith("1 validation error detected: Value ")
    assert f" at '{path}' failed to satisfy constraint: {constraint}" in message


def test_a_value_is_quoted_the_way_aws_quotes_it() -> None:
    message = error_of(CreateModelInput, model(ModelName="m" * 64))

    assert message == (
        f"1 validation error detected: Value '{'m' * 64}' at 'modelName' failed to satisfy "
        "constraint: Member must have length less than or equal to 63"
    )


def test_sixty_three_character_names_are_accepted() -> None:
    name = "a" + "-b" * 31
    assert len(name) == 63

    parsed = parse(
        CreateEndpointConfigInput, config(variant(VariantName=name), EndpointConfigName=name)
    )

    assert parsed.production_variants[0].variant_name == name


def test_several_errors_are_counted_and_all_named() -> None:
    message = error_of(
        CreateEndpointConfigInput,
        config(variant(InitialInstanceCount=0, InitialVariantWeight=-1), EndpointConfigName="-"),
    )

    assert message.startswith("3 validation errors detected: ")
    for path in (
        "endpointConfigName",
        "productionVariants.1.member.initialInstanceCount",
        "productionVariants.1.member.initialVariantWeight",
    ):
        assert f"at '{path}'" in message


def test_a_missing_required_member_is_null() -> None:
    message = error_of(CreateEndpointInput, {"EndpointConfigName": "c"})

    assert message == (
        "1 validation error detected: Value null at 'endpointName' failed to satisfy "
        "constraint: Member must not be null"
    )


def test_a_missing_required_member_names_its_path() -> None:
    message = error_of(CreateEndpointInput, {"EndpointConfigName": "c"})

    assert "at 'endpointName' failed to satisfy constraint: Member must not be null" in message


# -- rules across fields ----------------------------------------------------------------------


@pytest.mark.parametrize("names", [("blue", "blue"), ("Blue", "bLUE")])
def test_duplicate_variant_names_are_refused_in_any_case(names: tuple[str, str]) -> None:
    message = error_of(
        CreateEndpointConfigInput, config(*(variant(VariantName=name) for name in names))
    )

    assert f"Variant name '{names[1]}' is used more than once" in message
    assert "unique" in message


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            model(Containers=[{"Image": "sklearn"}]),
            id="both",
        ),
        pytest.param({"ModelName": "m"}, id="neither"),
    ],
)
def test_exactly_one_of_primary_container_and_containers(data: dict[str, Any]) -> None:
    message = error_of(CreateModelInput, data)

    assert "Specify exactly one of PrimaryContainer and Containers." in message


def test_an_empty_containers_list_is_refused() -> None:
    message = error_of(CreateModelInput, {"ModelName": "m", "Containers": []})

    assert "Containers must hold at least one container." in message


def test_every_variant_weight_zero_is_refused() -> None:
    message = error_of(
        CreateEndpointConfigInput,
        config(variant(InitialVariantWeight=0), variant(VariantName="w", InitialVariantWeight=0)),
    )

    assert "InitialVariantWeight above 0" in message


def test_one_variant_weight_zero_is_accepted() -> None:
    parsed = parse(
        CreateEndpointConfigInput,
        config(variant(InitialVariantWeight=0), variant(VariantName="w")),
    )

    assert [v.weight for v in parsed.production_variants] == [0.0, 1.0]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"InstanceType": None}, "needs InstanceType and InitialInstanceCount"),
        ({"InitialInstanceCount": None}, "needs InstanceType and InitialInstanceCount"),
        (
            {"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1}},
            "cannot have both ServerlessConfig and InstanceType/InitialInstanceCount",
        ),
        ({"ModelName": None}, "must name a ModelName"),
    ],
)
def test_a_variant_is_instance_based_or_serverless(fields: dict[str, Any], fragment: str) -> None:
    message = error_of(CreateEndpointConfigInput, config(variant(**fields)))

    assert message.startswith("1 validation error detected: Variant 'v' ")
    assert fragment in message


# -- the environment --------------------------------------------------------------------------

BAD_ENVIRONMENTS = [
    pytest.param({"1STARTS_WITH_DIGIT": "x"}, id="key-digit"),
    pytest.param({"HAS-HYPHEN": "x"}, id="key-hyphen"),
    pytest.param({f"VAR_{i}": "x" for i in range(101)}, id="101-variables"),
    pytest.param({"LONG": "v" * 1025}, id="value-1025"),
]


def test_a_hundred_variables_with_good_keys_are_accepted() -> None:
    env = {f"VAR_{i}": "x" for i in range(100)} | {"_x": "1"}
    del env["VAR_0"]

    parsed = parse(CreateModelInput, container(Environment=env))

    assert parsed.primary_container is not None
    assert parsed.primary_container.environment == env


@pytest.mark.parametrize("env", BAD_ENVIRONMENTS)
def test_a_bad_environment_is_refused(env: dict[str, str]) -> None:
    message = error_of(CreateModelInput, container(Environment=env))

    assert "nvironment" in message


@pytest.mark.parametrize("env", BAD_ENVIRONMENTS)
def test_a_bad_environment_names_its_field_path(env: dict[str, str]) -> None:
    message = error_of(CreateModelInput, container(Environment=env))

    assert "at 'primaryContainer.environment'" in message


def test_environments_over_32_kb_together_are_refused() -> None:
    env = {f"VAR_{i}": "v" * 1000 for i in range(34)}

    message = error_of(CreateModelInput, {"ModelName": "m", "Containers": [
        {"Image": "sklearn", "Environment": env}]})  # fmt: skip

    assert "exceed 32 KB" in message


# -- names and ARNs ---------------------------------------------------------------------------


def test_arns_lower_case_the_name() -> None:
    assert Account().arn("endpoint", "DEMO-x") == (
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint/demo-x"
    )


@pytest.mark.parametrize("kind", ["model", "endpoint-config", "endpoint", "transform-job"])
def test_arns_carry_region_account_and_kind(kind: str) -> None:
    account = Account(region="eu-west-1", account_id="210987654321")

    assert (
        account.arn(kind, "My-Thing") == f"arn:aws:sagemaker:eu-west-1:210987654321:{kind}/my-thing"
    )


def test_list_endpoints_input_takes_its_extra_filters() -> None:
    query = parse(
        ListEndpointsInput,
        {"StatusEquals": "InService", "LastModifiedTimeAfter": "2026-01-01T00:00:00Z"},
    )

    assert query.status_equals is EndpointStatus.IN_SERVICE
    assert query.last_modified_time_after == datetime(2026, 1, 1, tzinfo=UTC)


# --- strict scalars -----------------------------------------------------------------------------


def config_with(**fields: Any) -> dict[str, Any]:
    return {"EndpointConfigName": "c", "ProductionVariants": [variant(**fields)]}


@pytest.mark.parametrize(
    ("fields", "shown", "rule"),
    [
        ({"InitialInstanceCount": "2"}, "'2'", "Member must be an integer"),
        ({"InitialInstanceCount": True}, "True", "Member must be an integer"),
        ({"InitialInstanceCount": 2.0}, "2.0", "Member must be an integer"),
        ({"InitialVariantWeight": "0.5"}, "'0.5'", "Member must be a number"),
        ({"InitialVariantWeight": False}, "False", "Member must be a number"),
        ({"EnableSSMAccess": "true"}, "'true'", "Member must be a boolean"),
        ({"EnableSSMAccess": 1}, "1", "Member must be a boolean"),
        ({"InstanceType": 5}, "5", "Member must be a string"),
    ],
)
def test_a_scalar_of_the_wrong_json_type_is_refused_naming_its_member(
    fields: dict[str, Any], shown: str, rule: str
) -> None:
    member = next(iter(fields))
    path = "productionVariants.1.member." + member[0].lower() + member[1:]
    with pytest.raises(ValidationError) as caught:
        parse(CreateEndpointConfigInput, config_with(**fields))
    assert caught.value.message == (
        f"1 validation error detected: Value {shown} at '{path}' failed to satisfy constraint: "
        f"{rule}"
    )


def test_nested_and_mapped_strings_are_strict_too() -> None:
    with pytest.raises(
        ValidationError, match=r"primaryContainer\.environment\.a.*Member must be a string"
    ):
        parse(
            CreateModelInput,
            {"ModelName": "m", "PrimaryContainer": {"Image": "sklearn", "Environment": {"A": 1}}},
        )
    with pytest.raises(ValidationError, match=r"maxResults.*Member must be an integer"):
        parse(ListInput, {"MaxResults": "5"})


def test_integers_are_numbers_and_enums_and_timestamps_read_as_the_json_wires_send_them() -> None:
    config = parse(CreateEndpointConfigInput, config_with(InitialVariantWeight=2))
    assert config.production_variants[0].initial_variant_weight == 2.0
    listed = parse(
        ListInput,
        {"SortBy": "Name", "SortOrder": "Ascending", "CreationTimeAfter": 1700000000.5},
    )
    assert listed.sort_by is SortBy.NAME
    assert listed.creation_time_after == datetime.fromtimestamp(1700000000.5, UTC)
    iso = parse(ListInput, {"CreationTimeBefore": "2026-01-02T03:04:05Z"})
    assert iso.creation_time_before == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_stored_shapes_still_read_back() -> None:
    config = parse(CreateEndpointConfigInput, FULL_CONFIG)
    again = CreateEndpointConfigInput.model_validate_json(config.model_dump_json(by_alias=True))
    assert again == config


# --- weights ------------------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [float("inf"), float("nan"), 1.7e308])
def test_a_variant_weight_must_be_finite_and_small_enough_to_add_up(weight: float) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(CreateEndpointConfigInput, config_with(InitialVariantWeight=weight))
    assert "at 'productionVariants.1.member.initialVariantWeight'" in caught.value.message


def test_ten_of_the_largest_weights_add_up_to_a_finite_number() -> None:
    variants = [variant(VariantName=f"v{i}", InitialVariantWeight=1e307) for i in range(10)]
    config = parse(
        CreateEndpointConfigInput, {"EndpointConfigName": "c", "ProductionVariants": variants}
    )
    assert math.isfinite(sum(v.weight for v in config.production_variants))


@pytest.mark.parametrize("weight", [float("inf"), float("nan"), 1.7e308, "1"])
def test_a_desired_weight_must_be_a_finite_number(weight: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(
            UpdateEndpointWeightsAndCapacitiesInput,
            {
                "EndpointName": "e",
                "DesiredWeightsAndCapacities": [{"VariantName": "v", "DesiredWeight": weight}],
            },
        )
    assert "at 'desiredWeightsAndCapacities.1.member.desiredWeight'" in caught.value.message
