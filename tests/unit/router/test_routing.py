"""The routing table: weighted variants, least-outstanding instances, snapshots, down marks."""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter

import pytest

from shipway.domain.endpoint_config import RoutingStrategy
from shipway.router import upstream as upstream_module
from shipway.router.routing import (
    EndpointRoute,
    EndpointSnapshot,
    InstanceRoute,
    InstanceSnapshot,
    RoutingTable,
    Snapshot,
    VariantSnapshot,
)
from shipway.router.upstream import Upstream

LEAST = RoutingStrategy.LEAST_OUTSTANDING_REQUESTS


def variant(
    name: str,
    weight: float,
    *instance_ids: str,
    strategy: RoutingStrategy = LEAST,
) -> VariantSnapshot:
    return VariantSnapshot(
        variant_name=name,
        model_name=f"model-{name}",
        weight=weight,
        strategy=strategy,
        instances=tuple(InstanceSnapshot(i, f"unix:/run/{i}.sock") for i in instance_ids),
    )


def snapshot(*variants: VariantSnapshot, name: str = "orders", version: int = 1) -> Snapshot:
    return Snapshot(endpoints=(EndpointSnapshot(name, variants),), version=version)


def table_with(*variants: VariantSnapshot, seed: int = 7) -> tuple[RoutingTable, EndpointRoute]:
    table = RoutingTable(random.Random(seed))
    table.apply(snapshot(*variants))
    route = table.get("orders")
    assert route is not None
    return table, route


