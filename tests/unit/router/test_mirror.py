"""Mirroring to shadow variants, with the one boundary (sending a copy) faked: sampling, the
bound on copies in flight, failures that stay inside, and when the report starts afresh."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from shipway.domain.clock import ManualClock
from shipway.domain.endpoint_config import RoutingStrategy
from shipway.monitor.shadow_report import Answer, ShadowPairReport
from shipway.router import mirror as mirror_module
from shipway.router.mirror import Mirror
from shipway.router.routing import (
    EndpointRoute,
    EndpointSnapshot,
    InstanceSnapshot,
    RoutingTable,
    Snapshot,
    VariantRoute,
    VariantSnapshot,
)

T = TypeVar("T")
HEADERS = [(b"content-type", b"application/json"), (b"x-amzn-sagemaker-custom-attributes", b"a")]
OK = Answer(200, b"[1]", 0.001)


def variant(name: str, weight: float, model: str | None = None) -> VariantSnapshot:
    return VariantSnapshot(
        name,
        model or f"model-{name}",
        weight,
        RoutingStrategy.RANDOM,
        (InstanceSnapshot(f"{name}-1", f"unix:/run/{name}-1.sock"),),
    )


def snapshot(*shadows: VariantSnapshot, production: float = 1.0, version: int = 1) -> Snapshot:
    endpoint = EndpointSnapshot("orders", (variant("AllTraffic", production),), shadows)
    return Snapshot((endpoint,), version)


class Shadow:
    """The fake boundary: records each copy and answers as told (waiting for ``gate``)."""

    def __init__(self, answer: Answer = OK) -> None:
        self.answer = answer
        self.copies: list[tuple[str, str, list[tuple[bytes, bytes]], bytes]] = []
        self.gate: asyncio.Event | None = None
        self.error: Exception | None = None

    async def __call__(
        self,
        route: EndpointRoute,
        shadow: VariantRoute,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> Answer:
        self.copies.append((route.name, shadow.name, headers, body))
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.answer


class Rig:
    def __init__(self, forward: Shadow, *, max_in_flight: int = 64, seed: int = 11) -> None:
        self.clock = ManualClock()
        self.table = RoutingTable(random.Random(seed))
        self.mirror = Mirror(
            forward, clock=self.clock, rng=random.Random(seed), max_in_flight=max_in_flight
        )

    def apply(self, snapshot: Snapshot) -> None:
        self.table.apply(snapshot)
        self.mirror.apply(snapshot)

    @property
    def route(self) -> EndpointRoute:
        route = self.table.get("orders")
        assert route is not None
        return route

    def send(self, n: int, production: Answer = OK, body: bytes = b"[[1, 2]]") -> None:
        route = self.route
        for _ in range(n):
            self.mirror.send(route, route.variants[0], HEADERS, body, production)

    def pair(self, tolerance: float = 0.0) -> ShadowPairReport:
        report = self.mirror.report("orders", tolerance, self.table.get("orders"))
        assert report is not None
        [pair] = report.pairs
        return pair


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


def test_the_public_names() -> None:
    assert sorted(mirror_module.__all__) == ["Forward", "Mirror"]


def test_at_equal_weights_every_request_is_mirrored_with_its_body_and_headers() -> None:
    shadow = Shadow()

    async def scenario() -> Rig:
        rig = Rig(shadow, max_in_flight=100)
        rig.apply(snapshot(variant("Shadow", 1)))
        rig.send(100)
        assert rig.mirror.in_flight == 100  # tasks: the caller did not wait
        assert shadow.copies == []
        await rig.mirror.drain()
        return rig

    rig = run(scenario)

    assert len(shadow.copies) == 100
    assert shadow.copies[0] == ("orders", "Shadow", HEADERS, b"[[1, 2]]")
    pair = rig.pair()
    assert (pair.sampled, pair.compared, pair.agreement_rate) == (100, 100, 1.0)
    assert pair.sampling_fraction == 1.0
    assert rig.mirror.in_flight == 0


def test_a_lower_shadow_weight_samples_that_fraction() -> None:
    shadow = Shadow()

    async def scenario() -> Rig:
        rig = Rig(shadow)
        rig.apply(snapshot(variant("Shadow", 1), production=4))  # 1 / 4
        for _ in range(400):
            rig.send(10)
            await rig.mirror.drain()
        return rig

    rig = run(scenario)

    pair = rig.pair()
    assert pair.sampling_fraction == 0.25
    # binomial(4000, 0.25): mean 1000, sd 27; five sd either side
    assert 863 <= pair.sampled <= 1137
    assert pair.sampled == len(shadow.copies) == pair.compared


def test_a_shadow_of_weight_zero_gets_nothing() -> None:
    shadow = Shadow()

    async def scenario() -> Rig:
        rig = Rig(shadow)
        rig.apply(snapshot(variant("Shadow", 0)))
        rig.send(100)
        await rig.mirror.drain()
        return rig

    rig = run(scenario)

    assert shadow.copies == []
    assert rig.pair().sampled == 0


def test_beyond_the_bound_a_sampled_request_is_skipped_and_counted() -> None:
    shadow = Shadow()

    async def scenario() -> tuple[Rig, int, int]:
        shadow.gate = asyncio.Event()
        rig = Rig(shadow, max_in_flight=3)
        rig.apply(snapshot(variant("Shadow", 1)))
        rig.send(10)
        await asyncio.sleep(0)
        held = len(shadow.copies)
        report = rig.mirror.report("orders", 0.0, rig.route)
        assert report is not None
        in_flight = report.in_flight
        shadow.gate.set()
        await rig.mirror.drain()
        return rig, held, in_flight

    rig, held, in_flight = run(scenario)

    assert (held, in_flight) == (3, 3)
    pair = rig.pair()
    assert (pair.sampled, pair.skipped, pair.compared) == (10, 7, 3)
    assert pair.production_latency is not None
    assert pair.production_latency.count == 10
    assert pair.shadow_latency is not None
    assert pair.shadow_latency.count == 3


def test_the_bound_frees_up_as_copies_finish() -> None:
    shadow = Shadow()

    async def scenario() -> Rig:
        rig = Rig(shadow, max_in_flight=2)
        rig.apply(snapshot(variant("Shadow", 1)))
        for _ in range(5):
            rig.send(2)
            await rig.mirror.drain()
        return rig

    pair = run(scenario).pair()

    assert (pair.sampled, pair.skipped, pair.compared) == (10, 0, 10)


def test_shadow_failures_and_bugs_stay_inside_and_count_as_shadow_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shadow = Shadow(Answer(500, b"boom", 0.002))

    async def scenario() -> Rig:
        rig = Rig(shadow)
        rig.apply(snapshot(variant("Shadow", 1)))
        rig.send(3)  # the model fails
        await rig.mirror.drain()
        shadow.answer = Answer(None)  # no live instance
        rig.send(2)
        await rig.mirror.drain()
        shadow.error = RuntimeError("a bug")  # forwarding itself fails
        rig.send(1)
        await rig.mirror.drain()
        return rig

    with caplog.at_level(logging.ERROR, logger="shipway.router.mirror"):
        pair = run(scenario).pair()

    assert (pair.sampled, pair.shadow_errors, pair.compared) == (6, 6, 0)
    assert "could not mirror a request of endpoint orders" in caplog.text
    assert "RuntimeError: a bug" in caplog.text


def test_production_failures_are_mirrored_and_counted_as_production_errors() -> None:
    shadow = Shadow()

    async def scenario() -> Rig:
        rig = Rig(shadow)
        rig.apply(snapshot(variant("Shadow", 1)))
        rig.send(2, production=Answer(424, b"bad input", 0.001))
        rig.send(1, production=Answer(None, b"", 60.0))  # timed out
        await rig.mirror.drain()
        return rig

    pair = run(scenario).pair()

    assert (pair.sampled, pair.production_errors, pair.compared) == (3, 3, 0)
    assert len(shadow.copies) == 3


def test_the_report_starts_afresh_when_the_shadow_changes_and_not_otherwise() -> None:
    shadow = Shadow()

    async def scenario() -> list[int]:
        rig = Rig(shadow)
        seen = []
        rig.apply(snapshot(variant("Shadow", 1)))
        rig.send(5)
        await rig.mirror.drain()
        seen.append(rig.pair().sampled)
        rig.apply(snapshot(variant("Shadow", 0.5), version=2))  # weight only: kept
        seen.append(rig.pair().sampled)
        rig.clock.advance(60)
        rig.apply(snapshot(variant("Shadow", 1, model="model-v2"), version=3))  # another model
        seen.append(rig.pair().sampled)
        report = rig.mirror.report("orders", 0.0, rig.route)
        assert report is not None
        assert report.since == rig.clock.now()
        rig.send(2)
        await rig.mirror.drain()
        seen.append(rig.pair().sampled)
        assert rig.mirror.reset("orders") is True
        seen.append(rig.pair().sampled)
        rig.apply(snapshot(version=4))  # no shadow any more
        assert rig.mirror.report("orders", 0.0, rig.route) is None
        assert rig.mirror.reset("orders") is False
        return seen

    assert run(scenario) == [5, 5, 0, 2, 0]


def test_a_copy_that_finishes_after_a_reset_does_not_count_in_the_new_report() -> None:
    shadow = Shadow()

    async def scenario() -> Rig:
        shadow.gate = asyncio.Event()
        rig = Rig(shadow, max_in_flight=1)
        rig.apply(snapshot(variant("Shadow", 1)))
        rig.send(1)
        await asyncio.sleep(0)
        rig.mirror.reset("orders")
        rig.send(1)  # the copy before the reset still holds the only slot
        shadow.gate.set()
        await rig.mirror.drain()
        return rig

    pair = run(scenario).pair()

    assert (pair.sampled, pair.skipped, pair.compared) == (1, 1, 0)


def test_drain_cancels_the_copies_left_after_its_timeout() -> None:
    shadow = Shadow()

    async def scenario() -> Rig:
        shadow.gate = asyncio.Event()  # never set: the shadow hangs
        rig = Rig(shadow)
        rig.apply(snapshot(variant("Shadow", 1)))
        rig.send(4)
        await rig.mirror.drain(timeout=0.05)
        return rig

    rig = run(scenario)

    assert rig.mirror.in_flight == 0
    report = rig.mirror.report("orders", 0.0, rig.route)
    assert report is not None
    assert report.in_flight == 0
    assert report.pairs[0].sampled == 0


def test_an_endpoint_without_shadows_has_no_report() -> None:
    rig = Rig(Shadow())
    rig.apply(snapshot())

    assert rig.route.shadows == []
    assert rig.mirror.report("orders", 0.0, rig.route) is None
    assert rig.mirror.report("nobody", 0.0, None) is None


def test_a_route_the_mirror_was_not_told_about_is_adopted() -> None:
    shadow = Shadow()

    async def scenario() -> Rig:
        rig = Rig(shadow)
        rig.table.apply(snapshot(variant("Shadow", 1)))  # the table only
        rig.send(3)
        await rig.mirror.drain()
        return rig

    assert run(scenario).pair().compared == 3


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        Mirror(Shadow(), clock=ManualClock(), rng=random.Random(), max_in_flight=0)
