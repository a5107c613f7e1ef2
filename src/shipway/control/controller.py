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
import math
import os
import signal
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from shipway.compute.backend import ComputeBackend, InstanceSpec
from shipway.control.lifecycle import VariantObservation, next_status
from shipway.control.rollout import FleetObservation, Outcome, advance
from shipway.domain.async_inference import MAX_INVOCATION_TIMEOUT_SECONDS
from shipway.domain.clock import Clock
from shipway.domain.deployment import DeploymentPhase
from shipway.domain.endpoint import SERVING, Endpoint, EndpointStatus, find_model
from shipway.domain.endpoint_config import EndpointConfig, ProductionVariant
from shipway.domain.errors import ShipwayError
from shipway.domain.instance import Instance, InstanceStatus
from shipway.domain.instance_types import InstanceType, InstanceTypeCatalog
from shipway.domain.model import Model
from shipway.monitor.metrics import MetricsStore
from shipway.router.router import Demand
from shipway.router.routing import (
    AsyncLimits,
    EndpointSnapshot,
    InstanceSnapshot,
    ServerlessLimits,
    Snapshot,
    VariantSnapshot,
)
from shipway.router.upstream import Upstream, UpstreamError
from shipway.server_lock import ServerLock
from shipway.serving.runtime import resolve_runtime
from shipway.settings import Settings
from shipway.store.artifact_use import release_unused
from shipway.store.artifacts import ArtifactStore
from shipway.store.metadata import MetadataStore

__all__ = ["Controller"]

log = logging.getLogger(__name__)

PING_TIMEOUT = 2.0
ROUTING_SETTLE_SECONDS = 0.25
"""How long an instance out of routing keeps running before it is told to stop."""
MAX_BACKOFF = 60.0
SERVERLESS_PAYLOAD_BYTES = 4 * 1000 * 1000
"""A serverless endpoint's largest request body (SageMaker: 4 MB)."""
READY_POLL_SECONDS = (0.002, 0.1)
"""How often a starting instance is pinged: from the first, doubling up to the second."""


@dataclass
class _Tracked:
    instance: Instance
    upstream: Upstream
    started: float
    """Monotonic time the process started."""
    startup_deadline: float
    next_ping: float = 0.0
    served: bool = False
    """Whether it has ever been in service (a failure before that is a failure to start)."""
    serverless: bool = False
    """An instance of a serverless variant (its start is recorded as ModelSetupTime)."""


