"""The platform: Shipway on one machine, composed — store, services, controller, router, APIs.

:class:`Platform` builds every part from one :class:`~shipway.settings.Settings` and is itself
the ASGI application ``shipway server`` runs: invocations go straight to the runtime adapter,
everything else to the REST API. Its lifespan starts the controller (which brings the stored
endpoints back into service) and, on shutdown, stops every instance gracefully.

A platform holds the :class:`~shipway.server_lock.ServerLock` on its data dir (and database)
from before it touches anything until it stops; :func:`serve` also binds the port before that,
so a second server, or a busy port, is refused before anything is started or changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping, Sequence
from typing import Any

import uvicorn

from shipway.api.auth import AccessKeys, AuthMiddleware, load_access_keys
from shipway.api.autoscaling import AutoscalingAPI
from shipway.api.body_limit import BodyLimits, guard_body
from shipway.api.cloudwatch import CloudWatchAPI
from shipway.api.rest import create_rest_app
from shipway.api.runtime import RuntimeAPI
from shipway.api.sagemaker import SageMakerAPI
from shipway.api.sns import SNSAPI
from shipway.asyncinf.dispatcher import AsyncDispatcher
from shipway.batch.engine import Engine
from shipway.batch.local import LocalEngine
from shipway.batch.runner import BatchRunner
from shipway.compute.backend import ComputeBackend
from shipway.compute.local import LocalBackend
from shipway.compute.pages import release_read_only_file_pages
from shipway.control.autoscaler import Autoscaler
from shipway.control.controller import Controller
from shipway.domain.alarm import AlarmState
from shipway.domain.async_inference import AsyncInferenceConfig
from shipway.domain.clock import Clock, SystemClock
from shipway.domain.instance_types import InstanceTypeCatalog
from shipway.listener import PortUnavailable, bind
from shipway.monitor.instance_usage import InstanceUsageSampler, SampledInstance
from shipway.monitor.metrics import MetricsStore
from shipway.periodic import Periodic
from shipway.router.router import Router
from shipway.router.routing import Snapshot
from shipway.server_lock import ServerLock
from shipway.service import EndpointConfigService, EndpointService, ModelService
from shipway.service.alarm_actions import AlarmActions
from shipway.service.alarms import AlarmEvaluator, AlarmService
from shipway.service.async_invocations import AsyncInvocationService
from shipway.service.metrics import MetricService
from shipway.service.notification_delivery import NotificationDelivery, RetryPolicy
from shipway.service.notifications import NotificationService
from shipway.service.scaling import ScalingService
from shipway.service.tags import TagService
from shipway.service.transform_jobs import TransformJobService
from shipway.settings import Settings
from shipway.store.artifacts import ArchiveLimits, ArtifactStore, SourcePolicy
from shipway.store.invocation_queue import open_queue
from shipway.store.locations import Locations
from shipway.store.metadata import MetadataStore
from shipway.store.upgrade import upgrade_apart as upgrade_schema_apart

__all__ = ["Platform", "serve"]

log = logging.getLogger(__name__)

CONCURRENCY_INTERVAL_SECONDS = 1.0
ZYGOTE_WAIT_SECONDS = 30.0
"""How long a server's start waits for the zygotes of its stored endpoints' runtimes."""
USAGE_INTERVAL_SECONDS = 5.0
"""How often instances' CPU and memory are sampled at most (more often when policies are
evaluated more often)."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Platform:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        backend: ComputeBackend | None = None,
        server_lock: ServerLock | None = None,
        upgrade_apart: bool = False,
    ) -> None:
        """With ``upgrade_apart`` (``shipway server``), a schema behind its newest revision is
        migrated in a child process, so the server never holds alembic."""
        # first of all: a second server on this data dir must be refused before it changes it
        self.server_lock = server_lock or ServerLock.acquire(settings)
        self._owns_lock = server_lock is None
        _prepare_home(settings)
        self.settings = settings
        self.clock = clock or SystemClock()
        account = settings.account
        if upgrade_apart:
            upgrade_schema_apart(settings.metadata_url)
        self.store = MetadataStore(settings.metadata_url)
        self.catalog = InstanceTypeCatalog.load(settings.instance_types_file)
        self.artifacts = ArtifactStore(
            settings.artifact_cache,
            s3_endpoint_url=settings.s3_endpoint_url,
            limits=ArchiveLimits(
                settings.max_model_bytes, settings.max_model_files, settings.min_free_disk_bytes
            ),
            sources=SourcePolicy(
                allow_http=settings.allow_http_model_data,
                allow_private_hosts=settings.allow_private_model_data_hosts,
                protected_paths=[p for p in (settings.home, settings.access_keys_file) if p],
                own_model_paths=[settings.home / "demo-model"],  # shipway server --demo's
                model_data_paths=settings.model_data_paths,
            ),
        )
        self.metrics = MetricsStore()
        self.notification_delivery = NotificationDelivery(  # SNS: the outbox's sender
            self.store.notifications,
            RetryPolicy(
                retries=settings.notification_retries,
                no_delay_retries=settings.notification_no_delay_retries,
                min_delay=settings.notification_min_delay_seconds,
                max_delay=settings.notification_max_delay_seconds,
            ),
            self.clock,
            timeout=settings.notification_timeout_seconds,
        )
        self.notifications = NotificationService(
            self.store,
            account,
            self.clock,
            base_url=settings.base_url,
            policy=self.notification_delivery.policy,
            on_outbox=self.notification_delivery.wake,
        )
        self.alarms = AlarmService(
            self.store,
            self.metrics,
            self.clock,
            account,
            on_change=lambda name, state: self.controller.wake(),
            on_transition=AlarmActions(self.notifications, account).state_changed,
        )
        self.alarm_evaluator = AlarmEvaluator(
            self.alarms, settings.alarm_evaluation_interval_seconds
        )
        self.metric_data = MetricService(self.metrics, self.clock)
        self.router = Router(
            self.metrics,
            account_id=settings.account_id,
            max_payload_bytes=settings.max_payload_bytes,
            model_timeout_seconds=settings.model_timeout_seconds,
            on_instance_down=lambda instance_id: self.controller.instance_down(instance_id),
            statuses=lambda name: self.controller.statuses.get(name),
            clock=self.clock,
            max_shadow_in_flight=settings.max_shadow_in_flight,
            instance_wait_seconds=settings.instance_wait_seconds,
            on_instance_hung=lambda instance_id, reason: self.controller.instance_hung(
                instance_id, reason
            ),
            max_timeouts=settings.instance_max_timeouts,
            instance_log=lambda instance_id: self.backend.log_path(instance_id),
            on_demand=lambda _name: self.controller.wake(),  # a serverless cold start
        )
        self.backend = backend or LocalBackend(
            settings.log_dir,
            settings.run_dir,
            network=settings.instance_network,
            uid_base=settings.instance_uid_base,
            cgroups=settings.instance_cgroups,
            protected=[p for p in (settings.home, settings.access_keys_file) if p is not None],
            unchanging=[settings.artifact_cache],
            start_method=settings.instance_start,
        )
        protected = [p for p in (settings.home, settings.access_keys_file) if p]
        self.locations = Locations(  # where asynchronous requests read and write
            SourcePolicy(
                protected_paths=protected,
                model_data_paths=settings.async_data_paths,
                paths_setting="async_data_paths",
            ),
            s3_endpoint_url=settings.s3_endpoint_url,
        )
        self.queue = open_queue(
            settings.queue_url, self.store.engine, namespace=settings.queue_namespace
        )
        self.dispatcher = AsyncDispatcher(
            self.queue,
            self.router,
            self.locations,
            self.metrics,
            self.clock,
            region=settings.region,
            publish=lambda topic, message, message_id: self.notifications.publish(
                topic, message, message_id=message_id
            ),
            endpoint_exists=lambda name: self.store.endpoints.get(name) is not None,
        )
        self.batch = BatchRunner(
            self.store,
            self.locations,
            self.artifacts,
            self._batch_engine,
            self.clock,
            settings.batch_dir,
            metrics=self.metrics,
        )
        self.controller = Controller(
            store=self.store,
            backend=self.backend,
            artifacts=self.artifacts,
            catalog=self.catalog,
            settings=settings,
            server_lock=self.server_lock,
            clock=self.clock,
            publish=self._route,
            mark_up=self.router.table.mark_up,
            firing=self._firing,
            removed=self._removed,
            demand=self.router.demand,
            metrics=self.metrics,
        )
        self.models = ModelService(self.store, self.artifacts, account, self.clock)
        self.endpoint_configs = EndpointConfigService(
            self.store,
            self.catalog,
            account,
            self.clock,
            locations=self.locations,
            topic_exists=self.notifications.topic_exists,
        )
        self.async_invocations = AsyncInvocationService(
            self.store,
            self.queue,
            self.locations,
            self.clock,
            account,
            inline_dir=settings.async_inline_dir,
            on_queued=self.dispatcher.wake,
            routed=self._async_config,
        )
        self.endpoints = EndpointService(
            self.store,
            account,
            self.clock,
            on_change=self.controller.wake,
            max_instances=settings.max_instances,
            alarms=self.alarms,
        )
        self.tags = TagService(self.store, account)
        self.transform_jobs = TransformJobService(
            self.store, self.locations, self.catalog, account, self.clock, wake=self.batch.wake
        )
        self.scaling = ScalingService(
            self.store,
            self.alarms,
            self.clock,
            account,
            interval_seconds=settings.autoscaling_interval_seconds,
            max_instances=settings.max_instances,
            on_change=self.controller.wake,
        )
        self.autoscaler = Autoscaler(
            self.scaling,
            self.metrics,
            self.alarms,
            self.clock,
            settings.autoscaling_interval_seconds,
            endpoints=self.store.endpoints.get,
        )
        self.instance_usage = InstanceUsageSampler(
            self.metrics,
            self.clock,
            instances=self._sampled_instances,
            usage=self.backend.usage,
            interval=min(settings.autoscaling_interval_seconds, USAGE_INTERVAL_SECONDS),
            disk_path=settings.run_dir,
        )
        self.concurrency = Periodic(  # what concurrency-based scaling policies read
            "sampling requests in flight",
            self.router.record_concurrency,
            CONCURRENCY_INTERVAL_SECONDS,
            thread=False,
        )
        self.rest = create_rest_app(self)
        self.runtime_api = RuntimeAPI(self.router, self.async_invocations)
        self.sagemaker_api = SageMakerAPI(self)
        self.cloudwatch_api = CloudWatchAPI(self)
        self.sns_api = SNSAPI(self)
        self.autoscaling_api = AutoscalingAPI(self)

    def _batch_engine(self) -> Engine:
        """The engine of one transform job: Ray actors with ``ray_address``, else local
        processes."""
        settings = self.settings
        if settings.ray_address:
            from shipway.batch.ray import RayEngine  # imports Ray only now

            return RayEngine(
                settings.ray_address,
                self.catalog,
                s3_endpoint_url=settings.s3_endpoint_url,
                startup_timeout=settings.instance_startup_timeout_seconds,
            )
        return LocalEngine(
            self.backend,
            self.catalog,
            self.locations,
            startup_timeout=settings.instance_startup_timeout_seconds,
            max_batch_size=settings.max_batch_size,
        )

    def _async_config(self, endpoint_name: str) -> AsyncInferenceConfig | None:
        """The AsyncInferenceConfig of an asynchronous endpoint the router routes now."""
        route = self.router.table.get(endpoint_name)
        limits = None if route is None else route.asynchronous
        return None if limits is None else limits.config

    def _route(self, snapshot: Snapshot) -> None:
        """The controller's new routing table: the router takes it, and the asynchronous
        dispatcher looks at what the endpoints can take now."""
        self.router.apply(snapshot)
        self.dispatcher.wake()

    def _removed(self, endpoint_name: str, variant_names: frozenset[str] | None) -> None:
        """An endpoint is gone (``variant_names`` None), or a deployment left these variants
        behind: their metric series leave /metrics, their scaling goes."""
        self.router.forget_metrics(endpoint_name, variant_names)
        self.instance_usage.forget(endpoint_name, variant_names)
        self.scaling.forget_endpoint(endpoint_name, variant_names)

    def _firing(self, names: Sequence[str]) -> list[str]:
        """Which of these alarms are in ALARM now (a deployment's rollback alarms)."""
        states = self.alarms.states(names)
        return [name for name in names if states.get(name) is AlarmState.ALARM]

    def _sampled_instances(self) -> list[SampledInstance]:
        """The instances whose CPU and memory the usage sampler reads (it runs in a thread)."""
        return [
            SampledInstance(i.instance_id, i.endpoint_name, i.variant_name)
            for i in self.store.instances.all()
            if i.live
        ]

    def _stored_runtimes(self) -> set[str]:
        """The runtimes (images) the stored endpoints run: their zygotes start at once."""
        return {
            container.image
            for endpoint in self.store.endpoints.all()
            for model in endpoint.models_in_use()
            for container in model.all_containers()
            if container.image
        }

    async def start(self) -> None:
        runtimes = await asyncio.to_thread(self._stored_runtimes)
        if runtimes:
            # the stored endpoints' instances then start as forks, not as new interpreters
            # while their zygotes import beside them (4 instances: 0.9 s instead of 4.4 s)
            self.backend.prestart(runtimes)
            await self.backend.zygotes_ready(ZYGOTE_WAIT_SECONDS)
        await self.controller.start()
        await self.notification_delivery.start()  # what a killed server left unsent, first
        await self.dispatcher.start()
        await self.batch.start()  # jobs a stopped server left in progress resume
        if gone := await asyncio.to_thread(self.scaling.forget_gone_endpoints):
            log.info("forgot the autoscaling of endpoints deleted meanwhile: %s", ", ".join(gone))
        await self.alarm_evaluator.start()
        await self.instance_usage.start()
        await self.concurrency.start()
        await self.autoscaler.start()
        # the import and start-up code the server read once: the kernel may have it back
        release_read_only_file_pages()

    async def stop(self) -> None:
        await self.router.drain_shadows(timeout=5.0)  # copies to shadows, while instances live
        await self.dispatcher.close()  # requests under way go back to the queue
        await self.batch.close()  # jobs in progress resume when the server starts again
        await self.notification_delivery.close()  # messages under way are sent after a restart
        await self.autoscaler.close()
        await self.concurrency.close()
        await self.instance_usage.close()
        await self.alarm_evaluator.close()
        await self.controller.close()
        self.router.table.close()
        self.queue.close()
        self.store.close()
        if self._owns_lock:
            self.server_lock.release()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if RuntimeAPI.handles(scope):  # it holds invocations to max_payload_bytes itself
                await self.runtime_api(scope, receive, send)
                return
            guarded = await guard_body(scope, receive, send, self.settings.max_request_bytes)
            if guarded is None:  # answered 413, or the client left
                return
            routed = await self.sns_api.route(scope, receive=guarded, send=send)
            if routed is None:  # SNS's request (told from CloudWatch's awsquery), answered
                return
            receive = routed
        if kind == "http" and CloudWatchAPI.handles(scope):
            await self.cloudwatch_api(scope, receive, send)
        elif kind == "http" and AutoscalingAPI.handles(scope):
            await self.autoscaling_api(scope, receive, send)
        elif kind == "http" and SageMakerAPI.handles(scope):
            await self.sagemaker_api(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.rest(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.exception("Shipway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.stop()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def _prepare_home(settings: Settings) -> None:
    """The data dir and its private parts, readable by the server's user alone (0700 folders,
    0600 files); scratch folders a killed server left behind are removed."""
    home = settings.home
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    for folder in (settings.log_dir, settings.run_dir):
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)
    for stale in settings.run_dir.iterdir():
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    if settings.database_url is None:
        database = home / "shipway.db"
        os.close(os.open(database, os.O_RDWR | os.O_CREAT, 0o600))
        for path in (database, home / "shipway.db-wal", home / "shipway.db-shm"):
            with contextlib.suppress(FileNotFoundError):
                path.chmod(0o600)


def serve(
    settings: Settings, on_ready: Callable[[Platform], Awaitable[None]] | None = None
) -> None:
    """Run Shipway until SIGINT or SIGTERM; then stop its instances and return.

    Refusing to start raises a :class:`~shipway.domain.errors.ShipwayError` whose message is
    the one line to show (an unsafe access keys file, a port that cannot be listened on, a data
    dir or database another server holds), before anything is started or changed.
    """
    keys = load_access_keys(settings.access_keys_file)
    try:
        sockets = bind(settings.host, settings.port)
    except PortUnavailable:
        ServerLock.check_free(settings.home)  # the same server started twice: say that
        raise
    try:
        with ServerLock.acquire(settings) as lock:
            _serve(settings, keys, lock, sockets, on_ready)
    finally:
        for sock in sockets:  # uvicorn closes them, once it has started
            sock.close()


def _serve(
    settings: Settings,
    keys: AccessKeys | None,
    lock: ServerLock,
    sockets: list[socket.socket],
    on_ready: Callable[[Platform], Awaitable[None]] | None,
) -> None:
    if keys is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "listening on %s with authentication off: set SHIPWAY_ACCESS_KEYS_FILE", settings.host
        )
    platform = Platform(settings, server_lock=lock, upgrade_apart=True)
    config = uvicorn.Config(
        platform
        if keys is None
        else AuthMiddleware(
            platform,
            keys,
            region=settings.region,
            limits=BodyLimits(
                request=settings.max_request_bytes, invocation=settings.max_payload_bytes
            ),
        ),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.instance_stop_timeout_seconds),
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        serving = asyncio.create_task(server.serve(sockets=sockets))
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.05)
        if on_ready is not None:
            await on_ready(platform)
        await serving

    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again: that is the end.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        _run(main())
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Stopped(Exception):
    pass


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every POSIX system
        asyncio.run(main)
        return
    uvloop.run(main)
