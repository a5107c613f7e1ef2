"""The routing table: which endpoints exist, their variants' weights, their live instances.

The router holds only this soft state. The controller (or, for a router in another process, a
poll of the store) hands over a whole :class:`Snapshot`; :meth:`RoutingTable.apply` replaces the
table at once, keeping the connection pools of instances that stay.

Picking is pure: a variant by weight (or by name with ``TargetVariant``), then an instance by
least outstanding requests (ties broken at random) or at random, among those not marked down.
An instance the router finds dead is marked down at once, before the controller hears of it.

An endpoint may also have shadow variants (``EndpointSnapshot.shadows``): they are never picked
by weight nor by ``TargetVariant``; the router mirrors a sample of the requests to them, the
fraction :meth:`EndpointRoute.sampling_fraction` of them.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from shipway.domain.async_inference import AsyncInferenceConfig
from shipway.domain.endpoint_config import RoutingStrategy
from shipway.router.upstream import Upstream

__all__ = [
    "AsyncLimits",
    "EndpointRoute",
    "InstanceRoute",
    "InstanceSnapshot",
    "RoutingTable",
    "ServerlessLimits",
    "Snapshot",
    "VariantRoute",
    "VariantSnapshot",
]


@dataclass(frozen=True)
class InstanceSnapshot:
    instance_id: str
    address: str


@dataclass(frozen=True)
class VariantSnapshot:
    variant_name: str
    model_name: str
    weight: float
    strategy: RoutingStrategy
    instances: tuple[InstanceSnapshot, ...]
    failure: str | None = None
    """Why its last instance could not start, while none is in service (a serverless variant's
    requests then fail at once with it instead of waiting for a start that keeps failing)."""


@dataclass(frozen=True)
class ServerlessLimits:
    """What the router enforces for a serverless endpoint (its one variant's config)."""

    max_concurrency: int
    """Requests in flight at most; more are throttled, not queued."""
    max_payload_bytes: int
    provisioned_concurrency: int | None = None


@dataclass(frozen=True)
class AsyncLimits:
    """An asynchronous endpoint: it takes requests only from the asynchronous dispatcher, which
    keeps at most ``concurrency_per_instance`` in flight to each instance. ``config`` is its
    AsyncInferenceConfig (InvokeEndpointAsync reads it here rather than from the store)."""

    concurrency_per_instance: int
    config: AsyncInferenceConfig


@dataclass(frozen=True)
class EndpointSnapshot:
    endpoint_name: str
    variants: tuple[VariantSnapshot, ...]
    """Production variants: they serve the requests."""
    shadows: tuple[VariantSnapshot, ...] = ()
    """Shadow variants: they get sampled copies of requests; their answers are not returned."""
    serverless: ServerlessLimits | None = None
    """Set for a serverless endpoint: its variant may have no instance until a request comes."""
    asynchronous: AsyncLimits | None = None
    """Set for an asynchronous endpoint (it may have no instance: scaled to zero)."""


@dataclass(frozen=True)
class Snapshot:
    """Everything the router needs, as of one moment: the endpoints that can take traffic."""

    endpoints: tuple[EndpointSnapshot, ...] = ()
    version: int = 0


@dataclass(eq=False)
class InstanceRoute:
    instance_id: str
    upstream: Upstream
    outstanding: int = 0
    down: bool = False
    timeouts: int = 0
    """Requests in a row it did not answer in time."""


@dataclass(eq=False)
class VariantRoute:
    name: str
    model_name: str
    weight: float
    strategy: RoutingStrategy
    instances: list[InstanceRoute]
    _rng: random.Random = field(repr=False, default_factory=random.Random)
    failure: str | None = None

    @property
    def instance_count(self) -> int:
        return len(self.instances)

    def available(self) -> bool:
        return any(not i.down for i in self.instances)

    def pick(self) -> InstanceRoute | None:
        """The instance for the next request, or None when every instance is down."""
        live = [i for i in self.instances if not i.down]
        if not live:
            return None
        if len(live) == 1:
            return live[0]
        if self.strategy is RoutingStrategy.RANDOM:
            return self._rng.choice(live)
        least = min(i.outstanding for i in live)
        candidates = [i for i in live if i.outstanding == least]
        return candidates[0] if len(candidates) == 1 else self._rng.choice(candidates)


@dataclass(eq=False)
class EndpointRoute:
    name: str
    variants: list[VariantRoute]
    _rng: random.Random = field(repr=False, default_factory=random.Random)
    shadows: list[VariantRoute] = field(default_factory=list)
    """Shadow variants; empty for most endpoints (the router checks this one attribute)."""
    serverless: ServerlessLimits | None = None
    asynchronous: AsyncLimits | None = None

    def sampling_fraction(self, shadow: VariantRoute) -> float:
        """The share of requests mirrored to ``shadow``: its weight over production's, at most 1.

        Production's weight is the sum of the production variants' weights (SageMaker allows
        one production variant beside a shadow, so it is that variant's weight). A shadow of
        weight 0 gets nothing; one beside production variants of weight 0 gets everything.
        """
        if shadow.weight <= 0:
            return 0.0
        production = sum(v.weight for v in self.variants)
        return 1.0 if production <= shadow.weight else shadow.weight / production

    def variant(self, name: str) -> VariantRoute | None:
        """The production variant of that name (never a shadow).

        During a deployment that keeps the variant names, the old and the new fleet both have
        it: then the request goes to one of them by the deployment's weights, as untargeted
        traffic does.
        """
        named = [v for v in self.variants if v.name == name]
        if len(named) <= 1:
            return named[0] if named else None
        return self._weighted(named) or next((v for v in named if v.available()), named[0])

    def pick(self) -> VariantRoute | None:
        """A variant with probability weight / total weight, among those with a live instance.

        When a variant has lost every instance, its share goes to the others until the
        controller brings one back, rather than failing its share of requests.
        """
        return self._weighted(self.variants)

    def _weighted(self, variants: list[VariantRoute]) -> VariantRoute | None:
        candidates = [v for v in variants if v.weight > 0 and v.available()]
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        bounds = list(accumulate(v.weight for v in candidates))
        index = bisect_right(bounds, self._rng.random() * bounds[-1])
        return candidates[min(index, len(candidates) - 1)]


class RoutingTable:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._endpoints: dict[str, EndpointRoute] = {}
        self._upstreams: dict[str, Upstream] = {}
        self.version = -1

    def names(self) -> list[str]:
        """The endpoints routed now."""
        return list(self._endpoints)

    def get(self, endpoint_name: str) -> EndpointRoute | None:
        """The route of an endpoint by its exact name (invocations must match its case)."""
        return self._endpoints.get(endpoint_name)

    def apply(self, snapshot: Snapshot) -> None:
        """Replace the whole table with ``snapshot``, reusing the pools of kept instances."""
        upstreams: dict[str, Upstream] = {}
        previous: dict[str, InstanceRoute] = {
            i.instance_id: i for v in self._variants() for i in v.instances
        }

        def route(variant: VariantSnapshot) -> VariantRoute:
            routes = []
            for instance in variant.instances:
                upstream = self._upstreams.get(instance.address)
                if upstream is None:
                    upstream = Upstream(instance.address)
                upstreams[instance.address] = upstream
                kept = previous.get(instance.instance_id)
                if kept is not None and kept.upstream is upstream:
                    routes.append(kept)  # in-flight requests still count against it
                else:
                    routes.append(InstanceRoute(instance.instance_id, upstream))
            return VariantRoute(
                variant.variant_name,
                variant.model_name,
                variant.weight,
                variant.strategy,
                routes,
                self._rng,
                variant.failure,
            )

        endpoints: dict[str, EndpointRoute] = {}
        for endpoint in snapshot.endpoints:
            endpoints[endpoint.endpoint_name] = EndpointRoute(
                endpoint.endpoint_name,
                [route(v) for v in endpoint.variants],
                self._rng,
                [route(v) for v in endpoint.shadows],
                endpoint.serverless,
                endpoint.asynchronous,
            )
        for address, upstream in self._upstreams.items():
            if address not in upstreams:
                upstream.close()
        self._endpoints = endpoints
        self._upstreams = upstreams
        self.version = snapshot.version

    def _variants(self) -> Iterator[VariantRoute]:
        """Every variant of every endpoint, production and shadow."""
        for endpoint in self._endpoints.values():
            yield from endpoint.variants
            yield from endpoint.shadows

    def _instances(self, instance_id: str) -> list[InstanceRoute]:
        return [
            instance
            for variant in self._variants()
            for instance in variant.instances
            if instance.instance_id == instance_id
        ]

    def mark_down(self, instance_id: str) -> None:
        """Stop routing to an instance the router found unreachable."""
        for instance in self._instances(instance_id):
            instance.down = True

    def mark_up(self, instance_id: str) -> None:
        """Route to it again: the controller checked it and found it healthy."""
        for instance in self._instances(instance_id):
            instance.down = False

    def close(self) -> None:
        for upstream in self._upstreams.values():
            upstream.close()
        self._upstreams = {}
        self._endpoints = {}
