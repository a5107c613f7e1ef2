"""The router: the data plane every invocation goes through, whatever API it came by.

For each invocation it checks the limits, picks a variant (by weight, or ``TargetVariant``), picks
an instance (least outstanding requests, or random), forwards the request over a kept-alive
connection, and turns what comes back into a result or a domain error (``ModelError`` with the
model's own status and message). It records SageMaker's endpoint metrics for every request.

An instance that cannot be reached is marked down at once and the request goes to another (it was
never sent); an instance that drops a request in flight is marked down too, and that request
fails. Either way the controller is told, and checks or replaces the instance.

:meth:`Router.invoke_stream` is the streaming variant (``InvokeEndpointWithResponseStream``): it
picks and sends the same way, fails the same way until the model's answer starts, then hands over
the body as the model sends it. Once the stream has started, a model that stalls longer than the
model timeout between two pieces, or that breaks off its answer, ends it with a
:class:`ModelStreamError` (``ModelInvocationTimeExceeded``, ``StreamBroken``); the instance is not
marked down for that (a model server breaks off a stream whose generator failed).

A request for a variant with no instance in service (a restarted server bringing its instances
back, a failed instance being replaced) waits up to ``instance_wait_seconds`` for one before it is
answered ``ServiceUnavailable``: the table changes as soon as the controller has one in service.

A serverless endpoint (``EndpointRoute.serverless``) may have no instance at all: its first
request tells the controller (``on_demand``) and waits for the cold start, up to the model
timeout. The router counts its requests in flight (:class:`Demand`, which the controller reads to
size the variant and to scale it to zero when idle); past ``MaxConcurrency`` a request is
answered ``ThrottlingException`` at once, and bodies over the serverless payload limit
``ValidationError`` (413).

An endpoint with shadow variants gets a sample of its invocations mirrored to them once production
has answered (:mod:`shipway.router.mirror`): the caller never waits for the copy, and the shadow's
answers feed the shadow report (:meth:`Router.shadow_report`) and its own per-variant metrics.
Streamed invocations are not mirrored. An endpoint without shadows pays one attribute check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from shipway.domain.clock import Clock, SystemClock
from shipway.domain.errors import (
    ModelError,
    PayloadTooLarge,
    ServiceUnavailable,
    ShipwayError,
    Throttled,
    ValidationError,
)
from shipway.monitor.metrics import MetricsStore, SeriesGroup
from shipway.monitor.shadow_report import Answer, ShadowReport
from shipway.router.mirror import Mirror
from shipway.router.routing import (
    EndpointRoute,
    InstanceRoute,
    RoutingTable,
    Snapshot,
    VariantRoute,
)
from shipway.router.upstream import (
    BodySource,
    ConnectFailed,
    ConnectionLost,
    UpstreamStream,
    UpstreamTimeout,
)

__all__ = [
    "Demand",
    "EndpointNotFound",
    "InstanceLost",
    "Invocation",
    "InvocationResult",
    "InvocationStream",
    "ModelStreamError",
    "Router",
]

log = logging.getLogger(__name__)

TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container primary. Review the "
    "latency metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)
STREAM_TIMEOUT_MESSAGE = (
    "Your model primary did not complete sending the inference response in the allotted time."
)
STREAM_BROKEN_MESSAGE = (
    "Your model primary broke off the inference response stream before completing it."
)
INVOCATIONS_PATH = b"/invocations"
FORWARDED = (
    (b"content-type", "content_type"),
    (b"accept", "accept"),
    (b"x-amzn-sagemaker-custom-attributes", "custom_attributes"),
    (b"x-amzn-sagemaker-inference-id", "inference_id"),
)


INVOCATION_METRICS = (
    ("Invocations", "Count"),
    ("InvocationsPerInstance", "Count"),
    ("Invocation4XXErrors", "Count"),
    ("Invocation5XXErrors", "Count"),
    ("InvocationModelErrors", "Count"),
    ("ModelLatency", "Microseconds"),
    ("OverheadLatency", "Microseconds"),
)
"""SageMaker's per-invocation endpoint metrics, in the order :meth:`Router._record` writes."""


class EndpointNotFound(ValidationError):
    def __init__(self, name: str, account_id: str) -> None:
        super().__init__(f"Endpoint {name} of account {account_id} not found.")


class InstanceLost(ModelError):
    """The instance went away while it held the request (it crashed, or was stopped): the
    request may be sent again (the asynchronous dispatcher does, a few times)."""


