"""MetadataStore on SQLite and PostgreSQL: names, compare-and-set, paging, filters, migrations."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipway.domain.clock import ManualClock
from shipway.domain.endpoint import Endpoint, EndpointStatus, VariantState
from shipway.domain.endpoint_config import EndpointConfig, ProductionVariant
from shipway.domain.errors import AlreadyExists, ValidationError
from shipway.domain.instance import Instance, InstanceStatus
from shipway.domain.listing import ListEndpointsInput, ListInput, SortBy, SortOrder
from shipway.domain.model import ContainerDefinition, Model
from shipway.domain.names import Account
from shipway.domain.shape import parse
from shipway.store.metadata import HEAD, MIGRATIONS, Collection, MetadataStore, migrate

ACCOUNT = Account()
START = ManualClock().now()


def make_model(name: str, created: datetime = START) -> Model:
    return Model(
        model_name=name,
        primary_container=ContainerDefinition(image="sklearn", model_data_url="/models/m"),
        model_arn=ACCOUNT.arn("model", name),
        creation_time=created,
    )


def make_config(name: str, created: datetime = START) -> EndpointConfig:
    return EndpointConfig(
        endpoint_config_name=name,
        production_variants=[
            ProductionVariant(
                variant_name="primary",
                model_name="m",
                instance_type="ml.m5.large",
                initial_instance_count=1,
            )
        ],
        endpoint_config_arn=ACCOUNT.arn("endpoint-config", name),
        creation_time=created,
    )


def make_endpoint(
    name: str,
    status: EndpointStatus = EndpointStatus.CREATING,
    created: datetime = START,
    modified: datetime | None = None,
) -> Endpoint:
    return Endpoint(
        endpoint_name=name,
        endpoint_arn=ACCOUNT.arn("endpoint", name),
        endpoint_config_name="config",
        endpoint_status=status,
        creation_time=created,
        last_modified_time=modified or created,
        config=make_config("config", created),
        variants=[VariantState(variant_name="primary", desired_weight=1, desired_instance_count=1)],
    )


def make_instance(
    instance_id: str, endpoint: str = "ep", status: InstanceStatus = InstanceStatus.STARTING
) -> Instance:
    return Instance(
        instance_id=instance_id,
        endpoint_name=endpoint,
        variant_name="primary",
        instance_type="ml.m5.large",
        model_name="m",
        generation=1,
        status=status,
        address=f"unix:/tmp/{instance_id}.sock",
    )


def list_all(collection: Collection[Model], query: ListInput) -> list[str]:
    """Follow NextToken to the end; the names in the order the pages gave them."""
    names: list[str] = []
    token: str | None = None
    for _ in range(100):
        items, token = collection.page(query.model_copy(update={"next_token": token}))
        assert len(items) <= query.max_results
        names += [item.model_name for item in items]
        if token is None:
            return names
    raise AssertionError("NextToken never ran out")


def token_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


# -- names ------------------------------------------------------------------------------------


def test_get_is_case_insensitive_and_keeps_the_original_case(store: MetadataStore) -> None:
    store.models.add(make_model("MyModel"), "model", ACCOUNT.arn("model", "MyModel"))

    for name in ("MyModel", "mymodel", "MYMODEL"):
        found = store.models.get(name)
        assert found is not None
        assert found.model_name == "MyModel"
    assert store.models.get("MyModel2") is None


def test_add_with_a_name_taken_in_another_case_is_already_exists(store: MetadataStore) -> None:
    store.models.add(make_model("MyModel"), "model", ACCOUNT.arn("model", "MyModel"))

    with pytest.raises(AlreadyExists) as caught:
        store.models.add(make_model("MYMODEL"), "model", ACCOUNT.arn("model", "MYMODEL"))

    assert caught.value.message == (
        'Cannot create already existing model "arn:aws:sagemaker:us-east-1:123456789012:'
        'model/mymodel".'
    )
    assert [m.model_name for m in store.models.all()] == ["MyModel"]


def test_remove_deletes_by_any_case_and_reports_whether_it_did(store: MetadataStore) -> None:
    store.models.add(make_model("Gone"), "model", "arn")

    assert store.models.remove("GONE") is True
    assert store.models.get("Gone") is None
    assert store.models.remove("Gone") is False


def test_put_replaces_the_stored_document(store: MetadataStore) -> None:
    store.endpoints.add(make_endpoint("ep"), "endpoint", "arn")
    endpoint = store.endpoints.get("ep")
    assert endpoint is not None

    changed = endpoint.model_copy(
        update={"endpoint_status": EndpointStatus.FAILED, "failure_reason": "model did not load"}
    )
    assert store.endpoints.put(changed) is True

    stored = store.endpoints.get("EP")
    assert stored is not None
    assert stored.endpoint_status is EndpointStatus.FAILED
    assert stored.failure_reason == "model did not load"


def test_put_of_an_item_never_added_replaces_nothing(store: MetadataStore) -> None:
    assert store.endpoints.put(make_endpoint("ghost")) is False
    assert store.endpoints.get("ghost") is None


def test_put_with_expected_status_lets_only_the_first_of_two_writers_win(
    store: MetadataStore,
) -> None:
    store.endpoints.add(make_endpoint("ep", EndpointStatus.CREATING), "endpoint", "arn")
    first = store.endpoints.get("ep")
    second = store.endpoints.get("ep")
    assert first is not None
    assert second is not None

    won = store.endpoints.put(
        first.model_copy(update={"endpoint_status": EndpointStatus.IN_SERVICE}),
        expected_status=EndpointStatus.CREATING.value,
    )
    lost = store.endpoints.put(
        second.model_copy(update={"endpoint_status": EndpointStatus.FAILED}),
        expected_status=EndpointStatus.CREATING.value,
    )

    assert (won, lost) == (True, False)
    stored = store.endpoints.get("ep")
    assert stored is not None
    assert stored.endpoint_status is EndpointStatus.IN_SERVICE


# -- paging -----------------------------------------------------------------------------------

STATUSES = [EndpointStatus.IN_SERVICE, EndpointStatus.CREATING, EndpointStatus.FAILED]


@pytest.fixture
def twenty_five_models(store: MetadataStore) -> list[str]:
    """25 models, three to a creation second (so sort keys tie), added out of name order."""
    names = [f"Model-{i:02d}" for i in range(25)]
    for i in random.Random(3).sample(range(25), 25):
        store.models.add(make_model(names[i], START + timedelta(seconds=i // 3)), "model", "arn")
    return names


@pytest.mark.parametrize("sort_by", [SortBy.NAME, SortBy.CREATION_TIME])
@pytest.mark.parametrize("sort_order", [SortOrder.ASCENDING, SortOrder.DESCENDING])
def test_paging_by_ten_gives_every_model_exactly_once_in_order(
    store: MetadataStore, twenty_five_models: list[str], sort_by: SortBy, sort_order: SortOrder
) -> None:
    query = ListInput(sort_by=sort_by, sort_order=sort_order, max_results=10)

    names = list_all(store.models, query)

    assert sorted(names) == sorted(twenty_five_models)
    assert len(names) == 25
    # ties in creation time go by name
    ascending = (
        sorted(twenty_five_models, key=str.lower)
        if sort_by is SortBy.NAME
        else sorted(twenty_five_models, key=lambda n: (int(n[-2:]) // 3, n.lower()))
    )
    expected = ascending if sort_order is SortOrder.ASCENDING else ascending[::-1]
    assert names == expected


def test_models_cannot_sort_by_status(store: MetadataStore) -> None:
    # SageMaker's ListModels and ListEndpointConfigs sort by Name or CreationTime only
    with pytest.raises(ValidationError, match="Name or CreationTime"):
        store.models.page(ListInput(sort_by=SortBy.STATUS))


def test_pages_have_max_results_items_and_the_last_has_no_token(
    store: MetadataStore, twenty_five_models: list[str]
) -> None:
    sizes = []
    token: str | None = None
    while True:
        items, token = store.models.page(ListInput(max_results=10, next_token=token))
        sizes.append(len(items))
        if token is None:
            break
    assert sizes == [10, 10, 5]


def test_exactly_max_results_items_give_no_next_token(store: MetadataStore) -> None:
    for i in range(10):
        store.models.add(make_model(f"m{i}"), "model", "arn")

    items, token = store.models.page(ListInput(max_results=10))

    assert len(items) == 10
    assert token is None


def test_the_default_order_is_newest_first(store: MetadataStore) -> None:
    for i in range(3):
        store.models.add(make_model(f"m{i}", START + timedelta(seconds=i)), "model", "arn")

    items, _ = store.models.page(ListInput())

    assert [m.model_name for m in items] == ["m2", "m1", "m0"]


@pytest.mark.parametrize("sort_order", [SortOrder.ASCENDING, SortOrder.DESCENDING])
def test_endpoints_page_by_status_exactly_once(store: MetadataStore, sort_order: SortOrder) -> None:
    expected = []
    for i in range(25):
        status = STATUSES[i % 3]
        name = f"ep-{i:02d}"
        store.endpoints.add(
            make_endpoint(name, status, START + timedelta(seconds=i % 4)), "endpoint", "arn"
        )
        expected.append((status.value, name))
    query = ListEndpointsInput(sort_by=SortBy.STATUS, sort_order=sort_order, max_results=10)

    seen = []
    token: str | None = None
    while True:
        items, token = store.endpoints.page(query.model_copy(update={"next_token": token}))
        seen += [(e.endpoint_status.value, e.endpoint_name) for e in items]
        if token is None:
            break

    expected.sort(reverse=sort_order is SortOrder.DESCENDING)
    assert seen == expected


def test_status_equals_and_last_modified_filters(store: MetadataStore) -> None:
    for i, status in enumerate(STATUSES * 2):
        created = START + timedelta(seconds=i)
        store.endpoints.add(
            make_endpoint(f"ep{i}", status, created, created + timedelta(hours=i)), "endpoint", ""
        )

    def names(**filters: object) -> list[str]:
        query = ListEndpointsInput(sort_order=SortOrder.ASCENDING, max_results=100, **filters)
        return [e.endpoint_name for e in store.endpoints.page(query)[0]]

    assert names(status_equals=EndpointStatus.FAILED) == ["ep2", "ep5"]
    assert names(last_modified_time_after=START + timedelta(hours=4, seconds=4)) == ["ep4", "ep5"]
    assert names(last_modified_time_before=START + timedelta(hours=1, seconds=1)) == ["ep0"]


def test_name_contains_is_case_insensitive(store: MetadataStore) -> None:
    for name in ("fraud-model", "FraudDetector", "churn", "antifraud"):
        store.models.add(make_model(name), "model", "arn")

    items, _ = store.models.page(
        ListInput(name_contains="FRAUD", sort_by=SortBy.NAME, sort_order=SortOrder.ASCENDING)
    )

    assert [m.model_name for m in items] == ["antifraud", "fraud-model", "FraudDetector"]


@pytest.mark.parametrize("wildcard", ["%", "_", "fraud%", "fr_ud"])
def test_name_contains_treats_sql_wildcards_literally(store: MetadataStore, wildcard: str) -> None:
    for name in ("fraud", "fraud-model", "churn"):
        store.models.add(make_model(name), "model", "arn")
    # The API refuses these characters; the store must not treat them as LIKE wildcards anyway.
    with pytest.raises(ValidationError, match="nameContains"):
        parse(ListInput, {"NameContains": wildcard})

    items, token = store.models.page(ListInput.model_construct(name_contains=wildcard))

    assert (items, token) == ([], None)


def test_creation_time_after_is_inclusive_and_before_is_exclusive(store: MetadataStore) -> None:
    for i in range(6):
        store.models.add(make_model(f"m{i}", START + timedelta(minutes=i)), "model", "arn")

    def names(**filters: datetime) -> list[str]:
        query = ListInput(sort_order=SortOrder.ASCENDING, **filters)
        return [m.model_name for m in store.models.page(query)[0]]

    assert names(creation_time_after=START + timedelta(minutes=2)) == ["m2", "m3", "m4", "m5"]
    assert names(creation_time_before=START + timedelta(minutes=2)) == ["m0", "m1"]
    assert names(
        creation_time_after=START + timedelta(minutes=1),
        creation_time_before=START + timedelta(minutes=4),
    ) == ["m1", "m2", "m3"]


def test_filters_hold_across_pages(store: MetadataStore, twenty_five_models: list[str]) -> None:
    query = ListInput(
        name_contains="model-1",
        creation_time_after=START + timedelta(seconds=4),
        sort_order=SortOrder.ASCENDING,
        max_results=2,
    )

    names = list_all(store.models, query)

    assert names == ["Model-12", "Model-13", "Model-14", "Model-15", "Model-16", "Model-17",
                     "Model-18", "Model-19"]  # fmt: skip


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not a token!", id="not-base64"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe{").decode(), id="not-json"),
        pytest.param(token_of([1.0, "m", "extra"]), id="three-parts"),
        pytest.param(token_of("m"), id="a-string"),
        pytest.param(token_of([1.0, 2]), id="key-not-a-string"),
    ],
)
def test_a_bad_next_token_is_a_validation_error(
    store: MetadataStore, twenty_five_models: list[str], token: str
) -> None:
    with pytest.raises(ValidationError, match="NextToken"):
        store.models.page(ListInput(next_token=token))


def test_a_next_token_reused_with_another_sort_is_a_validation_error(
    store: MetadataStore, twenty_five_models: list[str]
) -> None:
    _, token = store.models.page(ListInput(sort_by=SortBy.CREATION_TIME, max_results=5))
    assert token is not None

    with pytest.raises(ValidationError, match="NextToken"):
        store.models.page(ListInput(sort_by=SortBy.NAME, max_results=5, next_token=token))


def test_a_next_token_with_a_nested_value_is_a_validation_error(
    store: MetadataStore, twenty_five_models: list[str]
) -> None:
    with pytest.raises(ValidationError, match="NextToken"):
        store.models.page(ListInput(next_token=token_of([[1], "model-01"])))


# -- instances --------------------------------------------------------------------------------


def test_instances_put_inserts_then_updates(store: MetadataStore) -> None:
    store.instances.put(make_instance("i-1"))
    store.instances.put(make_instance("i-1", status=InstanceStatus.IN_SERVICE))

    (stored,) = store.instances.all()
    assert stored == make_instance("i-1", status=InstanceStatus.IN_SERVICE)
    assert stored.status is InstanceStatus.IN_SERVICE


def test_instances_for_endpoint_matches_the_name_in_any_case(store: MetadataStore) -> None:
    store.instances.put(make_instance("i-1", "Orders"))
    store.instances.put(make_instance("i-2", "orders"))
    store.instances.put(make_instance("i-3", "other"))

    found = store.instances.for_endpoint("ORDERS")

    assert sorted(i.instance_id for i in found) == ["i-1", "i-2"]
    assert store.instances.for_endpoint("nobody") == []


def test_instances_remove(store: MetadataStore) -> None:
    store.instances.put(make_instance("i-1"))
    store.instances.put(make_instance("i-2"))

    store.instances.remove("i-1")
    store.instances.remove("i-unknown")

    assert [i.instance_id for i in store.instances.all()] == ["i-2"]


def test_instances_round_trip_every_field(store: MetadataStore) -> None:
    instance = Instance(
        instance_id="i-9",
        endpoint_name="ep",
        variant_name="blue",
        instance_type="local",
        model_name="m",
        generation=3,
        status=InstanceStatus.FAILED,
        address="http://127.0.0.1:8081",
        pid=4242,
        started_at=12.5,
        failure_reason="exit code 1",
        consecutive_ping_failures=2,
    )
    store.instances.put(instance)

    (stored,) = store.instances.for_endpoint("ep")
    assert stored == instance
    assert (stored.pid, stored.consecutive_ping_failures) == (4242, 2)


# -- persistence and migrations ---------------------------------------------------------------


def test_a_reopened_store_keeps_everything(store_url: str) -> None:
    first = MetadataStore(store_url)
    try:
        first.models.add(make_model("kept"), "model", "arn")
        first.endpoints.add(make_endpoint("ep"), "endpoint", "arn")
        first.instances.put(make_instance("i-1"))
    finally:
        first.close()

    second = MetadataStore(store_url)
    try:
        assert second.models.get("kept") == make_model("kept")
        assert second.endpoints.get("ep") == make_endpoint("ep")
        assert [i.instance_id for i in second.instances.all()] == ["i-1"]
    finally:
        second.close()


def test_a_database_at_revision_0001_opens_and_keeps_its_rows(store_url: str) -> None:
    model = make_model("Legacy")
    endpoint = make_endpoint("Old-Endpoint", EndpointStatus.IN_SERVICE)
    engine = sa.create_engine(store_url)
    try:
        migrate(engine, "0001")
        with engine.begin() as conn:
            assert "instances" not in sa.inspect(conn).get_table_names()
            conn.execute(
                sa.text(
                    "INSERT INTO models (name_key, name, arn, creation_time, doc) "
                    "VALUES (:key, :name, :arn, :created, :doc)"
                ),
                {
                    "key": "legacy",
                    "name": "Legacy",
                    "arn": model.model_arn,
                    "created": START.timestamp(),
                    "doc": model.model_dump_json(by_alias=True, exclude_none=True),
                },
            )
            conn.execute(
                sa.text(
                    "INSERT INTO endpoints (name_key, name, arn, creation_time, doc, status, "
                    "last_modified_time) VALUES (:key, :name, :arn, :created, :doc, :status, "
                    ":created)"
                ),
                {
                    "key": "old-endpoint",
                    "name": "Old-Endpoint",
                    "arn": endpoint.endpoint_arn,
                    "created": START.timestamp(),
                    "doc": endpoint.model_dump_json(by_alias=True, exclude_none=True),
                    "status": "InService",
                },
            )
    finally:
        engine.dispose()

    store = MetadataStore(store_url)
    try:
        assert store.models.get("legacy") == model
        assert store.endpoints.get("OLD-ENDPOINT") == endpoint
        listed, _ = store.endpoints.page(
            ListEndpointsInput(status_equals=EndpointStatus.IN_SERVICE)
        )
        assert [e.endpoint_name for e in listed] == ["Old-Endpoint"]
        tables = sa.inspect(store.engine).get_table_names()
        assert {"models", "endpoint_configs", "endpoints", "instances"} <= set(tables)
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (HEAD,)
            ]
        store.instances.put(make_instance("i-1", "Old-Endpoint"))
        assert [i.instance_id for i in store.instances.for_endpoint("old-endpoint")] == ["i-1"]
    finally:
        store.close()


def test_concurrent_updates_lose_no_change(store: MetadataStore) -> None:
    """Eight threads each add tags one read-change-write at a time: every tag survives."""
    import threading

    from shipway.domain.model import Tag

    store.endpoints.add(make_endpoint("ep"), "endpoint", ACCOUNT.arn("endpoint", "ep"))

    def tagger(worker: int) -> None:
        for n in range(10):

            def add_tag(current: Endpoint, key: str = f"w{worker}-{n}") -> Endpoint:
                tags = [*(current.tags or []), Tag(key=key, value="1")]
                return current.model_copy(update={"tags": tags})

            store.endpoints.update("ep", add_tag)

    threads = [threading.Thread(target=tagger, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = store.endpoints.get("ep")
    assert stored is not None
    assert len(stored.tags or []) == 80


def test_head_is_the_newest_migration_and_a_store_at_head_opens_without_alembic(
    tmp_path: Path,
) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    MetadataStore(url).close()  # migrated to head
    code = (
        "import sys\n"
        "from shipway.store.metadata import MetadataStore\n"
        f"MetadataStore({url!r}).close()\n"
        "print('alembic' in sys.modules)\n"
    )
    opened = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert opened.stdout.strip() == "False"


def test_a_schema_behind_is_upgraded_in_a_process_of_its_own(tmp_path: Path) -> None:
    """What ``shipway server`` does before opening its store: the schema reaches the newest
    revision, and the calling process never imports alembic."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    try:
        migrate(engine, "0001")
    finally:
        engine.dispose()
    code = (
        "import sys\n"
        "from shipway.store.upgrade import upgrade_apart\n"
        f"upgrade_apart({url!r})\n"
        "print('alembic' in sys.modules)\n"
    )
    upgraded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert upgraded.stdout.strip() == "False"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (HEAD,)
            ]
    finally:
        engine.dispose()
