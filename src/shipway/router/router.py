"""The router: the data plane every invocation goes through, whatever API it came by.

For each invocation it checks the limits, picks a variant (by weight, or ``TargetVariant``), picks
an instance (least outstanding requests, or random), forwards the request over a kept-alive
connection, and turns what comes back into a result or a domain error (``ModelError`` with the
model's own status and message). It records SageMaker's endpoint metrics for every request.

An instance that cannot be reached is marked down at once and the request goes to another (it was
never sent); an instance that drops a request in flight is marked down too, and that request
fails. Either way the controller is told, and checks or replaces the instance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shipway.domain.errors import ModelError, PayloadTooLarge, ServiceUnavailable, ValidationError
from shipway.monitor.metrics import MetricsStore, SeriesGroup
from shipway.router.routing import EndpointRoute, RoutingTable, Snapshot, VariantRoute
from shipway.router.upstream import ConnectFailed, ConnectionLost, UpstreamTimeout

__all__ = ["EndpointNotFound", "Invocation", "InvocationResult", "Router"]

log = logging.getLogger(__name__)

TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container primary. Review the "
    "latency metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
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


@dataclass(frozen=True, slots=True)
class Invocation:
    endpoint_name: str
    body: bytes
    content_type: bytes | None = None
    accept: bytes | None = None
    custom_attributes: bytes | None = None
    inference_id: bytes | None = None
    target_variant: str | None = None


@dataclass(frozen=True, slots=True)
class InvocationResult:
    body: bytes
    content_type: bytes
    variant_name: str
    custom_attributes: bytes | None = None


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
    ) -> None:
        self.table = table or RoutingTable()
        self.metrics = metrics
        self.account_id = account_id
        self.max_payload_bytes = max_payload_bytes
        self.model_timeout_seconds = model_timeout_seconds
        self._on_instance_down = on_instance_down
        self._statuses = statuses
        self._groups: dict[tuple[str, str], SeriesGroup] = {}
        """The status of an endpoint the table does not route (to say why), if it exists."""

    def apply(self, snapshot: Snapshot) -> None:
        self.table.apply(snapshot)

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

    async def invoke(self, invocation: Invocation) -> InvocationResult:
        started = time.perf_counter()
        self.check_size(len(invocation.body))
        route = self._route(invocation.endpoint_name)
        headers = [
            (name, value)
            for name, attribute in FORWARDED
            if (value := getattr(invocation, attribute)) is not None
        ]
        tried: set[str] = set()
        while True:
            variant = self._variant(route, invocation.target_variant)
            instance = variant.pick()
            if instance is None or instance.instance_id in tried:
                raise ServiceUnavailable(
                    f"No instance of variant {variant.name} of endpoint {route.name} can take "
                    "the request right now; try again."
                )
            tried.add(instance.instance_id)
            instance.outstanding += 1
            sent = time.perf_counter()
            try:
                response = await instance.upstream.request(
                    b"POST", INVOCATIONS_PATH, headers, invocation.body, self.model_timeout_seconds
                )
            except ConnectFailed:
                self._down(instance.instance_id)
                continue  # never sent: another instance may take it
            except ConnectionLost as exc:
                self._down(instance.instance_id)
                self._record(route, variant, started, sent, 500)
                raise ModelError(
                    0, f"The instance stopped while handling the request: {exc}"
                ) from exc
            except UpstreamTimeout as exc:
                self._record(route, variant, started, sent, 500)
                raise ModelError(0, TIMEOUT_MESSAGE) from exc
            finally:
                instance.outstanding -= 1
            self._record(route, variant, started, sent, response.status)
            if response.status >= 400:
                raise ModelError(response.status, response.body.decode("utf-8", "replace"))
            return InvocationResult(
                response.body,
                response.headers.get(b"content-type", b"application/octet-stream"),
                variant.name,
                response.headers.get(b"x-amzn-sagemaker-custom-attributes"),
            )

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
            dimensions = {"EndpointName": route.name, "VariantName": variant.name}
            group = self._groups[(route.name, variant.name)] = self.metrics.group(
                INVOCATION_METRICS, dimensions
            )
        model = (done - sent) * 1e6
        group.put(
            time.time(),
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