class ModelStreamError(ShipwayError):
    """The model failed after its streamed answer started (``error_code`` says how)."""

    code = "ModelStreamError"

    def __init__(self, message: str, error_code: str) -> None:
        super().__init__(message)
        self.error_code = error_code


@dataclass(frozen=True, slots=True)
class Invocation:
    endpoint_name: str
    body: bytes
    content_type: bytes | None = None
    accept: bytes | None = None
    custom_attributes: bytes | None = None
    inference_id: bytes | None = None
    target_variant: str | None = None
    source: BodySource | None = None
    """The body, streamed (an asynchronous request's input object); ``body`` is then empty."""
    timeout: float | None = None
    """How long the model may take (default: the router's model timeout)."""
    asynchronous: bool = False
    """Sent by the asynchronous dispatcher: the only way into an asynchronous endpoint."""


@dataclass(frozen=True, slots=True)
class InvocationResult:
    body: bytes
    content_type: bytes
    variant_name: str
    custom_attributes: bytes | None = None


@dataclass
class Demand:
    """A serverless endpoint's traffic as this router sees it (soft state, lost on restart)."""

    in_flight: int = 0
    """Requests admitted and not yet answered (waiting for a cold start included)."""
    last_request: float | None = None
    """When the last request arrived (the clock's monotonic time)."""
    peak: int = 0
    """Most requests in flight at once since ``peak_time``."""
    peak_time: float = 0.0


