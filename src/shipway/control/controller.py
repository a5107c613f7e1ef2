"""The controller: one reconcile loop that makes the endpoints in the store so.

Each pass it (1) observes every instance it runs — has the process exited, does ``/ping``
answer — (2) reconciles each endpoint: starts missing instances, replaces failed ones (with
backoff), stops extra ones, stops everything of a deleted or failed endpoint, and moves the
endpoint's status through :func:`~shipway.control.lifecycle.next_status`; and (3) hands the
router a new routing snapshot when what can take traffic changed.

The loop never dies: each endpoint is reconciled inside its own ``try``, and a failed pass is
logged and retried. It wakes on its interval, when the API changes an endpoint (:meth:`wake`,
thread-safe) and when the router finds an instance unreachable (:meth:`instance_down`).

Desired state lives in the store, so a restarted server reconciles the same endpoints back into
service without a new create call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from shipway.compute.backend import ComputeBackend, InstanceSpec
from shipway.control.lifecycle import VariantObservation, next_status
from shipway.domain.clock import Clock
from shipway.domain.endpoint import Endpoint, EndpointStatus
from shipway.domain.endpoint_config import ProductionVariant
from shipway.domain.errors import ShipwayError
from shipway.domain.instance import Instance, InstanceStatus
from shipway.domain.instance_types import InstanceTypeCatalog
from shipway.router.routing import (
    EndpointSnapshot,
    InstanceSnapshot,
    Snapshot,
    VariantSnapshot,
)
from shipway.router.upstream import Upstream, UpstreamError
from shipway.serving.runtime import resolve_runtime
from shipway.settings import Settings
from shipway.store.artifacts import ArtifactStore
from shipway.store.metadata import MetadataStore

__all__ = ["Controller"]

log = logging.getLogger(__name__)

SERVING = (EndpointStatus.IN_SERVICE, EndpointStatus.UPDATING)
PING_TIMEOUT = 2.0
MAX_BACKOFF = 60.0


@dataclass
class _Tracked:
    instance: Instance
    upstream: Upstream
    started: float
    """Monotonic time the process started."""
    startup_deadline: float
    next_ping: float = 0.0


@dataclass
class _Backoff:
    failures: int = 0
    not_before: float = 0.0


class Controller:
    def __init__(
        self,
        *,
        store: MetadataStore,
        backend: ComputeBackend,
        artifacts: ArtifactStore,
        catalog: InstanceTypeCatalog,
        settings: Settings,
        clock: Clock,
        publish: Callable[[Snapshot], None],
        mark_up: Callable[[str], None] = lambda _id: None,
    ) -> None:
        self._store = store
        self._backend = backend
        self._artifacts = artifacts
        self._catalog = catalog
        self._settings = settings
        self._clock = clock
        self._publish_snapshot = publish
        self._mark_up = mark_up
        self._tracked: dict[str, _Tracked] = {}
        self._fetches: dict[str, asyncio.Task[Path]] = {}
        self._backoff: dict[tuple[str, str], _Backoff] = {}
        self._endpoints: list[Endpoint] = []
        self._published: tuple[EndpointSnapshot, ...] | None = None
        self._version = 0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.statuses: dict[str, str] = {}
        """Every endpoint's status by exact name, as of the last pass (for the router)."""

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await asyncio.to_thread(self._forget_previous_run)
        await self.reconcile()
        self._task = self._loop.create_task(self._run(), name="controller")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in self._fetches.values():
            task.cancel()
        grace = self._settings.instance_stop_timeout_seconds
        await asyncio.gather(*(self._stop(t, grace) for t in list(self._tracked.values())))
        await self._backend.close(grace)

    def wake(self, _endpoint_name: str | None = None) -> None:
        """Reconcile soon. Safe to call from any thread."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def instance_down(self, instance_id: str) -> None:
        """The router could not reach this instance: check it now."""
        tracked = self._tracked.get(instance_id)
        if tracked is not None:
            tracked.next_ping = 0.0
        self.wake()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=self._settings.reconcile_interval_seconds
                )
            self._wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile pass failed; retrying")

    def _forget_previous_run(self) -> None:
        """Instances recorded by a server that did not stop cleanly: end them, drop the rows."""
        for instance in self._store.instances.all():
            if instance.pid and _is_model_server(instance.pid):
                log.warning("stopping instance %s left by a previous run", instance.instance_id)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(instance.pid, signal.SIGTERM)
            self._store.instances.remove(instance.instance_id)

    # --- one pass -----------------------------------------------------------------------------

    async def reconcile(self) -> None:
        self._endpoints = await asyncio.to_thread(self._store.endpoints.all)
        self.statuses = {e.endpoint_name: e.endpoint_status.value for e in self._endpoints}
        await self._observe()
        names = set()
        for endpoint in self._endpoints:
            names.add(endpoint.endpoint_name)
            try:
                await self._reconcile(endpoint)
            except Exception:
                log.exception("reconciling endpoint %s failed", endpoint.endpoint_name)
        for tracked in [t for t in self._tracked.values() if t.instance.endpoint_name not in names]:
            await self._stop(tracked, self._settings.instance_stop_timeout_seconds)
        self._publish()

    async def _observe(self) -> None:
        now = self._clock.monotonic()
        checks = []
        for tracked in list(self._tracked.values()):
            instance = tracked.instance
            if not instance.live:
                continue
            reason = self._backend.exit_reason(instance.instance_id)
            if reason is not None:
                await self._set(tracked, InstanceStatus.FAILED, reason)
                continue
            if instance.status is InstanceStatus.STARTING and now > tracked.startup_deadline:
                await self._set(
                    tracked,
                    InstanceStatus.FAILED,
                    "the instance did not pass its /ping health check within "
                    f"{tracked.startup_deadline - tracked.started:.0f} seconds",
                )
                continue
            if instance.status is InstanceStatus.STARTING or now >= tracked.next_ping:
                checks.append(self._ping(tracked))
        if checks:
            await asyncio.gather(*checks)

    async def _ping(self, tracked: _Tracked) -> None:
        settings = self._settings
        try:
            response = await tracked.upstream.get(b"/ping", PING_TIMEOUT)
            healthy = response.status == 200
        except UpstreamError:
            healthy = False
        tracked.next_ping = self._clock.monotonic() + settings.health_check_interval_seconds
        instance = tracked.instance
        if instance.status is InstanceStatus.STARTING:
            if healthy:
                await self._set(tracked, InstanceStatus.IN_SERVICE)
                self._backoff.pop((instance.endpoint_name, instance.variant_name), None)
            return
        if healthy:
            if instance.consecutive_ping_failures:
                tracked.instance = replace(instance, consecutive_ping_failures=0)
            self._mark_up(instance.instance_id)
            return
        failures = instance.consecutive_ping_failures + 1
        tracked.instance = replace(instance, consecutive_ping_failures=failures)
        if failures >= settings.health_check_failures:
            await self._set(
                tracked,
                InstanceStatus.FAILED,
                f"the instance failed {failures} consecutive /ping health checks",
            )
            await self._backend.stop(instance.instance_id, 0)

    async def _reconcile(self, endpoint: Endpoint) -> None:
        status = endpoint.endpoint_status
        mine = [
            t for t in self._tracked.values() if t.instance.endpoint_name == endpoint.endpoint_name
        ]
        if status is EndpointStatus.DELETING:
            grace = self._settings.instance_stop_timeout_seconds
            await asyncio.gather(*(self._stop(t, grace) for t in mine))
            await asyncio.to_thread(self._store.endpoints.remove, endpoint.endpoint_name)
            self._backoff = {
                k: v for k, v in self._backoff.items() if k[0] != endpoint.endpoint_name
            }
            log.info("endpoint %s deleted", endpoint.endpoint_name)
            return
        if status is EndpointStatus.FAILED:
            for tracked in mine:
                await self._stop(tracked, 0)
            return
        observations = []
        for variant, state in zip(
            endpoint.config.production_variants, endpoint.variants, strict=True
        ):
            observations.append(
                await self._reconcile_variant(
                    endpoint,
                    variant,
                    state.desired_instance_count,
                    [t for t in mine if t.instance.variant_name == variant.variant_name],
                )
            )
        new_status, reason = next_status(status, observations)
        if new_status is not status:
            fields = {
                "endpoint_status": new_status,
                "failure_reason": reason,
                "last_modified_time": self._clock.now(),
            }
            updated = await asyncio.to_thread(
                self._store.endpoints.update,
                endpoint.endpoint_name,
                lambda current: current.model_copy(update=fields),
                expected_status=status.value,
            )
            if updated is not None:
                log.info("endpoint %s is %s%s", endpoint.endpoint_name, new_status.value,
                         f": {reason}" if reason else "")  # fmt: skip
                self.statuses[endpoint.endpoint_name] = new_status.value
                self._endpoints = [
                    updated if e.endpoint_name == endpoint.endpoint_name else e
                    for e in self._endpoints
                ]
                if new_status is EndpointStatus.FAILED:
                    for tracked in mine:
                        await self._stop(tracked, 0)

    async def _reconcile_variant(
        self, endpoint: Endpoint, variant: ProductionVariant, desired: int, mine: list[_Tracked]
    ) -> VariantObservation:
        key = (endpoint.endpoint_name, variant.variant_name)
        failure = None
        for tracked in [t for t in mine if t.instance.status is InstanceStatus.FAILED]:
            reason = tracked.instance.failure_reason or "the instance failed"
            log.warning("instance %s failed: %s", tracked.instance.instance_id, reason)
            if endpoint.endpoint_status is EndpointStatus.CREATING:
                failure = f"the model {variant.model_name} could not be served: {reason}"
            backoff = self._backoff.setdefault(key, _Backoff())
            backoff.failures += 1
            backoff.not_before = self._clock.monotonic() + min(
                MAX_BACKOFF, 0.5 * 2 ** (backoff.failures - 1)
            )
            await self._stop(tracked, 0)
        live = [t for t in mine if t.instance.live]
        if failure is None and len(live) < desired:
            waiting = self._backoff.get(key)
            if waiting is None or self._clock.monotonic() >= waiting.not_before:
                try:
                    for _ in range(desired - len(live)):
                        started = await self._start(endpoint, variant)
                        if started is None:
                            break  # the artifact is still being fetched
                        live.append(started)
                except ShipwayError as exc:
                    failure = exc.message
                    log.warning("cannot start %s/%s: %s", *key, exc.message)
        if len(live) > desired:
            extra = sorted(
                live,
                key=lambda t: (t.instance.status is InstanceStatus.IN_SERVICE, -t.started),
            )[: len(live) - desired]
            for tracked in extra:
                await self._stop(tracked, self._settings.instance_stop_timeout_seconds)
            live = [t for t in live if t not in extra]
        in_service = sum(1 for t in live if t.instance.status is InstanceStatus.IN_SERVICE)
        return VariantObservation(variant.variant_name, desired, in_service, failure)

    # --- instances ----------------------------------------------------------------------------

    async def _start(self, endpoint: Endpoint, variant: ProductionVariant) -> _Tracked | None:
        model = await asyncio.to_thread(self._store.models.get, variant.model_name or "")
        if model is None:
            raise ShipwayError(f"the model {variant.model_name} no longer exists")
        container = model.all_containers()[0]
        model_dir = self._model_dir(container.model_data_url or "")
        if model_dir is None:
            return None
        instance_type = self._catalog.get(variant.instance_type or "local")
        instance_id = f"{endpoint.endpoint_name[:32]}-{uuid.uuid4().hex[:10]}".lower()
        spec = InstanceSpec(
            instance_id=instance_id,
            model_name=model.model_name,
            runtime=resolve_runtime(container.image),
            model_dir=model_dir,
            instance_type=instance_type,
            environment=dict(container.environment or {}),
            max_batch_size=self._settings.max_batch_size,
            max_batch_delay_ms=self._settings.max_batch_delay_ms,
        )
        started = await self._backend.start(spec)
        now = self._clock.monotonic()
        timeout = (
            variant.container_startup_health_check_timeout_in_seconds
            or self._settings.instance_startup_timeout_seconds
        )
        instance = Instance(
            instance_id=instance_id,
            endpoint_name=endpoint.endpoint_name,
            variant_name=variant.variant_name,
            instance_type=instance_type.name,
            model_name=model.model_name,
            generation=endpoint.generation,
            status=InstanceStatus.STARTING,
            address=started.address,
            pid=started.pid,
            started_at=self._clock.now().timestamp(),
        )
        tracked = _Tracked(instance, Upstream(started.address), now, now + timeout)
        self._tracked[instance_id] = tracked
        await asyncio.to_thread(self._store.instances.put, instance)
        return tracked

    def _model_dir(self, url: str) -> Path | None:
        """The local folder of an artifact, or None while it is being fetched."""
        task = self._fetches.get(url)
        if task is None:
            self._fetches[url] = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._artifacts.fetch, url)
            )
            return None
        if not task.done():
            return None
        exc = task.exception()
        if exc is not None:
            del self._fetches[url]  # try again next time
            if isinstance(exc, ShipwayError):
                raise exc
            raise ShipwayError(f"could not fetch the model artifact {url}: {exc}") from exc
        return task.result()

    async def _set(
        self, tracked: _Tracked, status: InstanceStatus, reason: str | None = None
    ) -> None:
        tracked.instance = tracked.instance.with_status(status, reason)
        await asyncio.to_thread(self._store.instances.put, tracked.instance)

    async def _stop(self, tracked: _Tracked, grace: float) -> None:
        """Drain, then stop: out of routing first, so no new request reaches it; its model
        server finishes the requests in flight on SIGTERM (within ``grace``) and exits."""
        instance_id = tracked.instance.instance_id
        if self._tracked.pop(instance_id, None) is None:
            return
        self._publish()
        tracked.upstream.close()
        await self._backend.stop(instance_id, grace)
        await asyncio.to_thread(self._store.instances.remove, instance_id)

    # --- routing ------------------------------------------------------------------------------

    def _publish(self) -> None:
        endpoints = []
        for endpoint in self._endpoints:
            if endpoint.endpoint_status not in SERVING:
                continue
            variants = []
            for variant, state in zip(
                endpoint.config.production_variants, endpoint.variants, strict=True
            ):
                instances = tuple(
                    InstanceSnapshot(t.instance.instance_id, t.instance.address)
                    for t in self._tracked.values()
                    if t.instance.endpoint_name == endpoint.endpoint_name
                    and t.instance.variant_name == variant.variant_name
                    and t.instance.status is InstanceStatus.IN_SERVICE
                )
                variants.append(
                    VariantSnapshot(
                        variant.variant_name,
                        variant.model_name or "",
                        state.desired_weight,
                        variant.routing_strategy,
                        instances,
                    )
                )
            endpoints.append(EndpointSnapshot(endpoint.endpoint_name, tuple(variants)))
        snapshot = tuple(endpoints)
        if snapshot != self._published:
            self._version += 1
            self._published = snapshot
            self._publish_snapshot(Snapshot(snapshot, self._version))


def _is_model_server(pid: int) -> bool:
    try:
        return b"shipway.serving" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
