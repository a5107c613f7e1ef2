"""ScalingStore on SQLite and PostgreSQL: targets, policies and activities, their keys and pages,
the activity cap and the coalescing of repeated decisions, an endpoint forgotten, concurrent
registrations, and a database left at revision 0003 brought up to date."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from shipway.domain.scaling import (
    ConcurrentUpdate,
    PolicyType,
    ScalableDimension,
    ScalableTarget,
    ScalingActivity,
    ScalingActivityStatusCode,
    ScalingPolicy,
    VariantId,
)
from shipway.store.metadata import HEAD, MetadataStore, migrate
from shipway.store.scaling import Page, ScalingStore, target_key

START = datetime(2026, 1, 1, tzinfo=UTC)
INSTANCES = ScalableDimension.INSTANCE_COUNT


def variant(endpoint: str = "Orders", name: str = "AllTraffic") -> VariantId:
    return VariantId(endpoint_name=endpoint, variant_name=name)


def make_target(
    endpoint: str = "Orders", name: str = "AllTraffic", high: int = 4
) -> ScalableTarget:
    return ScalableTarget(
        service_namespace="sagemaker",
        resource_id=variant(endpoint, name).resource_id,
        scalable_dimension=INSTANCES,
        min_capacity=1,
        max_capacity=high,
        role_arn="arn:aws:iam::123456789012:role/r",
        creation_time=START,
    )


def make_policy(target: ScalableTarget, name: str) -> ScalingPolicy:
    return ScalingPolicy(
        policy_arn=f"arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:x:policyName/{name}",
        policy_name=name,
        service_namespace="sagemaker",
        resource_id=target.resource_id,
        scalable_dimension=target.scalable_dimension,
        policy_type=PolicyType.STEP_SCALING,
        step_scaling_policy_configuration={
            "AdjustmentType": "ChangeInCapacity",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
        },
        creation_time=START,
    )


def make_activity(
    target: ScalableTarget,
    n: int,
    status: ScalingActivityStatusCode = ScalingActivityStatusCode.SUCCESSFUL,
) -> ScalingActivity:
    return ScalingActivity(
        activity_id=f"a{n}",
        service_namespace="sagemaker",
        resource_id=target.resource_id,
        scalable_dimension=target.scalable_dimension,
        description=f"Setting desired instance count to {n}.",
        cause="c",
        start_time=START + timedelta(seconds=n),
        end_time=START + timedelta(seconds=n),
        status_code=status,
        not_scaled_reasons=(
            [{"Code": "AlreadyAtMaxCapacity"}]
            if status is ScalingActivityStatusCode.FAILED
            else None
        ),
    )


def named(name: str) -> Callable[[ScalableTarget, ScalingPolicy | None], ScalingPolicy]:
    """An upsert_policy change making policy ``name`` of the target."""

    def change(target: ScalableTarget, current: ScalingPolicy | None) -> ScalingPolicy:
        return make_policy(target, name)

    return change


def register(scaling: ScalingStore, target: ScalableTarget) -> None:
    key = target_key(variant(*target.resource_id.split("/")[1::2]), INSTANCES)
    scaling.upsert_target(key, lambda current: current or target)


def test_targets_are_keyed_by_variant_in_any_case_and_page_in_order(store: MetadataStore) -> None:
    scaling = store.scaling
    for name in ("A", "B", "C"):
        register(scaling, make_target(name))

    stored, previous = scaling.upsert_target(
        target_key(variant("a"), INSTANCES), lambda current: make_target("A", high=9)
    )
    assert previous is not None
    assert (previous.max_capacity, stored.max_capacity) == (4, 9)
    assert scaling.target(target_key(variant("A"), INSTANCES)) == stored
    assert (
        scaling.target(target_key(variant("A"), ScalableDimension.PROVISIONED_CONCURRENCY)) is None
    )

    first, after = scaling.targets(Page(limit=2))
    assert [t.resource_id for t in first] == [
        "endpoint/A/variant/AllTraffic",
        "endpoint/B/variant/AllTraffic",
    ]
    rest, end = scaling.targets(Page(limit=2, after=after))
    assert ([t.resource_id for t in rest], end) == (["endpoint/C/variant/AllTraffic"], None)
    only, _ = scaling.targets(Page(resource_keys=["endpoint/b/variant/AllTraffic"]))
    assert [t.resource_id for t in only] == ["endpoint/B/variant/AllTraffic"]
    assert scaling.targets(Page(endpoint_name="c"))[0][0].resource_id == (
        "endpoint/C/variant/AllTraffic"
    )


def test_policies_go_with_their_target(store: MetadataStore) -> None:
    scaling = store.scaling
    target = make_target()
    register(scaling, target)
    key = target_key(variant(), INSTANCES)
    assert (
        scaling.upsert_policy(
            target_key(variant("nobody"), INSTANCES), "p", lambda t, c: make_policy(t, "p")
        )
        is None
    )
    for name in ("p1", "p2"):
        stored = scaling.upsert_policy(key, name, named(name))
        assert stored is not None
        assert stored[1] is None  # a new one
    replaced = scaling.upsert_policy(key, "p1", lambda t, c: make_policy(t, "p1"))
    assert replaced is not None
    assert replaced[1] is not None  # it was there: replaced, in its place
    assert [p.policy_name for p in scaling.policies(Page(keys=[key]))[0]] == ["p1", "p2"]
    assert [p.policy_name for p in scaling.policies(names=["p2"])[0]] == ["p2"]
    assert scaling.count_policies(key) == 2

    removed = scaling.remove_target(key)
    assert removed is not None
    assert [p.policy_name for p in removed[1]] == ["p1", "p2"]
    assert scaling.policies()[0] == []
    assert scaling.remove_target(key) is None


def test_activities_newest_first_capped_and_repeats_coalesced(store: MetadataStore) -> None:
    scaling = ScalingStore(store.engine, activity_limit=3)
    target = make_target()
    for n in range(5):
        scaling.add_activity(make_activity(target, n))
    listed, _ = scaling.activities()
    assert [a.activity_id for a in listed] == ["a4", "a3", "a2"]

    failed = make_activity(target, 5, ScalingActivityStatusCode.FAILED)
    scaling.add_activity(failed, same=lambda previous: False)
    again = make_activity(target, 6, ScalingActivityStatusCode.FAILED)
    kept = scaling.add_activity(again, same=lambda previous: previous.activity_id == "a5")
    assert (kept.activity_id, kept.start_time, kept.end_time) == (
        "a5",
        failed.start_time,
        again.end_time,
    )
    everything, _ = scaling.activities()
    assert [a.activity_id for a in everything] == ["a5", "a4", "a3"]
    scaled, _ = scaling.activities(include_not_scaled=False)
    assert [a.activity_id for a in scaled] == ["a4", "a3"]
    page, after = scaling.activities(Page(limit=1))
    assert [a.activity_id for a in page] == ["a5"]
    assert [a.activity_id for a in scaling.activities(Page(limit=5, after=after))[0]] == [
        "a4",
        "a3",
    ]


def test_forgetting_an_endpoint_or_some_of_its_variants(store: MetadataStore) -> None:
    scaling = store.scaling
    for endpoint, name in (("Orders", "Blue"), ("Orders", "Green"), ("Other", "Blue")):
        target = make_target(endpoint, name)
        register(scaling, target)
        key = target_key(variant(endpoint, name), INSTANCES)
        scaling.upsert_policy(key, "p", lambda t, c: make_policy(t, "p"))
        scaling.add_activity(make_activity(target, len(scaling.activities()[0])))

    gone = scaling.remove_endpoint("ORDERS", ["Green"])
    assert [p.resource_id for p in gone] == ["endpoint/Orders/variant/Green"]
    assert len(scaling.targets()[0]) == 2
    gone = scaling.remove_endpoint("orders")
    assert [p.resource_id for p in gone] == ["endpoint/Orders/variant/Blue"]
    assert [t.resource_id for t in scaling.targets()[0]] == ["endpoint/Other/variant/Blue"]
    assert [a.resource_id for a in scaling.activities()[0]] == ["endpoint/Other/variant/Blue"]
    assert len(scaling.policies()[0]) == 1


def test_concurrent_registrations_make_one_target(store_url: str) -> None:
    stores = [MetadataStore(store_url) for _ in range(4)]
    key = target_key(variant(), INSTANCES)
    firsts: list[bool] = []
    errors: list[BaseException] = []

    def registrar(scaling: ScalingStore) -> None:
        try:
            for _ in range(5):
                _, previous = scaling.upsert_target(key, lambda current: current or make_target())
                firsts.append(previous is None)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=registrar, args=(s.scaling,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in stores:
        opened.close()
    # each either registered or saw the registration; one insert only, or a clear retry-later
    assert all(isinstance(e, ConcurrentUpdate) for e in errors), errors
    assert firsts.count(True) == 1
    reopened = MetadataStore(store_url)
    try:
        assert len(reopened.scaling.targets()[0]) == 1
    finally:
        reopened.close()


def test_a_database_at_0003_gets_the_scaling_tables(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    try:
        migrate(engine, "0003")
        assert "scalable_targets" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    store = MetadataStore(store_url)
    try:
        tables = set(sa.inspect(store.engine).get_table_names())
        assert {"scalable_targets", "scaling_policies", "scaling_activities"} <= tables
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (HEAD,)
            ]
        register(store.scaling, make_target())
        assert len(store.scaling.targets()[0]) == 1
    finally:
        store.close()


@pytest.mark.parametrize("limit", [1, 2])
def test_a_page_of_policies_says_where_to_go_on(store: MetadataStore, limit: int) -> None:
    target = make_target()
    register(store.scaling, target)
    key = target_key(variant(), INSTANCES)
    for name in ("a", "b", "c"):
        store.scaling.upsert_policy(key, name, named(name))
    names: list[str] = []
    after = None
    while True:
        page, after = store.scaling.policies(Page(limit=limit, after=after))
        names += [p.policy_name for p in page]
        if after is None:
            break
    assert names == ["a", "b", "c"]