class Router:
    def __init__(
        self,
        metrics: MetricsStore,
        *,
        account_id: str,
        max_payload_bytes: int,
        model_timeout_seconds: float,
        table: RoutingTable | None = None,
        on_instance_down: Callable[[str], None] = lambda _id: None,
        statuses: Callable[[str], str | None] = lambda _name: None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        max_shadow_in_flight: int = 64,
        instance_wait_seconds: float = 0.0,
        on_instance_hung: Callable[[str, str], None] = lambda _id, _reason: None,
        max_timeouts: int = 3,
        instance_log: Callable[[str], Path | None] = lambda _id: None,
        on_demand: Callable[[str], None] = lambda _name: None,
    ) -> None:
        """``rng`` draws which requests are mirrored to shadow variants;
        ``max_shadow_in_flight`` bounds the copies under way per endpoint;
        ``instance_wait_seconds`` is how long a request waits for an instance in service;
        an instance that leaves ``max_timeouts`` requests in a row unanswered is reported
        with ``on_instance_hung`` (the controller replaces it); a ModelError names the log of
        the instance that answered it, ``instance_log(instance_id)``."""
        self.table = table or RoutingTable()
        self.metrics = metrics
        self.account_id = account_id
        self.max_payload_bytes = max_payload_bytes
        self.model_timeout_seconds = model_timeout_seconds
        self._on_instance_down = on_instance_down
        self._statuses = statuses
        self.instance_wait_seconds = instance_wait_seconds
        self._on_instance_hung = on_instance_hung
        self.max_timeouts = max_timeouts
        self._instance_log = instance_log
        self._on_demand = on_demand
        self._demand: dict[str, Demand] = {}
        self._changed: asyncio.Event | None = None
        """Set (and replaced) each time the routing table changes; requests waiting for an
        instance wait on it."""
        self._groups: dict[tuple[str, str], SeriesGroup] = {}
        """The status of an endpoint the table does not route (to say why), if it exists."""
        self._clock: Clock = clock or SystemClock()
        """Timestamps the metrics (so alarms and tests share one notion of now)."""
        self._mirror = Mirror(
            self._forward_shadow,
            clock=self._clock,
            rng=rng or random.Random(),
            max_in_flight=max_shadow_in_flight,
        )

    def apply(self, snapshot: Snapshot) -> None:
        self.table.apply(snapshot)
        self._mirror.apply(snapshot)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def forget_metrics(
        self, endpoint_name: str, variant_names: Collection[str] | None = None
    ) -> None:
        """The endpoint (``variant_names`` None) or these variants of it are gone: retire their
        metric series, so ``/metrics`` stops showing them and a later endpoint of that name
        starts from zero. Call it once they are out of the routing table: a request still under
        way on them then records nothing (:meth:`_record`)."""
        for key in [
            k
            for k in self._groups
            if k[0] == endpoint_name and (variant_names is None or k[1] in variant_names)
        ]:
            del self._groups[key]
        if variant_names is None:
            self._demand.pop(endpoint_name, None)
            self.metrics.retire({"EndpointName": endpoint_name})
        for variant_name in variant_names or ():
            self.metrics.retire({"EndpointName": endpoint_name, "VariantName": variant_name})

    def shadow_report(self, endpoint_name: str, tolerance: float = 0.0) -> ShadowReport | None:
        """How the endpoint's shadow variant compares with production since the report started;
        None when the endpoint is not routed with a shadow variant.

        Outputs agree when they differ by at most ``tolerance`` (0: equal, or numerically equal).
        """
        route = self.table.get(endpoint_name)
        return self._mirror.report(endpoint_name, tolerance, route)

    def reset_shadow_report(self, endpoint_name: str) -> bool:
        """Start the endpoint's shadow report afresh; False when it has none."""
        return self._mirror.reset(endpoint_name)

    async def drain_shadows(self, timeout: float | None = None) -> None:
        """Wait for the mirrored copies under way; cancel those left after ``timeout`` s."""
        await self._mirror.drain(timeout)

    def check_size(self, size: int) -> None:
        if size > self.max_payload_bytes:
            raise PayloadTooLarge(size, self.max_payload_bytes)

    def _route(self, name: str) -> EndpointRoute:
        route = self.table.get(name)
        if route is None:
            status = self._statuses(name)
            if status is None:
                raise EndpointNotFound(name, self.account_id)
            raise ValidationError(
                f"Endpoint {name} is {status}; it takes invocations once it is InService."
            )
        return route

    def demand(self, endpoint_name: str) -> Demand | None:
        """A serverless endpoint's requests in flight and when the last came; None before its
        first request (since this router started)."""
        return self._demand.get(endpoint_name)

    def record_concurrency(self) -> None:
        """Sample how many requests are in flight: ``ConcurrentRequestsPerModel`` (per
        instance in service, each production variant) and, for a serverless variant with
        provisioned concurrency, ``ServerlessProvisionedConcurrencyUtilization`` (in flight ÷
        provisioned, at most 1). Target tracking on SageMaker's concurrency metrics reads
        these; the platform calls it every second."""
        now = self._clock.time()
        for name in self.table.names():
            route = self.table.get(name)
            if route is None:
                continue
            for variant in route.variants:
                dimensions = {"EndpointName": name, "VariantName": variant.name}
                if variant.instances:
                    in_flight = sum(i.outstanding for i in variant.instances)
                    self.metrics.put(
                        "ConcurrentRequestsPerModel",
                        dimensions,
                        in_flight / len(variant.instances),
                        now,
                        unit="Count",
                    )
                limits = route.serverless
                if limits is not None and limits.provisioned_concurrency:
                    demand = self._demand.get(name)
                    busy = demand.in_flight if demand is not None else 0
                    self.metrics.put(
                        "ServerlessProvisionedConcurrencyUtilization",
                        dimensions,
                        min(1.0, busy / limits.provisioned_concurrency),
                        now,
                    )

    def _admit(self, route: EndpointRoute, size: int) -> Demand:
        """Count a request to a serverless endpoint in, or refuse it: over its payload limit,
        or over MaxConcurrency requests in flight. Wakes the controller when the variant has
        no instance to take it (a cold start)."""
        limits = route.serverless
        assert limits is not None
        if size > limits.max_payload_bytes:
            raise PayloadTooLarge(size, limits.max_payload_bytes)
        demand = self._demand.get(route.name)
        if demand is None:
            demand = self._demand[route.name] = Demand()
        if demand.in_flight >= limits.max_concurrency:
            raise Throttled(
                f"Endpoint {route.name} has {demand.in_flight} requests in flight, its "
                f"MaxConcurrency of {limits.max_concurrency}: try again later."
            )
        now = self._clock.monotonic()
        demand.in_flight += 1
        demand.last_request = now
        if demand.in_flight > demand.peak or now - demand.peak_time > 1.0:
            demand.peak, demand.peak_time = demand.in_flight, now
        if not any(v.available() for v in route.variants):
            self._on_demand(route.name)
        return demand

    async def invoke(self, invocation: Invocation) -> InvocationResult:
        started = time.perf_counter()
        route, headers = self._prepare(invocation)
        if route.serverless is None:
            return await self._invoke(invocation, route, headers, started)
        demand = self._admit(route, len(invocation.body))
        try:
            return await self._invoke(invocation, route, headers, started)
        finally:
            demand.in_flight -= 1

    async def _invoke(
        self,
        invocation: Invocation,
        route: EndpointRoute,
        headers: list[tuple[bytes, bytes]],
        started: float,
    ) -> InvocationResult:
        tried: set[str] = set()
        while True:
            route, variant, instance = await self._pick_or_wait(
                route, invocation.target_variant, tried, started
            )
            instance.outstanding += 1
            sent = time.perf_counter()
            try:
                response = await instance.upstream.request(
                    b"POST", INVOCATIONS_PATH, headers, invocation.body, self.model_timeout_seconds
                )
            except ConnectFailed:
                self._down(instance.instance_id)
                continue  # never sent: another instance may take it
            except (ConnectionLost, UpstreamTimeout) as exc:
                if route.shadows:
                    failed = Answer(None, b"", time.perf_counter() - sent)
                    self._mirror.send(route, variant, headers, invocation.body, failed)
                raise self._failed(exc, route, variant, instance, started, sent) from exc
            finally:
                instance.outstanding -= 1
            instance.timeouts = 0
            self._record(route, variant, started, sent, response.status)
            if route.shadows:
                answer = Answer(response.status, response.body, time.perf_counter() - sent)
                self._mirror.send(route, variant, headers, invocation.body, answer)
            if response.status >= 400:
                raise self._model_error(instance, response.status, response.body)
            return InvocationResult(
                response.body,
                response.headers.get(b"content-type", b"application/octet-stream"),
                variant.name,
                response.headers.get(b"x-amzn-sagemaker-custom-attributes"),
            )

    async def invoke_stream(self, invocation: Invocation) -> InvocationStream:
        """Send an invocation whose answer is streamed; return once the model's answer starts.

        Until then it fails as :meth:`invoke` does (``ModelError`` when the model answers 4xx or
        5xx...). The returned stream yields the body as it comes; the caller must ``aclose`` it
        if it stops reading early.
        """
        started = time.perf_counter()
        route, headers = self._prepare(invocation)
        demand = None if route.serverless is None else self._admit(route, len(invocation.body))
        try:
            stream = await self._invoke_stream(invocation, route, headers, started)
        except BaseException:
            if demand is not None:
                demand.in_flight -= 1
            raise
        stream._admitted = demand  # counted out when the stream ends
        return stream

    async def _invoke_stream(
        self,
        invocation: Invocation,
        route: EndpointRoute,
        headers: list[tuple[bytes, bytes]],
        started: float,
    ) -> InvocationStream:
        tried: set[str] = set()
        while True:
            route, variant, instance = await self._pick_or_wait(
                route, invocation.target_variant, tried, started
            )
            instance.outstanding += 1
            sent = time.perf_counter()
            streaming = False
            timeout = invocation.timeout or self.model_timeout_seconds
            body = invocation.body if invocation.source is None else invocation.source
            try:
                upstream = await instance.upstream.request_stream(
                    b"POST", INVOCATIONS_PATH, headers, body, timeout
                )
                if upstream.status < 400:
                    stream = InvocationStream(
                        self, route, variant, instance, upstream, started, sent, timeout
                    )
                    streaming = True  # the stream gives the instance back when it ends
                    instance.timeouts = 0
                    return stream
                try:
                    error = await upstream.read(timeout)
                finally:
                    upstream.close()
            except ConnectFailed:
                self._down(instance.instance_id)
                continue  # never sent: another instance may take it
            except (ConnectionLost, UpstreamTimeout) as exc:
                raise self._failed(exc, route, variant, instance, started, sent) from exc
            finally:
                if not streaming:
                    instance.outstanding -= 1
            self._record(route, variant, started, sent, upstream.status)
            raise self._model_error(instance, upstream.status, error)

    def _prepare(self, invocation: Invocation) -> tuple[EndpointRoute, list[tuple[bytes, bytes]]]:
        """The endpoint's route and the headers to forward, once the invocation passes checks."""
        self.check_size(len(invocation.body))
        route = self._route(invocation.endpoint_name)
        if route.asynchronous is not None and not invocation.asynchronous:
            raise ValidationError(
                f"Endpoint {route.name} is an asynchronous endpoint (it has an "
                "AsyncInferenceConfig): call InvokeEndpointAsync with an InputLocation."
            )
        headers = [
            (name, value)
            for name, attribute in FORWARDED
            if (value := getattr(invocation, attribute)) is not None
        ]
        return route, headers

    async def _pick_or_wait(
        self, route: EndpointRoute, target: str | None, tried: set[str], started: float
    ) -> tuple[EndpointRoute, VariantRoute, InstanceRoute]:
        """:meth:`_pick`, waiting for the table to bring an instance while none can take the
        request, up to ``instance_wait_seconds`` after the request ``started``."""
        # a serverless endpoint's cold start is part of the request's time, as on SageMaker
        wait = self.model_timeout_seconds if route.serverless else self.instance_wait_seconds
        while True:
            try:
                return (route, *self._pick(route, target, tried))
            except ServiceUnavailable:
                failed = route.serverless and next((v for v in route.variants if v.failure), None)
                if failed:
                    raise ServiceUnavailable(
                        f"Variant {failed.name} of endpoint {route.name} could not start an "
                        f"instance: {failed.failure}"
                    ) from None
                remaining = started + wait - time.perf_counter()
                if remaining <= 0:
                    raise
                if self._changed is None:
                    self._changed = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
                route = self._route(route.name)

    def _pick(
        self, route: EndpointRoute, target: str | None, tried: set[str]
    ) -> tuple[VariantRoute, InstanceRoute]:
        """A variant and one of its instances not ``tried`` yet (it is added to ``tried``)."""
        variant = self._variant(route, target)
        instance = variant.pick()
        if instance is None or instance.instance_id in tried:
            raise ServiceUnavailable(
                f"No instance of variant {variant.name} of endpoint {route.name} can take "
                "the request right now; try again."
            )
        tried.add(instance.instance_id)
        return variant, instance

    def _failed(
        self,
        exc: ConnectionLost | UpstreamTimeout,
        route: EndpointRoute,
        variant: VariantRoute,
        instance: InstanceRoute,
        started: float,
        sent: float,
    ) -> ModelError:
        """The error for a request the instance dropped or did not answer in time."""
        self._record(route, variant, started, sent, 500)
        if isinstance(exc, ConnectionLost):
            self._down(instance.instance_id)
            return self._model_error(
                instance,
                0,
                f"The instance stopped while handling the request: {exc}",
                InstanceLost,
            )
        instance.timeouts += 1
        if instance.timeouts >= self.max_timeouts:
            self.table.mark_down(instance.instance_id)
            reason = (
                f"{instance.timeouts} requests in a row were not answered within the "
                f"invocation timeout of {self.model_timeout_seconds:g} seconds: the model is hung"
            )
            try:
                self._on_instance_hung(instance.instance_id, reason)
            except Exception:  # telling the controller must never fail a request
                log.exception("could not report instance %s hung", instance.instance_id)
        return self._model_error(instance, 0, TIMEOUT_MESSAGE)

    def _model_error(
        self,
        instance: InstanceRoute,
        status: int,
        message: bytes | str,
        kind: type[ModelError] = ModelError,
    ) -> ModelError:
        """What the model (or its instance) answered, with where that instance's log is."""
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        log = self._instance_log(instance.instance_id)
        return kind(status, message, log=None if log is None else str(log))

    def _variant(self, route: EndpointRoute, target: str | None) -> VariantRoute:
        if target is None:
            variant = route.pick()
            if variant is None:
                raise ServiceUnavailable(
                    f"No instance of endpoint {route.name} can take the request right now; "
                    "try again."
                )
            return variant
        variant = route.variant(target)
        if variant is None:
            raise ValidationError(
                f"TargetVariant {target} is not a production variant of endpoint {route.name}; "
                f"its variants are {', '.join(v.name for v in route.variants)}."
            )
        return variant

    async def _forward_shadow(
        self,
        route: EndpointRoute,
        shadow: VariantRoute,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> Answer:
        """Send a mirrored copy to one of the shadow's instances, as :meth:`invoke` would; its
        answer (status None: none came), never an error. Records the shadow's metrics."""
        started = time.perf_counter()
        tried: set[str] = set()
        while True:
            instance = shadow.pick()
            if instance is None or instance.instance_id in tried:
                return Answer(None)
            tried.add(instance.instance_id)
            instance.outstanding += 1
            sent = time.perf_counter()
            try:
                response = await instance.upstream.request(
                    b"POST", INVOCATIONS_PATH, headers, body, self.model_timeout_seconds
                )
            except ConnectFailed:
                self._down(instance.instance_id)
                continue
            except (ConnectionLost, UpstreamTimeout) as exc:
                self._record(route, shadow, started, sent, 500)
                if isinstance(exc, ConnectionLost):
                    self._down(instance.instance_id)
                return Answer(None, b"", time.perf_counter() - sent)
            finally:
                instance.outstanding -= 1
            self._record(route, shadow, started, sent, response.status)
            return Answer(response.status, response.body, time.perf_counter() - sent)

    def _down(self, instance_id: str) -> None:
        self.table.mark_down(instance_id)
        try:
            self._on_instance_down(instance_id)
        except Exception:  # telling the controller must never fail a request
            log.exception("could not report instance %s down", instance_id)

    def _record(
        self, route: EndpointRoute, variant: VariantRoute, started: float, sent: float, status: int
    ) -> None:
        done = time.perf_counter()
        group = self._groups.get((route.name, variant.name))
        if group is None:
            if not self._routed(route.name, variant.name):
                return  # gone since the request started (forget_metrics): not brought back
            dimensions = {"EndpointName": route.name, "VariantName": variant.name}
            group = self._groups[(route.name, variant.name)] = self.metrics.group(
                INVOCATION_METRICS, dimensions
            )
        model = (done - sent) * 1e6
        group.put(
            self._clock.time(),
            (
                1.0,
                1.0 / max(1, variant.instance_count),
                1.0 if 400 <= status < 500 else 0.0,
                1.0 if status >= 500 else 0.0,
                1.0 if status >= 400 else 0.0,
                model,
                (done - started) * 1e6 - model,
            ),
        )

    def _routed(self, endpoint_name: str, variant_name: str) -> bool:
        """Whether the table routes (or mirrors) to that variant now."""
        route = self.table.get(endpoint_name)
        return route is not None and any(
            v.name == variant_name for v in (*route.variants, *route.shadows)
        )


class InvocationStream:
    """A streamed answer under way: its headers are known, its body is iterated.

    Yields the pieces of the body as the model sends them (a model that does not stream, whose
    answer has a ``Content-Length``, gives its whole body as one piece); raises
    :class:`ModelStreamError` when the model stalls past the model timeout or breaks off. When the
    stream ends (or is closed early) the instance is given back and the invocation's metrics are
    recorded.
    """

    __slots__ = (
        "_admitted",
        "_done",
        "_instance",
        "_route",
        "_router",
        "_sent",
        "_started",
        "_timeout",
        "_upstream",
        "_variant",
        "_whole",
        "content_type",
        "custom_attributes",
        "variant_name",
    )

    def __init__(
        self,
        router: Router,
        route: EndpointRoute,
        variant: VariantRoute,
        instance: InstanceRoute,
        upstream: UpstreamStream,
        started: float,
        sent: float,
        timeout: float,
    ) -> None:
        self._router = router
        self._timeout = timeout
        self._route = route
        self._variant = variant
        self._instance = instance
        self._upstream = upstream
        self._started = started
        self._sent = sent
        self._done = False
        self._admitted: Demand | None = None
        """A serverless endpoint's count of requests in flight, which this one is in."""
        self._whole = b"content-length" in upstream.headers
        self.content_type: bytes = upstream.headers.get(
            b"content-type", b"application/octet-stream"
        )
        self.variant_name = variant.name
        self.custom_attributes = upstream.headers.get(b"x-amzn-sagemaker-custom-attributes")

    def __aiter__(self) -> InvocationStream:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        timeout = self._timeout
        try:
            if self._whole:
                self._whole = False
                piece: bytes | None = await self._upstream.read(timeout) or None
            else:
                piece = await self._upstream.next(timeout)
        except UpstreamTimeout as exc:
            self._finish(500)
            raise ModelStreamError(STREAM_TIMEOUT_MESSAGE, "ModelInvocationTimeExceeded") from exc
        except ConnectionLost as exc:
            self._finish(500)
            raise ModelStreamError(STREAM_BROKEN_MESSAGE, "StreamBroken") from exc
        except BaseException:
            self._finish(self._upstream.status)
            raise
        if piece is None:
            self._finish(self._upstream.status)
            raise StopAsyncIteration
        return piece

    async def aclose(self) -> None:
        """Stop reading (the connection to the instance is dropped unless the body was all in)."""
        if not self._done:
            self._finish(self._upstream.status)

    def _finish(self, status: int) -> None:
        self._done = True
        self._upstream.close()
        self._instance.outstanding -= 1
        if self._admitted is not None:
            self._admitted.in_flight -= 1
            self._admitted = None
        self._router._record(self._route, self._variant, self._started, self._sent, status)
