"""The asynchronous dispatcher: it takes queued requests and runs them through the one inference
path, the router, to the endpoint's model servers' normal ``/invocations``.

- **Capacity.** Each asynchronous endpoint takes as many requests at once as its instances in
  service times ``MaxConcurrentInvocationsPerInstance``; the router's least-outstanding pick then
  keeps every instance at or under that number. An instance being drained (scale-in, a
  deployment) is out of the routing table, so it gets nothing new. An endpoint scaled to zero
  takes nothing: its requests wait (HasBacklogWithoutCapacity says so) until it has an instance.
- **One request.** Its input object streams from its store to the instance; the answer streams
  to ``<S3OutputPath>/<InferenceId>.out``, which appears only once complete. A model error, an
  expired request (queued past RequestTTLSeconds), a timeout (InvocationTimeoutSeconds), or a
  missing input object writes the reason to the failure location instead. Then the outcome is
  published to the success or error topic, and only then is the request finished in the queue.
- **Exactly once where the caller sees it.** A server killed mid-request leaves it claimed; on
  restart the queue hands it out again (:meth:`InvocationQueue.recover`, or a lease that runs
  out). Run again, it writes the same output object and publishes under the same message id
  (its request id), which the notification service delivers once.
- **Requests that cannot run yet** (no instance in service, the endpoint not InService) go back
  to the queue, in their place. Those of a deleted endpoint fail with that reason.
- **Metrics**, every second, per asynchronous endpoint (``AWS/SageMaker``, ``EndpointName``):
  ApproximateBacklogSize, ApproximateBacklogSizePerInstance, ApproximateAgeOfOldestRequest and
  HasBacklogWithoutCapacity, which the AWS recipe's scaling policies and alarms read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from shipway.asyncinf.notification import INLINE_RESPONSE_BYTES, notification_message
from shipway.domain.async_inference import (
    AsyncInvocation,
    AsyncInvocationStatus,
    NotificationTopicKind,
)
from shipway.domain.clock import Clock
from shipway.domain.errors import ModelError, ServiceUnavailable, ShipwayError, ValidationError
from shipway.monitor.metrics import MetricsStore
from shipway.periodic import Periodic
from shipway.router.router import (
    InstanceLost,
    Invocation,
    InvocationStream,
    ModelStreamError,
    Router,
)
from shipway.store.invocation_queue import LEASE_SECONDS, Backlog, InvocationQueue
from shipway.store.locations import CHUNK_BYTES, InputMissing, Locations, Writer

__all__ = ["BACKLOG_METRICS", "AsyncDispatcher", "Publish"]

log = logging.getLogger(__name__)

BACKLOG_METRICS = (
    "ApproximateBacklogSize",
    "ApproximateBacklogSizePerInstance",
    "ApproximateAgeOfOldestRequest",
    "HasBacklogWithoutCapacity",
)
MAX_ATTEMPTS = 3
"""Times a request is sent before an instance lost under it fails it (a model that crashes its
instance on that input would otherwise be sent it for ever)."""
POLL_SECONDS = 1.0
"""How often the dispatcher looks at the queue without being woken (leases that ran out)."""
METRICS_SECONDS = 1.0
PRUNE_SECONDS = 3600.0
"""How often the records of requests finished past their retention are pruned."""

Publish = Callable[[str, str, str], object]
"""``publish(topic_arn, message, message_id)``: durable, and idempotent by message id."""


@dataclass
class _Running:
    invocation: AsyncInvocation
    task: asyncio.Task[None]


class _Released(Exception):
    """The request cannot run now (no instance, endpoint not in service): back to the queue."""


class AsyncDispatcher:
    def __init__(
        self,
        queue: InvocationQueue,
        router: Router,
        locations: Locations,
        metrics: MetricsStore,
        clock: Clock,
        *,
        region: str,
        publish: Publish,
        endpoint_exists: Callable[[str], bool],
    ) -> None:
        self._queue = queue
        self._router = router
        self._locations = locations
        self._metrics = metrics
        self._clock = clock
        self._region = region
        self._publish = publish
        self._endpoint_exists = endpoint_exists
        self._running: dict[str, _Running] = {}
        """Requests under way, by request id."""
        self._in_flight: dict[str, int] = {}
        """Requests under way per endpoint."""
        self._drained: set[str] = set()
        """Endpoints whose last claim found fewer requests than it asked for: not asked again
        until a request is queued for them (or the next poll)."""
        self._pruned = 0.0
        self._wakeup: asyncio.Event | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._renewer = Periodic(
            "renewing asynchronous requests' leases", self._renew, LEASE_SECONDS / 3
        )
        self._sampler = Periodic("sampling asynchronous backlogs", self.sample, METRICS_SECONDS)

    # --- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        recovered = await asyncio.to_thread(self._queue.recover)
        if recovered:
            log.info(
                "%d asynchronous requests under way when the server stopped are queued again",
                recovered,
            )
        self._wakeup = asyncio.Event()
        self._event_loop = asyncio.get_running_loop()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="async dispatcher")
        await self._renewer.start()
        await self._sampler.start()

    async def close(self) -> None:
        """Stop taking requests; those under way go back to the queue unfinished."""
        await self._sampler.close()
        await self._renewer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        running = list(self._running.values())
        for entry in running:
            entry.task.cancel()
        for entry in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await entry.task
        if running:
            await asyncio.to_thread(self._queue.release, [e.invocation.request_id for e in running])

    def wake(self, endpoint_name: str | None = None) -> None:
        """Look at the queue now: a request was queued (for ``endpoint_name``), or the routing
        table changed (None). Safe to call from any thread."""
        loop = self._event_loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake(endpoint_name)
        else:
            loop.call_soon_threadsafe(self._wake, endpoint_name)

    def _wake(self, endpoint_name: str | None) -> None:
        if endpoint_name is None:
            self._drained.clear()
        else:
            self._drained.discard(endpoint_name)
        if self._wakeup is not None:
            self._wakeup.set()

    def in_flight(self, endpoint_name: str) -> int:
        return self._in_flight.get(endpoint_name, 0)

    # --- dispatching -------------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._wakeup is not None
        while True:
            self._wakeup.clear()
            try:
                await self._round()
            except Exception:
                log.exception("dispatching asynchronous requests failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), POLL_SECONDS)
            if not self._wakeup.is_set():
                self._drained.clear()  # a poll: leases may have run out meanwhile

    async def _round(self) -> None:
        table = self._router.table
        for name in table.names():
            route = table.get(name)
            if route is None or route.asynchronous is None or name in self._drained:
                continue
            live = sum(1 for v in route.variants for i in v.instances if not i.down)
            free = live * route.asynchronous.concurrency_per_instance - self.in_flight(name)
            if free <= 0:
                continue
            claimed = await asyncio.to_thread(self._queue.claim, name, free, self._clock.time())
            if len(claimed) < free:
                self._drained.add(name)
            for invocation in claimed:
                self._begin(invocation)

    def _begin(self, invocation: AsyncInvocation) -> None:
        name = invocation.endpoint_name
        self._in_flight[name] = self._in_flight.get(name, 0) + 1
        task = asyncio.get_running_loop().create_task(
            self._run(invocation), name=f"async request {invocation.inference_id}"
        )
        self._running[invocation.request_id] = _Running(invocation, task)

    async def _run(self, invocation: AsyncInvocation) -> None:
        name = invocation.endpoint_name
        try:
            await self._process(invocation)
        except _Released:
            await asyncio.to_thread(self._queue.release, [invocation.request_id])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("asynchronous request %s failed unexpectedly", invocation.inference_id)
        finally:
            self._running.pop(invocation.request_id, None)
            self._in_flight[name] = self._in_flight.get(name, 1) - 1
            if self._wakeup is not None:
                self._wakeup.set()

    async def _process(self, invocation: AsyncInvocation) -> None:
        now = self._clock.time()
        if now > invocation.expires():
            waited = now - invocation.enqueued_time.timestamp()
            await self._fail(
                invocation,
                f"Request expired: it waited {waited:.0f} s in the queue, longer than its "
                f"RequestTTLSeconds of {invocation.request_ttl_seconds} s.",
            )
            return
        try:
            body = await asyncio.to_thread(self._locations.body, invocation.input_location)
        except InputMissing as exc:
            await self._fail(invocation, exc.message)
            return
        request = Invocation(
            endpoint_name=invocation.endpoint_name,
            body=body if isinstance(body, bytes) else b"",
            content_type=_header(invocation.content_type),
            accept=_header(invocation.accept),
            custom_attributes=_header(invocation.custom_attributes),
            inference_id=invocation.inference_id.encode(),
            source=None if isinstance(body, bytes) else body,
            timeout=float(invocation.invocation_timeout_seconds),
            asynchronous=True,
        )
        try:
            async with asyncio.timeout(invocation.invocation_timeout_seconds):
                try:
                    stream = await self._router.invoke_stream(request)
                except (ServiceUnavailable, ValidationError) as exc:  # no instance; not in service
                    raise _Released from exc
                head = await self._save(stream, invocation.output_location, invocation.request_id)
        except (_Released, asyncio.CancelledError):
            raise
        except Exception as exc:
            await self._failed(invocation, exc)
            return
        invocation.status = AsyncInvocationStatus.COMPLETED
        invocation.end_time = self._clock.now()
        invocation.response_content_type = stream.content_type.decode("latin-1")
        invocation.invoked_production_variant = stream.variant_name
        include = NotificationTopicKind.SUCCESS_NOTIFICATION_TOPIC in invocation.include_response_in
        await asyncio.to_thread(
            self._settle,
            invocation,
            invocation.success_topic,
            head if include and len(head) <= INLINE_RESPONSE_BYTES else None,
        )

    async def _save(self, stream: InvocationStream, output: str, key: str) -> bytes:
        """Write the answer to ``output``, atomically: at most a chunk in one go, a larger one
        streamed to a writer (discarded if the answer breaks off). Returns its first
        ``INLINE_RESPONSE_BYTES + 1`` bytes (what a notification may carry)."""
        writer: Writer | None = None
        head = bytearray()
        pending = bytearray()
        try:
            async for piece in stream:
                if len(head) <= INLINE_RESPONSE_BYTES:
                    head += piece[: INLINE_RESPONSE_BYTES + 1 - len(head)]
                pending += piece
                if len(pending) >= CHUNK_BYTES:
                    if writer is None:
                        writer = await asyncio.to_thread(self._locations.writer, output, key)
                    await asyncio.to_thread(writer.write, bytes(pending))
                    pending.clear()
            if writer is None:
                await asyncio.to_thread(self._locations.put, output, bytes(pending), key)
            else:
                await asyncio.to_thread(writer.finish, bytes(pending))
        except BaseException:
            if writer is not None:
                await asyncio.to_thread(writer.discard)
            raise
        finally:
            await stream.aclose()
        return bytes(head)

    async def _failed(self, invocation: AsyncInvocation, exc: Exception) -> None:
        """Fail the request for what went wrong, or give it back to the queue (:class:`_Released`)
        when only its instance went away and it has sends left."""
        content = None
        if isinstance(exc, TimeoutError):
            reason = (
                "Inference timed out: the model did not complete the answer within the "
                f"InvocationTimeoutSeconds of {invocation.invocation_timeout_seconds} s."
            )
        elif isinstance(exc, InstanceLost | ModelStreamError) and _lost(exc):
            if invocation.attempts < MAX_ATTEMPTS:  # scaled in, replaced, crashed: run it again
                log.warning(
                    "the instance running %s went away; queued again", invocation.inference_id
                )
                raise _Released from exc
            reason = (
                f"{exc.message} (the request was sent {invocation.attempts} times, and its "
                "instance stopped each time)"
            )
        elif isinstance(exc, ModelError):
            reason, content = exc.message, exc.original_message.encode(errors="replace")
        elif isinstance(exc, ShipwayError):
            reason = exc.message
        else:
            log.exception("asynchronous request %s failed", invocation.inference_id)
            reason = f"Internal failure: {type(exc).__name__}: {exc}"
        await self._fail(invocation, reason, content)

    async def _fail(
        self, invocation: AsyncInvocation, reason: str, content: bytes | None = None
    ) -> None:
        """Write the reason (or the model's error body) to the failure location, then conclude."""
        invocation.status = AsyncInvocationStatus.FAILED
        invocation.failure_reason = reason
        invocation.end_time = self._clock.now()
        body = content if content else reason.encode()
        include = NotificationTopicKind.ERROR_NOTIFICATION_TOPIC in invocation.include_response_in
        await asyncio.to_thread(
            self._settle,
            invocation,
            invocation.error_topic,
            body if include and content else None,
            body,
        )

    def _settle(
        self,
        invocation: AsyncInvocation,
        topic: str | None,
        response: bytes | None,
        failure: bytes | None = None,
    ) -> None:
        """Write a failure's object, publish the outcome (once per request, by its id), drop an
        inline input, then finish the request in the queue: in this order, in one worker
        thread (one hop from the event loop for all of it)."""
        if failure is not None:
            try:
                self._locations.put(invocation.failure_location, failure, invocation.request_id)
            except Exception as exc:
                log.warning(
                    "could not write the failure of %s to %s: %s",
                    invocation.inference_id,
                    invocation.failure_location,
                    exc,
                )
        if topic is not None:
            message = notification_message(invocation, self._region, response)
            try:
                self._publish(topic, message, invocation.request_id)
            except Exception as exc:
                log.warning(
                    "could not publish the outcome of %s to %s: %s",
                    invocation.inference_id,
                    topic,
                    exc,
                )
        if invocation.inline_input:
            with contextlib.suppress(Exception):
                self._locations.remove(invocation.input_location)
        self._queue.finish(invocation)

    def _renew(self) -> None:
        ids = list(self._running)
        if ids:
            self._queue.renew(ids, self._clock.time())

    # --- metrics -----------------------------------------------------------------------------

    def sample(self) -> dict[str, Backlog]:
        """Record the backlog metrics of every asynchronous endpoint (runs in a thread);
        requests of endpoints that no longer exist are failed (on the event loop)."""
        backlogs = self._queue.backlogs()
        now = self._clock.time()
        if now - self._pruned > PRUNE_SECONDS:
            self._pruned = now
            if pruned := self._queue.prune(now):
                log.info("forgot %d asynchronous requests finished a week ago", pruned)
        table = self._router.table
        names = {n for n in table.names() if (r := table.get(n)) is not None and r.asynchronous}
        for name in names | set(backlogs):
            backlog = backlogs.get(name, Backlog())
            route = table.get(name)
            instances = 0 if route is None else sum(len(v.instances) for v in route.variants)
            age = (
                0.0 if backlog.oldest_enqueued is None else max(0.0, now - backlog.oldest_enqueued)
            )
            dimensions = {"EndpointName": name}
            for metric, value in zip(
                BACKLOG_METRICS,
                (
                    float(backlog.size),
                    backlog.size / instances if instances else float(backlog.size),
                    age,
                    1.0 if backlog.size and not instances else 0.0,
                ),
                strict=True,
            ):
                unit = "Seconds" if metric == "ApproximateAgeOfOldestRequest" else "Count"
                self._metrics.put(metric, dimensions, value, now, unit=unit)
        for name in set(backlogs) - names:
            if not self._endpoint_exists(name):
                self._fail_all(name)
        return backlogs

    def _fail_all(self, endpoint_name: str) -> None:
        """Fail the queued requests of an endpoint that was deleted (in this worker thread)."""
        for invocation in self._queue.claim(endpoint_name, 1000, self._clock.time()):
            if invocation.request_id in self._running:
                continue
            reason = f"Endpoint {endpoint_name} was deleted before the request ran."
            invocation.status = AsyncInvocationStatus.FAILED
            invocation.failure_reason = reason
            invocation.end_time = self._clock.now()
            self._settle(invocation, invocation.error_topic, None, reason.encode())


def _lost(exc: BaseException) -> bool:
    """Whether the request failed because its instance went away, not because of the model's
    answer: it stopped before answering, or broke off its answer."""
    return isinstance(exc, InstanceLost) or (
        isinstance(exc, ModelStreamError) and exc.error_code == "StreamBroken"
    )


def _header(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")