def variant_picks(route: EndpointRoute, n: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(n):
        picked = route.pick()
        assert picked is not None
        counts[picked.name] += 1
    return counts


def instance_picks(route: EndpointRoute, variant_name: str, n: int) -> Counter[str]:
    found = route.variant(variant_name)
    assert found is not None
    counts: Counter[str] = Counter()
    for _ in range(n):
        picked = found.pick()
        assert picked is not None
        counts[picked.instance_id] += 1
    return counts


def instance_of(route: EndpointRoute, variant_name: str, instance_id: str) -> InstanceRoute:
    found = route.variant(variant_name)
    assert found is not None
    return next(i for i in found.instances if i.instance_id == instance_id)


# -- variants by weight -----------------------------------------------------------------------


def test_weights_three_to_one_split_traffic_75_25() -> None:
    _, route = table_with(variant("blue", 3, "b1"), variant("green", 1, "g1"))

    counts = variant_picks(route, 20_000)

    assert counts["blue"] / 20_000 == pytest.approx(0.75, abs=0.02)
    assert counts["green"] / 20_000 == pytest.approx(0.25, abs=0.02)


def test_the_same_seed_gives_the_same_picks() -> None:
    runs = []
    for _ in range(2):
        _, route = table_with(variant("blue", 1, "b1"), variant("green", 1, "g1"), seed=99)
        runs.append([v.name for v in (route.pick() for _ in range(200)) if v is not None])

    assert runs[0] == runs[1]
    assert set(runs[0]) == {"blue", "green"}


def test_a_variant_of_weight_zero_is_never_picked() -> None:
    _, route = table_with(
        variant("blue", 1, "b1"), variant("dark", 0, "d1"), variant("green", 2, "g1")
    )

    counts = variant_picks(route, 5_000)

    assert counts["dark"] == 0
    assert counts["blue"] > 0
    assert counts["green"] > 0


def test_only_weight_zero_variants_mean_no_variant() -> None:
    _, route = table_with(variant("dark", 0, "d1"))

    assert route.pick() is None


def test_a_variant_with_every_instance_down_gets_no_traffic_until_marked_up() -> None:
    table, route = table_with(variant("blue", 3, "b1", "b2"), variant("green", 1, "g1"))

    table.mark_down("b1")
    table.mark_down("b2")
    assert variant_picks(route, 2_000) == Counter({"green": 2_000})

    table.mark_up("b2")
    counts = variant_picks(route, 2_000)
    assert counts["blue"] / 2_000 == pytest.approx(0.75, abs=0.04)
    assert set(instance_picks(route, "blue", 50)) == {"b2"}


def test_a_variant_without_instances_gets_no_traffic() -> None:
    _, route = table_with(variant("blue", 1), variant("green", 1, "g1"))

    assert variant_picks(route, 500) == Counter({"green": 500})


def test_everything_down_means_no_variant() -> None:
    table, route = table_with(variant("blue", 1, "b1"), variant("green", 1, "g1"))

    table.mark_down("b1")
    table.mark_down("g1")

    assert route.pick() is None
    blue = route.variant("blue")
    assert blue is not None
    assert blue.pick() is None


def test_variant_lookup_is_by_exact_name() -> None:
    _, route = table_with(variant("Blue", 1, "b1"))

    assert route.variant("Blue") is not None
    assert route.variant("blue") is None


# -- instances --------------------------------------------------------------------------------


def test_least_outstanding_picks_the_idle_instance() -> None:
    _, route = table_with(variant("blue", 1, "i1", "i2", "i3"))
    instance_of(route, "blue", "i1").outstanding = 3
    instance_of(route, "blue", "i3").outstanding = 1

    assert set(instance_picks(route, "blue", 100)) == {"i2"}


def test_least_outstanding_breaks_ties_at_random() -> None:
    _, route = table_with(variant("blue", 1, "i1", "i2", "i3"))
    instance_of(route, "blue", "i2").outstanding = 5

    picked = instance_picks(route, "blue", 1_000)

    assert set(picked) == {"i1", "i3"}
    assert picked["i1"] / 1_000 == pytest.approx(0.5, abs=0.06)


def test_least_outstanding_skips_a_down_instance_even_when_idle() -> None:
    table, route = table_with(variant("blue", 1, "i1", "i2"))
    blue = route.variant("blue")
    assert blue is not None
    instance_of(route, "blue", "i2").outstanding = 10

    table.mark_down("i1")

    assert blue.pick() is instance_of(route, "blue", "i2")


def test_random_strategy_spreads_over_live_instances_only() -> None:
    table, route = table_with(variant("blue", 1, "i1", "i2", "i3", strategy=RoutingStrategy.RANDOM))
    instance_of(route, "blue", "i1").outstanding = 100  # ignored by RANDOM
    table.mark_down("i3")

    picked = instance_picks(route, "blue", 1_000)

    assert set(picked) == {"i1", "i2"}
    assert picked["i1"] / 1_000 == pytest.approx(0.5, abs=0.06)


def test_marking_an_unknown_instance_changes_nothing() -> None:
    table, route = table_with(variant("blue", 1, "i1"))

    table.mark_down("nobody")

    assert route.pick() is not None


# -- snapshots --------------------------------------------------------------------------------


def test_get_is_by_exact_endpoint_name() -> None:
    table = RoutingTable(random.Random(1))
    table.apply(snapshot(variant("blue", 1, "b1"), name="Orders"))

    assert table.get("Orders") is not None
    assert table.get("orders") is None


def test_apply_keeps_the_route_and_outstanding_count_of_an_instance_that_stays() -> None:
    table, route = table_with(variant("blue", 1, "b1", "b2"))
    kept = instance_of(route, "blue", "b1")
    kept.outstanding = 4

    table.apply(snapshot(variant("blue", 2, "b1", "b3"), version=2))

    after = table.get("orders")
    assert after is not None
    assert instance_of(after, "blue", "b1") is kept
    assert kept.outstanding == 4
    assert instance_of(after, "blue", "b3").outstanding == 0
    blue = after.variant("blue")
    assert blue is not None
    assert [i.instance_id for i in blue.instances] == ["b1", "b3"]
    assert blue.weight == 2
    assert table.version == 2


def test_apply_gives_a_fresh_route_when_an_instance_moves_address() -> None:
    table, route = table_with(variant("blue", 1, "b1"))
    before = instance_of(route, "blue", "b1")
    before.outstanding = 2

    moved = VariantSnapshot(
        "blue", "model-blue", 1, LEAST, (InstanceSnapshot("b1", "http://127.0.0.1:9001"),)
    )
    table.apply(snapshot(moved, version=2))

    after = table.get("orders")
    assert after is not None
    fresh = instance_of(after, "blue", "b1")
    assert fresh is not before
    assert fresh.outstanding == 0
    assert fresh.upstream.address == "http://127.0.0.1:9001"


def test_apply_drops_endpoints_missing_from_the_snapshot() -> None:
    table, _ = table_with(variant("blue", 1, "b1"))

    table.apply(Snapshot(version=5))

    assert table.get("orders") is None
    assert table.version == 5


def test_a_new_table_has_no_version_yet() -> None:
    assert RoutingTable().version == -1


async def _pool_a_connection(upstream: Upstream) -> socket.socket:
    """Put one kept-alive connection in ``upstream``'s pool; return the instance's end of it."""
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_unix_connection(upstream_module._Connection, sock=ours)
    upstream._idle.append(connection)
    theirs.setblocking(False)
    return theirs


async def _closed_by_router(peer: socket.socket, wait: float = 1.0) -> bool:
    """True when the router side has closed: the instance's end reads EOF within ``wait``."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(peer, 1), wait) == b""
    except TimeoutError:
        return False


def test_apply_closes_the_connections_of_instances_that_go_and_keeps_the_rest() -> None:
    async def scenario() -> tuple[bool, bool]:
        table, route = table_with(variant("blue", 1, "b1", "b2"))
        staying = await _pool_a_connection(instance_of(route, "blue", "b1").upstream)
        going = await _pool_a_connection(instance_of(route, "blue", "b2").upstream)

        table.apply(snapshot(variant("blue", 1, "b1"), version=2))

        gone_closed = await _closed_by_router(going)
        kept_closed = await _closed_by_router(staying, wait=0.05)
        table.close()
        staying.close()
        going.close()
        return gone_closed, kept_closed

    assert asyncio.run(scenario()) == (True, False)


def test_close_closes_every_pooled_connection() -> None:
    async def scenario() -> bool:
        table, route = table_with(variant("blue", 1, "b1"))
        peer = await _pool_a_connection(instance_of(route, "blue", "b1").upstream)

        table.close()

        closed = await _closed_by_router(peer)
        peer.close()
        return closed

    assert asyncio.run(scenario()) is True


# -- shadow variants --------------------------------------------------------------------------


def with_shadow(
    production: VariantSnapshot, shadow: VariantSnapshot, *, version: int = 1
) -> Snapshot:
    return Snapshot(
        endpoints=(EndpointSnapshot("orders", (production,), shadows=(shadow,)),), version=version
    )


def test_an_endpoint_snapshot_has_no_shadows_unless_given() -> None:
    _, route = table_with(variant("blue", 1, "b1"))

    assert EndpointSnapshot("orders", ()).shadows == ()
    assert route.shadows == []


def test_a_shadow_is_never_picked_by_weight_nor_by_name() -> None:
    table = RoutingTable(random.Random(3))
    table.apply(with_shadow(variant("blue", 1, "b1"), variant("shadow", 5, "s1")))
    route = table.get("orders")
    assert route is not None

    assert variant_picks(route, 2_000) == Counter({"blue": 2_000})
    assert route.variant("shadow") is None
    [shadow] = route.shadows
    assert shadow.name == "shadow"
    assert shadow.model_name == "model-shadow"
    assert shadow.pick() is not None


def test_an_endpoint_whose_production_is_down_gets_no_variant_even_with_a_live_shadow() -> None:
    table = RoutingTable(random.Random(3))
    table.apply(with_shadow(variant("blue", 1, "b1"), variant("shadow", 1, "s1")))
    route = table.get("orders")
    assert route is not None

    table.mark_down("b1")

    assert route.pick() is None


@pytest.mark.parametrize(
    ("production", "shadow", "fraction"),
    [(1, 1, 1.0), (1, 0.25, 0.25), (4, 1, 0.25), (1, 3, 1.0), (1, 0, 0.0), (0, 1, 1.0)],
)
def test_the_sampling_fraction_is_the_shadow_weight_over_production_at_most_one(
    production: float, shadow: float, fraction: float
) -> None:
    table = RoutingTable()
    table.apply(with_shadow(variant("blue", production, "b1"), variant("shadow", shadow, "s1")))
    route = table.get("orders")
    assert route is not None

    assert route.sampling_fraction(route.shadows[0]) == pytest.approx(fraction)


def test_apply_keeps_shadow_instance_routes_and_pools_and_shares_pools_by_address() -> None:
    table = RoutingTable(random.Random(3))
    table.apply(with_shadow(variant("blue", 1, "b1"), variant("shadow", 1, "s1")))
    before = table.get("orders")
    assert before is not None
    kept = before.shadows[0].instances[0]
    kept.outstanding = 2

    table.apply(with_shadow(variant("blue", 1, "b1"), variant("shadow", 0.5, "s1"), version=2))

    after = table.get("orders")
    assert after is not None
    assert after.shadows[0].instances[0] is kept
    assert kept.outstanding == 2
    assert after.shadows[0].weight == 0.5
    # an instance that moves from production to shadow under another id keeps its pool
    moved = VariantSnapshot("shadow", "m", 1, LEAST, (InstanceSnapshot("s9", "unix:/run/b1.sock"),))
    table.apply(with_shadow(variant("blue", 1, "b2"), moved, version=3))
    last = table.get("orders")
    assert last is not None
    assert last.shadows[0].instances[0].upstream is instance_of(before, "blue", "b1").upstream


def test_mark_down_and_up_reach_shadow_instances() -> None:
    table = RoutingTable(random.Random(3))
    table.apply(with_shadow(variant("blue", 1, "b1"), variant("shadow", 1, "s1")))
    route = table.get("orders")
    assert route is not None
    shadow = route.shadows[0]

    table.mark_down("s1")
    assert shadow.pick() is None
    assert route.pick() is not None

    table.mark_up("s1")
    assert shadow.pick() is not None


def test_apply_closes_the_pool_of_a_shadow_that_goes() -> None:
    async def scenario() -> bool:
        table = RoutingTable(random.Random(3))
        table.apply(with_shadow(variant("blue", 1, "b1"), variant("shadow", 1, "s1")))
        route = table.get("orders")
        assert route is not None
        peer = await _pool_a_connection(route.shadows[0].instances[0].upstream)

        table.apply(snapshot(variant("blue", 1, "b1"), version=2))

        closed = await _closed_by_router(peer)
        table.close()
        peer.close()
        return closed

    assert asyncio.run(scenario()) is True


def test_target_variant_during_a_deployment_follows_the_fleets_weights() -> None:
    """Old and new fleet both have 'AllTraffic': a targeted request goes by their shares."""
    table, route = table_with(
        variant("AllTraffic", 0.75, "old-1"), variant("AllTraffic", 0.25, "new-1")
    )
    picked: Counter[str] = Counter()
    for _ in range(4000):
        chosen = route.variant("AllTraffic")
        assert chosen is not None
        picked[chosen.instances[0].instance_id] += 1
    assert picked["new-1"] / 4000 == pytest.approx(0.25, abs=0.03)

    table.mark_down("new-1")
    table.apply(snapshot(variant("AllTraffic", 0.0, "old-1"), variant("AllTraffic", 1.0, "new-1")))
    table.mark_down("new-1")
    chosen = route_of(table).variant("AllTraffic")
    assert chosen is not None
    assert chosen.instances[0].instance_id == "old-1"  # the only fleet that can answer


def route_of(table: RoutingTable) -> EndpointRoute:
    route = table.get("orders")
    assert route is not None
    return route