@dataclass(frozen=True)
class _Fleet:
    """The instances one generation of an endpoint should have, per variant."""

    generation: int
    variants: list[tuple[ProductionVariant, int]]
    models: list[Model]
    """The endpoint's copies of the models this fleet's configuration names."""
    new: bool = False
    """The new fleet of a deployment in progress."""


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
        server_lock: ServerLock,
        clock: Clock,
        publish: Callable[[Snapshot], None],
        mark_up: Callable[[str], None] = lambda _id: None,
        firing: Callable[[Sequence[str]], list[str]] = lambda _names: [],
        removed: Callable[[str, frozenset[str] | None], None] = lambda _name, _variants: None,
        demand: Callable[[str], Demand | None] = lambda _name: None,
        metrics: MetricsStore | None = None,
    ) -> None:
        """``removed(name, None)`` is called once a deleted endpoint is gone, and
        ``removed(name, variants)`` once a deployment that ended (completed or rolled back) has
        left these variants behind; both after the routing table no longer has them.
        ``demand(name)`` is a serverless endpoint's traffic as the router sees it (it sizes the
        variant, and scales it to zero when idle); ``metrics`` receives ModelSetupTime."""
        self._store = store
        self._backend = backend
        self._artifacts = artifacts
        self._catalog = catalog
        self._settings = settings
        self._server_lock = server_lock
        self._clock = clock
        self._publish_snapshot = publish
        self._mark_up = mark_up
        self._firing = firing
        self._removed = removed
        self._demand = demand
        self._metrics = metrics
        self._serverless_high: dict[str, tuple[int, float]] = {}
        """Per serverless endpoint: the most instances its traffic asked for lately, and when
        (the count goes down only once that many were not needed for the idle time)."""
        self._readying: set[asyncio.Task[None]] = set()
        self._prestarted: set[str] = set()
        """Images whose runtime the backend was asked to prepare for (zygotes)."""
        self._cold_failures: dict[tuple[str, str], str] = {}
        """Why the last instance of a serverless variant failed to start, until one serves."""
        self._stopping: set[asyncio.Task[None]] = set()
        self._hung: list[tuple[str, str]] = []
        """Instances the router reported hung, with why, to fail on the next pass."""
        self._draining: dict[str, Instance] = {}
        """Instances out of routing and on their way down."""
        self._tracked: dict[str, _Tracked] = {}
        self._fetches: dict[str, asyncio.Task[Path]] = {}
        self._backoff: dict[tuple[str, int, str], _Backoff] = {}
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
        for task in [*self._fetches.values(), *self._readying]:
            task.cancel()
        grace = self._settings.instance_stop_timeout_seconds
        await asyncio.gather(*(self._stop(t, grace) for t in list(self._tracked.values())))
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
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

    def instance_hung(self, instance_id: str, reason: str) -> None:
        """The router gave up on this instance (requests in a row timed out): replace it.
        Safe to call from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._hung.append, (instance_id, reason))
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
        """Instances recorded by a server that did not stop cleanly: end them, drop the rows.

        Only the server lock's holder may: any other server running on this data dir or
        database would see its own instances here."""
        self._server_lock.ensure_held()
        for instance in self._store.instances.all():
            if instance.status is InstanceStatus.FAILED:
                continue  # not running; kept to say why its variant lost it
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
        hung, self._hung = self._hung, []
        for instance_id, why in hung:
            reported = self._tracked.get(instance_id)
            if reported is not None and reported.instance.live:
                await self._set(reported, InstanceStatus.FAILED, why)
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
                await self._became_ready(tracked)
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
            await asyncio.to_thread(self._forget_instances, endpoint.endpoint_name)
            await asyncio.to_thread(self._store.endpoints.remove, endpoint.endpoint_name)
            await self._release(endpoint.models_in_use())
            self._backoff = {
                k: v for k, v in self._backoff.items() if k[0] != endpoint.endpoint_name
            }
            self._cold_failures = {
                k: v for k, v in self._cold_failures.items() if k[0] != endpoint.endpoint_name
            }
            self._serverless_high.pop(endpoint.endpoint_name, None)
            self._publish()  # out of the routing table (if stopping its instances did not)
            self._removed(endpoint.endpoint_name, None)
            log.info("endpoint %s deleted", endpoint.endpoint_name)
            return
        if status is EndpointStatus.FAILED:
            for tracked in mine:
                await self._stop(tracked, 0)
            return
        fleets = _fleets(endpoint, self._serverless_counts(endpoint))
        generations = {f.generation for f in fleets}
        for tracked in [t for t in mine if t.instance.generation not in generations]:
            # a fleet no deployment needs any more (the old one after a switch, the new one
            # after a rollback): out of routing first, then stopped gracefully
            await self._stop(tracked, self._settings.instance_stop_timeout_seconds, wait=False)
        seen: dict[int, list[VariantObservation]] = {}
        # a rolling rollback must bring old instances back (or fail); blue/green kept them
        rolling_back = (
            status is EndpointStatus.ROLLING_BACK
            and endpoint.deployment is not None
            and endpoint.deployment.rollback_batch is not None
        )
        for fleet in fleets:
            seen[fleet.generation] = [
                await self._reconcile_variant(
                    endpoint,
                    fleet,
                    variant,
                    count,
                    [
                        t
                        for t in mine
                        if t.instance.generation == fleet.generation
                        and t.instance.variant_name == variant.variant_name
                    ],
                    # a fleet being brought up must come up: its failures end the deployment
                    report=fleet.new or rolling_back,
                )
                for variant, count in fleet.variants
            ]
        if status is EndpointStatus.UPDATE_ROLLBACK_FAILED:
            return  # both fleets stay as they are until the endpoint is deleted
        if endpoint.deployment is not None:
            await self._advance(endpoint, seen)
            return
        new_status, reason = next_status(status, seen[endpoint.generation])
        if new_status is not status:
            fields = {
                "endpoint_status": new_status,
                "failure_reason": reason,
                "last_modified_time": self._clock.now(),
            }
            if new_status in SERVING and status not in SERVING:
                # routed before the store says InService: a caller who sees InService can
                # invoke it at once
                self._endpoints = [
                    e.model_copy(update=fields) if e is endpoint else e for e in self._endpoints
                ]
                self._publish()
            updated = await self._update(
                endpoint, lambda current: current.model_copy(update=fields)
            )
            if updated is not None:
                log.info("endpoint %s is %s%s", endpoint.endpoint_name, new_status.value,
                         f": {reason}" if reason else "")  # fmt: skip
                if new_status is EndpointStatus.FAILED:
                    for tracked in mine:
                        await self._stop(tracked, 0)

    async def _advance(self, endpoint: Endpoint, seen: dict[int, list[VariantObservation]]) -> None:
        """Move the endpoint's deployment on by what this pass saw; persist any change."""
        deployment = endpoint.deployment
        assert deployment is not None
        new = seen.get(deployment.generation, [])
        old = seen[endpoint.generation]
        observation = FleetObservation(
            old_in_service={o.variant_name: o.in_service for o in old},
            new_in_service={o.variant_name: o.in_service for o in new},
            new_failure=_first_failure(new),
            old_live=self._old_live(endpoint),
            old_failure=_first_failure(old),
        )
        alarms = deployment.deployment_config.alarm_names
        firing = await asyncio.to_thread(self._firing, alarms) if alarms else []
        now = self._clock.now()
        moved, outcome = advance(deployment, observation, now, firing)
        if outcome is Outcome.CONTINUE and moved == deployment:
            return
        status = endpoint.endpoint_status
        if outcome is Outcome.COMPLETED:
            fields: dict[str, object] = {
                "endpoint_config_name": moved.endpoint_config_name,
                "config": moved.config,
                "models": moved.models,
                "variants": moved.variants,
                "generation": moved.generation,
                "deployment": None,
                "endpoint_status": EndpointStatus.IN_SERVICE,
                "failure_reason": None,
                "last_modified_time": now,
            }
        elif outcome is Outcome.ROLLBACK_FAILED:
            fields = {
                "deployment": moved,
                "endpoint_status": EndpointStatus.UPDATE_ROLLBACK_FAILED,
                "failure_reason": moved.reason,
                "last_modified_time": now,
            }
        elif outcome is Outcome.ROLLED_BACK:
            fields = {
                "deployment": None,
                "endpoint_status": EndpointStatus.IN_SERVICE,
                "failure_reason": moved.reason,
                "last_modified_time": now,
            }
        else:
            rolling_back = moved.phase is DeploymentPhase.ROLLING_BACK
            fields = {
                "deployment": moved,
                "endpoint_status": (
                    EndpointStatus.ROLLING_BACK if rolling_back else EndpointStatus.UPDATING
                ),
            }
            if rolling_back and status is not EndpointStatus.ROLLING_BACK:
                fields["last_modified_time"] = now

        def change(current: Endpoint) -> Endpoint:
            if current.deployment != deployment:
                raise _Changed
            return current.model_copy(update=fields)

        try:
            updated = await self._update(endpoint, change)
        except _Changed:
            return  # changed under us (another pass or server): look again next pass
        if updated is None:
            return
        name = endpoint.endpoint_name
        if outcome is Outcome.CONTINUE and moved.phase is not deployment.phase:
            log.info("endpoint %s: deployment step %d/%d %s, %.0f%% of traffic on the new "
                     "fleet%s", name, moved.step + 1, len(moved.steps), moved.phase.value,
                     moved.share * 100, f" ({moved.reason})" if moved.reason else "")  # fmt: skip
        elif outcome is Outcome.COMPLETED:
            log.info("endpoint %s: deployment of %s complete", name, moved.endpoint_config_name)
        elif outcome is Outcome.ROLLED_BACK:
            log.warning("endpoint %s: deployment rolled back: %s", name, moved.reason)
        elif outcome is Outcome.ROLLBACK_FAILED:
            log.error("endpoint %s: UpdateRollbackFailed: %s", name, moved.reason)
        self._publish()
        if outcome in (Outcome.COMPLETED, Outcome.ROLLED_BACK):
            # the copies of the fleet that went: their artifacts, unless still needed
            await self._release(endpoint.models if outcome is Outcome.COMPLETED else moved.models)
            kept = updated.config
            left = _variant_names(endpoint.config) | _variant_names(deployment.config)
            if gone := left - _variant_names(kept):
                self._removed(name, gone)
        self.wake()  # act on the new targets (start or stop instances) without waiting

    async def _release(self, models: list[Model]) -> None:
        """Release the cached artifacts of model copies no endpoint keeps any more, unless a
        model or another endpoint still names them."""
        if models:
            await asyncio.to_thread(release_unused, self._store, self._artifacts, models)

    def _old_live(self, endpoint: Endpoint) -> dict[str, int]:
        """Instances of the endpoint's current (old) fleet not yet gone, per variant."""
        live: dict[str, int] = {}
        instances = [t.instance for t in self._tracked.values() if t.instance.live]
        for instance in [*instances, *self._draining.values()]:
            if (
                instance.endpoint_name == endpoint.endpoint_name
                and instance.generation == endpoint.generation
            ):
                live[instance.variant_name] = live.get(instance.variant_name, 0) + 1
        return live

    async def _update(
        self, endpoint: Endpoint, change: Callable[[Endpoint], Endpoint]
    ) -> Endpoint | None:
        """Write a change to the endpoint if its status is still what this pass saw."""
        updated = await asyncio.to_thread(
            self._store.endpoints.update,
            endpoint.endpoint_name,
            change,
            expected_status=endpoint.endpoint_status.value,
        )
        if updated is not None:
            self.statuses[endpoint.endpoint_name] = updated.endpoint_status.value
            self._endpoints = [
                updated if e.endpoint_name == endpoint.endpoint_name else e for e in self._endpoints
            ]
        return updated

    async def _reconcile_variant(
        self,
        endpoint: Endpoint,
        fleet: _Fleet,
        variant: ProductionVariant,
        desired: int,
        mine: list[_Tracked],
        *,
        report: bool = False,
    ) -> VariantObservation:
        """Start and stop instances of one variant of a fleet; what is in service.

        With ``report``, an instance that fails before it ever served is the variant's failure
        (no replacement is started): the caller decides what that means.
        """
        key = (endpoint.endpoint_name, fleet.generation, variant.variant_name)
        failure = None
        for tracked in [t for t in mine if t.instance.status is InstanceStatus.FAILED]:
            reason = tracked.instance.failure_reason or "the instance failed"
            log.warning("instance %s failed: %s", tracked.instance.instance_id, reason)
            if endpoint.endpoint_status is EndpointStatus.CREATING or (
                report and not tracked.served
            ):
                failure = f"the model {variant.model_name} could not be served: {reason}"
            if variant.serverless_config is not None and not tracked.served:
                self._cold_failures[(endpoint.endpoint_name, variant.variant_name)] = reason
            backoff = self._backoff.setdefault(key, _Backoff())
            backoff.failures += 1
            backoff.not_before = self._clock.monotonic() + min(
                MAX_BACKOFF, 0.5 * 2 ** (backoff.failures - 1)
            )
            await self._stop(tracked, 0)
        live = [t for t in mine if t.instance.live]
        if variant.serverless_config is not None and desired == 0 and not live:
            # no instance until a request comes; the model's artifact is fetched now, so a
            # missing one fails the endpoint at creation and a cold start only loads it
            try:
                if await self._fetch_model(fleet, variant) is None:
                    return VariantObservation(variant.variant_name, 1, 0)  # still fetching
            except ShipwayError as exc:
                return VariantObservation(variant.variant_name, 1, 0, exc.message)
            return VariantObservation(variant.variant_name, 0, 0)
        if failure is None and len(live) < desired:
            waiting = self._backoff.get(key)
            if waiting is None or self._clock.monotonic() >= waiting.not_before:
                try:
                    for _ in range(desired - len(live)):
                        started = await self._start(endpoint, fleet, variant)
                        if started is None:
                            break  # the artifact is still being fetched
                        live.append(started)
                except ShipwayError as exc:
                    failure = exc.message
                    log.warning("cannot start %s/%s: %s", key[0], key[2], exc.message)
                    if variant.serverless_config is not None:
                        self._cold_failures[(key[0], key[2])] = exc.message
        if len(live) > desired:
            extra = sorted(
                live,
                key=lambda t: (t.instance.status is InstanceStatus.IN_SERVICE, -t.started),
            )[: len(live) - desired]
            for tracked in extra:
                await self._stop(tracked, self._settings.instance_stop_timeout_seconds, wait=False)
            live = [t for t in live if t not in extra]
        in_service = sum(1 for t in live if t.instance.status is InstanceStatus.IN_SERVICE)
        return VariantObservation(variant.variant_name, desired, in_service, failure)

    # --- instances ----------------------------------------------------------------------------

    async def _start(
        self, endpoint: Endpoint, fleet: _Fleet, variant: ProductionVariant
    ) -> _Tracked | None:
        """Start one instance of a variant from the endpoint's copy of its model (the model
        itself may have been deleted since it was deployed, as SageMaker allows)."""
        generation = fleet.generation
        fetched = await self._fetch_model(fleet, variant)
        if fetched is None:
            return None
        model, model_dir = fetched
        container = model.all_containers()[0]
        runtime = resolve_runtime(container.image)
        if self._backend.warming(runtime):
            return None  # its zygote is importing: fork it in a moment rather than spawn it
        instance_type = self._instance_type(variant)
        instance_id = f"{endpoint.endpoint_name[:32]}-{uuid.uuid4().hex[:10]}".lower()
        spec = InstanceSpec(
            instance_id=instance_id,
            model_name=model.model_name,
            runtime=runtime,
            model_dir=model_dir,
            instance_type=instance_type,
            environment=dict(container.environment or {}),
            max_batch_size=self._settings.max_batch_size,
            max_batch_delay_ms=self._settings.max_batch_delay_ms,
            network_isolation=bool(model.enable_network_isolation),
            # an asynchronous request may take up to an hour (its own InvocationTimeoutSeconds,
            # which the dispatcher holds it to): only past that is the model hung
            predict_timeout_seconds=(
                self._settings.model_timeout_seconds
                if endpoint.config.async_inference_config is None
                else float(MAX_INVOCATION_TIMEOUT_SECONDS)
            ),
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
            generation=generation,
            status=InstanceStatus.STARTING,
            address=started.address,
            pid=started.pid,
            started_at=self._clock.now().timestamp(),
        )
        tracked = _Tracked(
            instance,
            Upstream(started.address),
            now,
            now + timeout,
            serverless=variant.serverless_config is not None,
        )
        self._tracked[instance_id] = tracked
        await asyncio.to_thread(self._store.instances.put, instance)
        ready = asyncio.get_running_loop().create_task(self._await_ready(tracked))
        self._readying.add(ready)
        ready.add_done_callback(self._readying.discard)
        return tracked

    async def _fetch_model(
        self, fleet: _Fleet, variant: ProductionVariant
    ) -> tuple[Model, Path] | None:
        """The endpoint's copy of the variant's model (the model itself may have been deleted
        since it was deployed, as SageMaker allows) and its local folder; None while the
        artifact is being fetched."""
        name = variant.model_name or ""
        model = find_model(fleet.models, name)
        if model is None:  # an endpoint stored before copies were kept
            model = await asyncio.to_thread(self._store.models.get, name)
        if model is None:
            raise ShipwayError(f"the model {variant.model_name} no longer exists")
        container = model.all_containers()[0]
        if container.image and container.image not in self._prestarted:
            # its runtime's zygote starts while the artifact is fetched: even the first
            # instance (a serverless cold start) is then a fork
            self._prestarted.add(container.image)
            self._backend.prestart([container.image])
        model_dir = self._model_dir(container.model_data_url or "")
        return None if model_dir is None else (model, model_dir)

    def _instance_type(self, variant: ProductionVariant) -> InstanceType:
        """The variant's instance type; a serverless variant's is sized by its memory, with a
        vCPU per 2 GB (at least one), as serverless CPU scales with memory."""
        serverless = variant.serverless_config
        if serverless is None:
            return self._catalog.get(variant.instance_type or "local")
        megabytes = serverless.memory_size_in_mb
        return InstanceType(
            name=f"serverless-{megabytes}MB",
            vcpus=max(1, megabytes // 2048),
            memory_gib=megabytes / 1024,
            price_per_hour=0.0,
        )

    async def _await_ready(self, tracked: _Tracked) -> None:
        """Ping a starting instance often until it answers, and route to it at once: a cold
        start should not wait for the next pass."""
        delay, longest = READY_POLL_SECONDS
        instance_id = tracked.instance.instance_id
        while self._tracked.get(instance_id) is tracked:
            if tracked.instance.status is not InstanceStatus.STARTING:
                return
            if self._backend.exit_reason(instance_id) is not None:
                self.wake()  # the pass says why
                return
            try:
                response = await tracked.upstream.get(b"/ping", PING_TIMEOUT)
                healthy = response.status == 200
            except UpstreamError:
                healthy = False
            if healthy:
                if self._tracked.get(instance_id) is tracked:
                    await self._became_ready(tracked)
                return
            await asyncio.sleep(delay)
            delay = min(longest, delay * 2)

    async def _became_ready(self, tracked: _Tracked) -> None:
        """A starting instance answered its first ping: in service and routed at once (the
        endpoint's status moves on at the next pass, woken now); a serverless instance's time
        from start to service is its variant's ModelSetupTime. Whichever ping saw it first
        (the readiness task or a pass) does this, once."""
        instance = tracked.instance
        if instance.status is not InstanceStatus.STARTING:
            return
        tracked.served = True
        await self._set(tracked, InstanceStatus.IN_SERVICE)
        self._backoff.pop(_key(instance), None)
        self._cold_failures.pop((instance.endpoint_name, instance.variant_name), None)
        self._publish()
        if tracked.serverless:
            self._record_setup(tracked)
        self.wake()

    def _record_setup(self, tracked: _Tracked) -> None:
        if self._metrics is None:
            return
        instance = tracked.instance
        self._metrics.put(
            "ModelSetupTime",
            {"EndpointName": instance.endpoint_name, "VariantName": instance.variant_name},
            (self._clock.monotonic() - tracked.started) * 1e6,
            self._clock.time(),
            unit="Microseconds",
        )

    def _serverless_counts(self, endpoint: Endpoint) -> dict[str, int]:
        """How many instances each serverless variant of the endpoint should have now: its
        provisioned concurrency's, and while it has traffic one per
        ``serverless_concurrency_per_instance`` requests in flight (at least one); none once
        no request came for ``serverless_idle_seconds``. The count comes down only once the
        higher one was not needed for that idle time."""
        counts: dict[str, int] = {}
        settings = self._settings
        per = settings.serverless_concurrency_per_instance
        idle = settings.serverless_idle_seconds
        now = self._clock.monotonic()
        for state in endpoint.variants:
            config = state.desired_serverless_config
            if config is None:
                continue
            warm = math.ceil((config.provisioned_concurrency or 0) / per)
            demand = self._demand(endpoint.endpoint_name)
            busy = 0
            if demand is not None and (
                demand.in_flight
                or (demand.last_request is not None and now - demand.last_request < idle)
            ):
                busy = max(1, math.ceil(max(demand.in_flight, demand.peak) / per))
            high, since = self._serverless_high.get(endpoint.endpoint_name, (0, now))
            if busy >= high or now - since >= idle or busy == 0:
                high, since = busy, now
            self._serverless_high[endpoint.endpoint_name] = (high, since)
            counts[state.variant_name] = min(
                max(warm, high), math.ceil(config.max_concurrency / per)
            )
        return counts

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
        folder = task.result()
        if not folder.exists():  # released (its model deleted) since: fetch it again
            del self._fetches[url]
            return self._model_dir(url)
        return folder

    async def _set(
        self, tracked: _Tracked, status: InstanceStatus, reason: str | None = None
    ) -> None:
        tracked.instance = tracked.instance.with_status(status, reason)
        if status is InstanceStatus.FAILED:
            tracked.instance = replace(tracked.instance, failed_at=self._clock.now().timestamp())
        await asyncio.to_thread(self._store.instances.put, tracked.instance)

    async def _stop(self, tracked: _Tracked, grace: float, *, wait: bool = True) -> None:
        """Drain, then stop: out of routing first, so no new request reaches it; its model
        server finishes the requests in flight on SIGTERM (within ``grace``) and exits.

        With ``wait=False`` the drain goes on in the background, so the loop keeps acting on
        other instances (and alarms) meanwhile.
        """
        instance_id = tracked.instance.instance_id
        if self._tracked.pop(instance_id, None) is None:
            return
        self._publish()
        tracked.upstream.close()
        self._draining[instance_id] = tracked.instance
        task = asyncio.get_running_loop().create_task(self._drain(tracked, grace))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        if wait:
            await task

    async def _drain(self, tracked: _Tracked, grace: float) -> None:
        instance = tracked.instance
        try:
            if instance.live:
                draining = instance.with_status(InstanceStatus.DRAINING)
                await asyncio.to_thread(self._store.instances.put, draining)
                # a request the router picked this instance for just before it left the table
                # may still be on its way: once the model server has read it, SIGTERM waits
                # for its answer; before, the server would close the connection under it
                await self._clock.sleep(ROUTING_SETTLE_SECONDS)
            await self._backend.stop(instance.instance_id, grace)
        finally:
            self._draining.pop(instance.instance_id, None)
            if instance.status is InstanceStatus.FAILED:
                await asyncio.to_thread(self._keep_last_failure, instance)
            else:
                await asyncio.to_thread(self._store.instances.remove, instance.instance_id)

    def _forget_instances(self, endpoint_name: str) -> None:
        for instance in self._store.instances.for_endpoint(endpoint_name):
            self._store.instances.remove(instance.instance_id)

    def _keep_last_failure(self, failed: Instance) -> None:
        """Keep a failed instance's row (describe shows why it went), its variant's last only."""
        for older in self._store.instances.for_endpoint(failed.endpoint_name):
            if (
                older.status is InstanceStatus.FAILED
                and older.variant_name == failed.variant_name
                and older.instance_id != failed.instance_id
            ):
                self._store.instances.remove(older.instance_id)

    # --- routing ------------------------------------------------------------------------------

    def _publish(self) -> None:
        endpoints = []
        for endpoint in self._endpoints:
            if endpoint.endpoint_status not in SERVING:
                continue
            deployment = endpoint.deployment
            share = deployment.share if deployment is not None else 0.0
            if deployment is not None:
                # never route to nothing: a fleet with no instance in service (both restart
                # with the server) lends its share to the other until it is back
                if not self._serving(endpoint, deployment.generation, deployment.config):
                    share = 0.0
                elif not self._serving(endpoint, endpoint.generation, endpoint.config):
                    share = 1.0
            variants = self._variant_snapshots(
                endpoint, endpoint.generation, endpoint.config.production_variants,
                {v.variant_name: v.desired_weight for v in endpoint.variants},
                None if deployment is None else 1.0 - share,
            )  # fmt: skip
            if deployment is not None:
                variants += self._variant_snapshots(
                    endpoint, deployment.generation, deployment.config.production_variants,
                    {v.variant_name: v.desired_weight for v in deployment.variants}, share,
                )  # fmt: skip
            # shadows follow the fleet in service: a new configuration's shadow gets its copy
            # of the traffic once the deployment has completed
            configured = endpoint.config.shadow_production_variants or []
            # a shadow samples (its weight / production's weight) of the requests; during a
            # deployment production's weights are fractions, so the shadow's is scaled alike
            scale = 1.0
            if deployment is not None:
                scale = 1.0 / (sum(v.desired_weight for v in endpoint.variants) or 1.0)
            shadows = self._variant_snapshots(
                endpoint, endpoint.generation, configured,
                {v.variant_name: v.weight * scale for v in configured}, None,
            )  # fmt: skip
            endpoints.append(
                EndpointSnapshot(
                    endpoint.endpoint_name,
                    tuple(variants),
                    tuple(shadows),
                    _serverless_limits(endpoint),
                    _async_limits(endpoint, self._settings.async_concurrency_per_instance),
                )
            )
        snapshot = tuple(endpoints)
        if snapshot != self._published:
            self._version += 1
            self._published = snapshot
            self._publish_snapshot(Snapshot(snapshot, self._version))

    def _in_service(self, endpoint: Endpoint, generation: int) -> list[Instance]:
        """The instances of one fleet that can take traffic."""
        return [
            t.instance
            for t in self._tracked.values()
            if t.instance.endpoint_name == endpoint.endpoint_name
            and t.instance.generation == generation
            and t.instance.status is InstanceStatus.IN_SERVICE
        ]

    def _serving(self, endpoint: Endpoint, generation: int, config: EndpointConfig) -> bool:
        """Whether a fleet has a production instance in service."""
        production = {v.variant_name for v in config.production_variants}
        return any(i.variant_name in production for i in self._in_service(endpoint, generation))

    def _variant_snapshots(
        self,
        endpoint: Endpoint,
        generation: int,
        variants: list[ProductionVariant],
        weights: dict[str, float],
        share: float | None,
    ) -> list[VariantSnapshot]:
        """One fleet's variants as the router sees them. With a ``share`` (during a
        deployment) the fleet's weights are scaled to take that fraction of all traffic."""
        total = sum(weights.values())
        serving = self._in_service(endpoint, generation)
        snapshots = []
        for variant in variants:
            weight = weights.get(variant.variant_name, 0.0)
            if share is not None:
                weight = share * weight / total if total > 0 else 0.0
            instances = tuple(
                InstanceSnapshot(i.instance_id, i.address)
                for i in serving
                if i.variant_name == variant.variant_name
            )
            failure = None
            if not instances:
                failure = self._cold_failures.get((endpoint.endpoint_name, variant.variant_name))
            snapshots.append(
                VariantSnapshot(
                    variant.variant_name,
                    variant.model_name or "",
                    weight,
                    variant.routing_strategy,
                    instances,
                    failure,
                )
            )
        return snapshots


class _Changed(Exception):
    """The endpoint's deployment changed since this pass read it."""


def _variant_names(config: EndpointConfig) -> frozenset[str]:
    """Every variant of a configuration, production and shadow."""
    shadows = config.shadow_production_variants or []
    return frozenset(v.variant_name for v in [*config.production_variants, *shadows])


def _first_failure(observations: list[VariantObservation]) -> str | None:
    """Why the first variant that cannot come up cannot, if one cannot."""
    return next((f"variant {o.variant_name}: {o.failure}" for o in observations if o.failure), None)


def _key(instance: Instance) -> tuple[str, int, str]:
    return (instance.endpoint_name, instance.generation, instance.variant_name)


def _async_limits(endpoint: Endpoint, default: int) -> AsyncLimits | None:
    """How many requests the dispatcher keeps in flight per instance, for an asynchronous
    endpoint; None for any other."""
    config = endpoint.config.async_inference_config
    if config is None:
        return None
    return AsyncLimits(config.concurrency_per_instance(default), config)


def _serverless_limits(endpoint: Endpoint) -> ServerlessLimits | None:
    """What the router enforces for a serverless endpoint (one variant), else None."""
    for state in endpoint.variants:
        if state.desired_serverless_config is not None:
            config = state.desired_serverless_config
            return ServerlessLimits(
                config.max_concurrency, SERVERLESS_PAYLOAD_BYTES, config.provisioned_concurrency
            )
    return None


def _fleets(endpoint: Endpoint, serverless: dict[str, int]) -> list[_Fleet]:
    """The fleets an endpoint should run: its current one and, during a deployment, the new.
    ``serverless`` gives the instance counts of serverless variants (the traffic sets them)."""
    deployment = endpoint.deployment
    config = endpoint.config
    counts = {v.variant_name: v.desired_instance_count for v in endpoint.variants}
    counts.update(serverless)
    shadows = config.shadow_production_variants or []
    current = [(v, counts.get(v.variant_name, 0)) for v in config.production_variants] + [
        (v, v.initial_instance_count or 0) for v in shadows
    ]
    if deployment is None:
        return [_Fleet(endpoint.generation, current, endpoint.models)]
    old = [(v, deployment.old_counts.get(v.variant_name, n)) for v, n in current]
    new_config = deployment.config
    new = [
        (v, deployment.new_counts.get(v.variant_name, 0))
        for v in [*new_config.production_variants, *(new_config.shadow_production_variants or [])]
    ]
    return [
        _Fleet(endpoint.generation, old, endpoint.models),
        _Fleet(deployment.generation, new, deployment.models, new=True),
    ]


def _is_model_server(pid: int) -> bool:
    """Whether ``pid`` is a model server: one spawned (``python -m shipway.serving``) or one
    forked from a zygote (whose command line it keeps: ``python -m shipway.compute.zygote``)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"shipway.serving" in command or b"shipway.compute.zygote" in command
