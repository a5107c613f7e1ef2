"""The router's samples of requests in flight, which concurrency-based scaling policies read."""

from __future__ import annotations

from shipway.domain.clock import ManualClock
from shipway.domain.endpoint_config import RoutingStrategy
from shipway.monitor.metrics import MetricsStore
from shipway.router.router import Demand, Router
from shipway.router.routing import (
    EndpointSnapshot,
    InstanceSnapshot,
    ServerlessLimits,
    Snapshot,
    VariantSnapshot,
)


def variant(name: str, instances: int) -> VariantSnapshot:
    return VariantSnapshot(
        name,
        "m",
        1.0,
        RoutingStrategy.LEAST_OUTSTANDING_REQUESTS,
        tuple(
            InstanceSnapshot(f"{name}-{n}", f"unix:/nowhere/{name}-{n}") for n in range(instances)
        ),
    )


CLOCK = ManualClock()


def latest(metrics: MetricsStore, name: str, endpoint: str, variant_name: str) -> float | None:
    now = int(CLOCK.time())
    points = metrics.query(
        name,
        {"EndpointName": endpoint, "VariantName": variant_name},
        start=now - 60,
        end=now + 60,
        period=120,
        statistic="Average",
    )
    return points[-1].value if points else None


def test_requests_in_flight_per_instance_and_provisioned_concurrency_used() -> None:
    clock = CLOCK
    metrics = MetricsStore()
    router = Router(metrics, account_id="123456789012", max_payload_bytes=1024,
                    model_timeout_seconds=1.0, clock=clock)  # fmt: skip
    router.apply(
        Snapshot(
            (
                EndpointSnapshot("rt", (variant("A", 2), variant("B", 0))),
                EndpointSnapshot(
                    "sl", (variant("S", 1),), serverless=ServerlessLimits(10, 4_000_000, 4)
                ),
            ),
            1,
        )
    )
    route = router.table.get("rt")
    assert route is not None
    route.variants[0].instances[0].outstanding = 3
    route.variants[0].instances[1].outstanding = 2
    router._demand["sl"] = Demand(in_flight=3)

    router.record_concurrency()

    assert latest(metrics, "ConcurrentRequestsPerModel", "rt", "A") == 2.5
    assert latest(metrics, "ConcurrentRequestsPerModel", "rt", "B") is None  # no instance
    assert latest(metrics, "ServerlessProvisionedConcurrencyUtilization", "sl", "S") == 0.75
    assert latest(metrics, "ServerlessProvisionedConcurrencyUtilization", "rt", "A") is None
    router.table.close()
