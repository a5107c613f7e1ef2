"""Model, endpoint-configuration and endpoint services over a real SQLite store and real files."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipway.domain.clock import ManualClock
from shipway.domain.deployment import UpdateEndpointInput
from shipway.domain.endpoint import CreateEndpointInput, EndpointStatus
from shipway.domain.endpoint_config import CreateEndpointConfigInput
from shipway.domain.errors import (
    AlreadyExists,
    InvalidState,
    NotFound,
    ValidationError,
)
from shipway.domain.instance import Instance, InstanceStatus
from shipway.domain.instance_types import InstanceTypeCatalog
from shipway.domain.listing import ListEndpointsInput, ListInput, SortBy, SortOrder
from shipway.domain.model import CreateModelInput
from shipway.domain.names import Account
from shipway.domain.shape import parse
from shipway.service import EndpointConfigService, EndpointService, ModelService
from shipway.store.artifact_use import release_unused
from shipway.store.artifacts import ArtifactStore
from shipway.store.metadata import MetadataStore

ACCOUNT = Account()
ARN = "arn:aws:sagemaker:us-east-1:123456789012"


@dataclass
class Services:
    store: MetadataStore
    clock: ManualClock
    models: ModelService
    configs: EndpointConfigService
    endpoints: EndpointService
    changes: list[str]
    model_dir: Path

    def model(self, name: str = "m", **container: Any) -> str:
        request = parse(
            CreateModelInput,
            {
                "ModelName": name,
                "PrimaryContainer": {
                    "Image": "sklearn",
                    "ModelDataUrl": str(self.model_dir),
                    **container,
                },
            },
        )
        return self.models.create_model(request).model_arn

    def config(self, name: str = "c", *variants: dict[str, Any], **fields: Any) -> str:
        request = parse(
            CreateEndpointConfigInput,
            {
                "EndpointConfigName": name,
                "ProductionVariants": list(variants) or [variant()],
                **fields,
            },
        )
        return self.configs.create_endpoint_config(request).endpoint_config_arn

    def endpoint(self, name: str = "e", config: str = "c", **fields: Any) -> str:
        request = parse(
            CreateEndpointInput, {"EndpointName": name, "EndpointConfigName": config, **fields}
        )
        return self.endpoints.create_endpoint(request).endpoint_arn


def variant(name: str = "primary", model: str = "m", **fields: Any) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
        **fields,
    }


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.joblib").write_bytes(b"not really a model")
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    clock = ManualClock()
    changes: list[str] = []
    try:
        yield Services(
            store=store,
            clock=clock,
            models=ModelService(store, ArtifactStore(tmp_path / "cache"), ACCOUNT, clock),
            configs=EndpointConfigService(store, InstanceTypeCatalog.load(), ACCOUNT, clock),
            endpoints=EndpointService(store, ACCOUNT, clock, on_change=changes.append),
            changes=changes,
            model_dir=model_dir,
        )
    finally:
        store.close()


# -- models -----------------------------------------------------------------------------------


def test_create_and_describe_a_model(services: Services) -> None:
    arn = services.model("Fraud-Model", Environment={"THREADS": "2"})

    assert arn == f"{ARN}:model/fraud-model"
    described = services.models.describe_model("fraud-model")
    assert described.model_name == "Fraud-Model"
    assert described.model_arn == arn
    assert described.creation_time == services.clock.now()
    assert described.primary_container is not None
    assert described.primary_container.environment == {"THREADS": "2"}
    assert described.primary_container.model_data_url == str(services.model_dir)


def test_list_models_pages_summaries(services: Services) -> None:
    for i in range(5):
        services.model(f"m{i}")
        services.clock.advance(1)

    first, token = services.models.list_models(ListInput(max_results=3))
    second, last = services.models.list_models(ListInput(max_results=3, next_token=token))

    assert [m.model_name for m in first] == ["m4", "m3", "m2"]
    assert [m.model_name for m in second] == ["m1", "m0"]
    assert last is None
    assert first[0].model_arn == f"{ARN}:model/m4"


def test_delete_a_model(services: Services) -> None:
    services.model("m")

    services.models.delete_model("M")

    with pytest.raises(NotFound):
        services.models.describe_model("m")
    assert services.models.list_models(ListInput()) == ([], None)


@pytest.mark.parametrize("operation", ["describe_model", "delete_model"])
def test_a_missing_model_is_not_found_by_its_arn(services: Services, operation: str) -> None:
    with pytest.raises(NotFound) as caught:
        getattr(services.models, operation)("x")

    assert caught.value.message == f'Could not find model "{ARN}:model/x".'


def test_a_model_name_taken_in_any_case_already_exists(services: Services) -> None:
    services.model("Dup")

    with pytest.raises(AlreadyExists) as caught:
        services.model("DUP")

    assert caught.value.message == f'Cannot create already existing model "{ARN}:model/dup".'
    assert caught.value.code == "ValidationException"


def test_a_model_data_url_that_does_not_exist_is_a_validation_error(
    services: Services, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "model.tar.gz"

    with pytest.raises(ValidationError, match="does not exist"):
        services.model("m", ModelDataUrl=str(missing))

    assert services.store.models.get("m") is None


@pytest.mark.parametrize(
    ("container", "fragment"),
    [
        pytest.param({"Image": "tensorflow-serving"}, "matches no runtime", id="unknown-image"),
        pytest.param({"Image": None}, "must name a runtime", id="no-image"),
        pytest.param({"ModelDataUrl": None}, "needs a ModelDataUrl", id="no-model-data"),
        pytest.param(
            {
                "ModelDataUrl": None,
                "ModelDataSource": {
                    "S3DataSource": {
                        "S3Uri": "s3://bucket/model/",
                        "S3DataType": "S3Prefix",
                        "CompressionType": "None",
                    }
                },
            },
            "ModelDataSource is not supported yet",
            id="model-data-source",
        ),
    ],
)
def test_a_container_the_platform_cannot_run_is_a_validation_error(
    services: Services, container: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ValidationError, match=fragment):
        services.model("m", **container)

    assert services.store.models.get("m") is None


def test_a_single_container_in_containers_is_accepted(services: Services) -> None:
    container = {"Image": "sklearn", "ModelDataUrl": str(services.model_dir)}
    request = parse(CreateModelInput, {"ModelName": "m", "Containers": [container]})

    services.models.create_model(request)

    assert services.models.describe_model("m").containers is not None


# -- unsupported features ---------------------------------------------------------------------


def test_two_containers_are_not_supported_yet(services: Services) -> None:
    container = {"Image": "sklearn", "ModelDataUrl": str(services.model_dir)}
    request = parse(CreateModelInput, {"ModelName": "m", "Containers": [container, container]})

    with pytest.raises(ValidationError, match="not supported yet"):
        services.models.create_model(request)


def test_multi_model_mode_is_not_supported_yet(services: Services) -> None:
    with pytest.raises(ValidationError, match="MultiModel is not supported yet"):
        services.model("m", Mode="MultiModel")


@pytest.mark.parametrize(
    ("fields", "variants", "feature"),
    [
        pytest.param(
            {"DataCaptureConfig": {"InitialSamplingPercentage": 100,
                                   "DestinationS3Uri": "s3://b/capture",
                                   "CaptureOptions": [{"CaptureMode": "Input"}]}},
            [variant()], "DataCaptureConfig", id="data-capture",
        ),
    ],
)  # fmt: skip
def test_endpoint_config_features_not_supported_yet(
    services: Services, fields: dict[str, Any], variants: list[dict[str, Any]], feature: str
) -> None:
    services.model("m")

    with pytest.raises(ValidationError, match=f"{feature} is not supported yet"):
        services.config("c", *variants, **fields)

    assert services.store.endpoint_configs.get("c") is None


@pytest.mark.parametrize(
    ("deployment_config", "message"),
    [
        ({"RollingUpdatePolicy": {}}, "rollingUpdatePolicy.maximumBatchSize"),
        (
            {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "nope"}]}},
            "alarm that does not exist: nope",
        ),
    ],
)
def test_create_endpoint_rejects_a_bad_deployment_config(
    services: Services, deployment_config: dict[str, Any], message: str
) -> None:
    services.model("m")
    services.config("c")

    with pytest.raises(ValidationError, match=message):
        services.endpoint("e", "c", DeploymentConfig=deployment_config)

    assert services.store.endpoints.get("e") is None
    assert services.changes == []


# -- endpoint configurations ------------------------------------------------------------------


def test_create_describe_list_and_delete_an_endpoint_config(services: Services) -> None:
    services.model("m")

    arn = services.config("Blue-Green", variant("blue"), variant("green", InitialVariantWeight=0))

    assert arn == f"{ARN}:endpoint-config/blue-green"
    described = services.configs.describe_endpoint_config("BLUE-GREEN")
    assert described.endpoint_config_name == "Blue-Green"
    assert described.creation_time == services.clock.now()
    assert [(v.variant_name, v.weight) for v in described.production_variants] == [
        ("blue", 1.0),
        ("green", 0.0),
    ]
    summaries, token = services.configs.list_endpoint_configs(ListInput())
    assert [(s.endpoint_config_name, s.endpoint_config_arn) for s in summaries] == [
        ("Blue-Green", arn)
    ]
    assert token is None

    services.configs.delete_endpoint_config("blue-green")

    assert services.configs.list_endpoint_configs(ListInput()) == ([], None)


@pytest.mark.parametrize("operation", ["describe_endpoint_config", "delete_endpoint_config"])
def test_a_missing_endpoint_config_is_not_found_by_its_arn(
    services: Services, operation: str
) -> None:
    with pytest.raises(NotFound) as caught:
        getattr(services.configs, operation)("x")

    assert (
        caught.value.message == f'Could not find endpoint configuration "{ARN}:endpoint-config/x".'
    )


def test_an_endpoint_config_name_taken_already_exists(services: Services) -> None:
    services.model("m")
    services.config("c")

    with pytest.raises(AlreadyExists) as caught:
        services.config("C")

    assert caught.value.message == (
        f'Cannot create already existing endpoint configuration "{ARN}:endpoint-config/c".'
    )


def test_a_config_naming_a_missing_model_is_not_found_for_the_model(services: Services) -> None:
    services.model("m")

    with pytest.raises(NotFound) as caught:
        services.config("c", variant("a"), variant("b", model="ghost"))

    assert caught.value.message == f'Could not find model "{ARN}:model/ghost".'
    assert services.store.endpoint_configs.get("c") is None


def test_a_config_may_name_its_model_in_another_case(services: Services) -> None:
    services.model("MyModel")

    services.config("c", variant(model="mymodel"))

    assert services.configs.describe_endpoint_config("c").production_variants[0].model_name == (
        "mymodel"
    )


def test_an_unknown_instance_type_is_a_validation_error_listing_known_types(
    services: Services,
) -> None:
    services.model("m")

    with pytest.raises(ValidationError) as caught:
        services.config("c", variant(InstanceType="ml.z9.huge"))

    message = caught.value.message
    assert message.startswith("Instance type 'ml.z9.huge' is not in the catalog. Known types: ")
    for known in ("local", "ml.m5.large", "ml.g5.xlarge"):
        assert known in message
    assert services.store.endpoint_configs.get("c") is None


def test_an_endpoint_config_an_endpoint_uses_can_be_deleted(services: Services) -> None:
    """As on SageMaker: the endpoint keeps its copy and still names the config."""
    services.model("m")
    services.config("c")
    services.endpoint("orders", "c")

    services.configs.delete_endpoint_config("C")

    assert services.store.endpoint_configs.get("c") is None
    described = services.endpoints.describe_endpoint("orders")
    assert described.endpoint_config_name == "c"
    assert services.config("c", variant(name="other")) == f"{ARN}:endpoint-config/c"
    endpoint = services.store.endpoints.get("orders")
    assert endpoint is not None
    assert [v.variant_name for v in endpoint.config.production_variants] == ["primary"]


# -- endpoints --------------------------------------------------------------------------------


def test_create_endpoint_is_creating_and_wakes_the_controller(services: Services) -> None:
    services.model("m")
    services.config("c", variant("blue", InitialInstanceCount=2, InitialVariantWeight=3))

    arn = services.endpoint("Orders", "C")

    assert arn == f"{ARN}:endpoint/orders"
    assert services.changes == ["Orders"]
    described = services.endpoints.describe_endpoint("orders")
    assert described.endpoint_name == "Orders"
    assert described.endpoint_status is EndpointStatus.CREATING
    assert described.endpoint_config_name == "c"
    assert described.creation_time == described.last_modified_time == services.clock.now()
    assert described.production_variants is not None
    (blue,) = described.production_variants
    assert (blue.variant_name, blue.desired_instance_count, blue.desired_weight) == ("blue", 2, 3)
    assert blue.current_instance_count == 0
    assert blue.current_weight is None  # no traffic while Creating
    assert blue.deployed_images is not None
    assert blue.deployed_images[0].specified_image == "sklearn"


def test_describe_counts_in_service_instances_of_the_current_generation(
    services: Services,
) -> None:
    services.model("m")
    services.config("c", variant("blue", InitialInstanceCount=3))
    services.endpoint("e", "c")
    for instance_id, status, generation in [
        ("i-1", InstanceStatus.IN_SERVICE, 1),
        ("i-2", InstanceStatus.IN_SERVICE, 1),
        ("i-3", InstanceStatus.STARTING, 1),
        ("i-4", InstanceStatus.IN_SERVICE, 0),
    ]:
        services.store.instances.put(
            Instance(instance_id, "e", "blue", "ml.m5.large", "m", generation, status)
        )
    endpoint = services.endpoints.get("e")
    services.store.endpoints.put(
        endpoint.model_copy(update={"endpoint_status": EndpointStatus.IN_SERVICE})
    )

    described = services.endpoints.describe_endpoint("e")

    assert described.production_variants is not None
    (blue,) = described.production_variants
    assert (blue.current_instance_count, blue.desired_instance_count) == (2, 3)
    assert blue.current_weight == 1.0
    assert sorted(i.instance_id for i in services.endpoints.list_instances("E")) == [
        "i-1", "i-2", "i-3", "i-4"
    ]  # fmt: skip


def test_an_endpoint_keeps_a_private_copy_of_its_config(services: Services) -> None:
    services.model("m")
    services.config("c", variant("blue"))
    services.endpoint("e", "c")

    stored = services.endpoints.get("e")

    assert stored.config == services.configs.describe_endpoint_config("c")
    assert [(v.variant_name, v.desired_instance_count) for v in stored.variants] == [("blue", 1)]


def test_list_endpoints_filters_by_status(services: Services) -> None:
    services.model("m")
    services.config("c")
    for name in ("a", "b", "c"):
        services.endpoint(name, "c")
        services.clock.advance(1)
    services.endpoints.delete_endpoint("b")

    summaries, token = services.endpoints.list_endpoints(
        ListEndpointsInput(status_equals=EndpointStatus.CREATING, sort_by=SortBy.NAME,
                           sort_order=SortOrder.ASCENDING)
    )  # fmt: skip

    assert [(s.endpoint_name, s.endpoint_status) for s in summaries] == [
        ("a", EndpointStatus.CREATING),
        ("c", EndpointStatus.CREATING),
    ]
    assert token is None


def test_delete_endpoint_marks_it_deleting_and_wakes_the_controller(services: Services) -> None:
    services.model("m")
    services.config("c")
    services.endpoint("e", "c")
    services.clock.advance(30)

    services.endpoints.delete_endpoint("E")

    described = services.endpoints.describe_endpoint("e")
    assert described.endpoint_status is EndpointStatus.DELETING
    assert described.last_modified_time == services.clock.now()
    assert services.changes == ["e", "e"]


def test_deleting_a_deleting_endpoint_changes_nothing(services: Services) -> None:
    services.model("m")
    services.config("c")
    services.endpoint("e", "c")
    services.endpoints.delete_endpoint("e")

    services.endpoints.delete_endpoint("e")

    assert services.endpoints.get("e").endpoint_status is EndpointStatus.DELETING
    assert services.changes == ["e", "e"]


@pytest.mark.parametrize("status", [EndpointStatus.UPDATING, EndpointStatus.ROLLING_BACK])
def test_an_endpoint_being_updated_cannot_be_deleted(
    services: Services, status: EndpointStatus
) -> None:
    services.model("m")
    services.config("c")
    services.endpoint("e", "c")
    services.store.endpoints.put(
        services.endpoints.get("e").model_copy(update={"endpoint_status": status})
    )

    with pytest.raises(InvalidState, match=status.value):
        services.endpoints.delete_endpoint("e")

    assert services.endpoints.get("e").endpoint_status is status


@pytest.mark.parametrize(
    "operation", ["describe_endpoint", "delete_endpoint", "get", "list_instances"]
)
def test_a_missing_endpoint_is_not_found_by_its_arn(services: Services, operation: str) -> None:
    with pytest.raises(NotFound) as caught:
        getattr(services.endpoints, operation)("Gone")

    assert caught.value.message == f'Could not find endpoint "{ARN}:endpoint/gone".'


def test_an_endpoint_name_taken_already_exists(services: Services) -> None:
    services.model("m")
    services.config("c")
    services.endpoint("e", "c")

    with pytest.raises(AlreadyExists) as caught:
        services.endpoint("E", "c")

    assert caught.value.message == f'Cannot create already existing endpoint "{ARN}:endpoint/e".'
    assert services.changes == ["e"]


def test_an_endpoint_naming_a_missing_config_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound) as caught:
        services.endpoint("e", "nope")

    assert caught.value.message == (
        f'Could not find endpoint configuration "{ARN}:endpoint-config/nope".'
    )
    assert services.changes == []


def test_an_endpoint_whose_model_was_deleted_is_not_found_for_the_model(
    services: Services,
) -> None:
    services.model("m")
    services.config("c")
    services.models.delete_model("m")

    with pytest.raises(NotFound) as caught:
        services.endpoint("e", "c")

    assert caught.value.message == f'Could not find model "{ARN}:model/m".'
    assert services.store.endpoints.get("e") is None


def test_a_model_an_endpoint_runs_can_be_deleted_and_its_name_reused(
    services: Services, tmp_path: Path
) -> None:
    """As on SageMaker: the endpoint runs its own copy of the model, whatever happens to it."""
    services.model("m")
    services.config("c")
    services.endpoint("orders", "c")

    services.models.delete_model("M")

    assert services.store.models.get("m") is None
    other = tmp_path / "other"
    other.mkdir()
    services.model("m", Image="xgboost", ModelDataUrl=str(other))
    endpoint = services.store.endpoints.get("orders")
    assert endpoint is not None
    assert [m.model_name for m in endpoint.models] == ["m"]
    container = endpoint.models[0].primary_container
    assert container is not None
    assert (container.image, container.model_data_url) == ("sklearn", str(services.model_dir))
    variants = services.endpoints.describe_endpoint("orders").production_variants or []
    images = variants[0].deployed_images or []
    assert images[0].specified_image == "sklearn"


def test_an_endpoint_keeps_the_cached_artifact_of_a_deleted_model_until_it_goes(
    services: Services, tmp_path: Path
) -> None:
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "model.joblib").write_bytes(b"weights")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "packed" / "model.joblib", arcname="model.joblib")
    artifacts = ArtifactStore(tmp_path / "cache")  # the cache the model service releases from
    services.model("m", ModelDataUrl=str(archive))
    entry = artifacts.fetch(str(archive))
    services.config("c")
    services.endpoint("e", "c")

    services.models.delete_model("m")

    assert entry.is_dir()  # the endpoint's copy still needs it
    endpoint = services.store.endpoints.get("e")
    assert endpoint is not None
    services.store.endpoints.remove("e")  # what the controller does once instances stopped
    assert release_unused(services.store, artifacts, endpoint.models_in_use()) == [entry]
    assert not entry.exists()


def test_a_model_can_be_deleted_once_its_endpoint_is_gone(services: Services) -> None:
    services.model("m")
    services.config("c")
    services.endpoint("e", "c")
    services.endpoints.delete_endpoint("e")
    services.store.endpoints.remove("e")  # what the controller does once instances stopped

    services.configs.delete_endpoint_config("c")
    services.models.delete_model("m")

    assert services.store.models.get("m") is None


def test_an_endpoint_being_deleted_no_longer_holds_its_config_and_model(
    services: Services,
) -> None:
    services.model("m")
    services.config("c")
    services.endpoint("e", "c")
    services.endpoints.delete_endpoint("e")  # Deleting: the controller has not removed it yet

    services.configs.delete_endpoint_config("c")
    services.models.delete_model("m")

    assert services.store.endpoint_configs.get("c") is None
    assert services.store.models.get("m") is None


def test_the_config_and_models_a_deployment_moves_to_can_be_deleted(
    services: Services,
) -> None:
    services.model("m")
    services.model("m2")
    services.config("c")
    services.config("c2", variant(model="m2"))
    services.endpoint("e", "c")
    services.store.endpoints.update(
        "e", lambda e: e.model_copy(update={"endpoint_status": EndpointStatus.IN_SERVICE})
    )
    services.endpoints.update_endpoint(
        parse(UpdateEndpointInput, {"EndpointName": "e", "EndpointConfigName": "c2"})
    )

    services.configs.delete_endpoint_config("c2")
    services.models.delete_model("m2")
    services.models.delete_model("m")

    endpoint = services.store.endpoints.get("e")
    assert endpoint is not None
    assert endpoint.deployment is not None
    assert [m.model_name for m in endpoint.models] == ["m"]
    assert [m.model_name for m in endpoint.deployment.models] == ["m2"]
    assert endpoint.deployment.config.endpoint_config_name == "c2"


def test_an_async_config_is_kept_and_its_paths_checked(services: Services) -> None:
    services.model("m")
    output = {"S3OutputPath": "s3://bucket/out", "S3FailurePath": "s3://bucket/failed"}
    services.config("c", variant(), AsyncInferenceConfig={"OutputConfig": output})

    stored = services.store.endpoint_configs.get("c")
    assert stored is not None
    assert stored.async_inference_config is not None
    assert stored.async_inference_config.output_config.failure_path == "s3://bucket/failed"
    with pytest.raises(ValidationError, match="https://"):
        services.config(
            "d", variant(), AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "https://x/y"}}
        )
    with pytest.raises(ValidationError, match="needs an S3OutputPath"):
        services.config(
            "e", variant(), AsyncInferenceConfig={"OutputConfig": {"S3FailurePath": "s3://b/f"}}
        )
