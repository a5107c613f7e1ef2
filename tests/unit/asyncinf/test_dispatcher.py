"""The dispatcher's decisions that need no model: a request queued past its RequestTTLSeconds
expires to its failure location, and one whose input is gone fails saying so. A real SQLite
queue, real files, a routing table with one (unreachable) instance; time is a ManualClock, so
the 60 s TTL passes at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from shipway.asyncinf.dispatcher import AsyncDispatcher
from shipway.domain.async_inference import (
    AsyncInferenceConfig,
    AsyncInvocation,
    AsyncInvocationStatus,
)
from shipway.domain.clock import ManualClock
from shipway.domain.endpoint_config import RoutingStrategy
from shipway.monitor.metrics import MetricsStore
from shipway.router.router import Router
from shipway.router.routing import (
    AsyncLimits,
    EndpointSnapshot,
    InstanceSnapshot,
    Snapshot,
    VariantSnapshot,
)
from shipway.store.locations import Locations
from shipway.store.metadata import MetadataStore
from shipway.store.sources import SourcePolicy
from shipway.store.sql_queue import SqlInvocationQueue

CONFIG = AsyncInferenceConfig.model_validate({"OutputConfig": {"S3OutputPath": "s3://b/o"}})


def invocation(folder: Path, clock: ManualClock, name: str, ttl: int) -> AsyncInvocation:
    source = folder / f"{name}.json"
    source.write_text("[[1, 2, 3, 4]]")
    return AsyncInvocation(
        request_id=f"id-{name}",
        inference_id=name,
        endpoint_name="orders",
        input_location=f"file://{source}",
        output_location=f"file://{folder}/out/{name}.out",
        failure_location=f"file://{folder}/failed/{name}-error.out",
        request_ttl_seconds=ttl,
        enqueued_time=clock.now(),
    )


def run(folder: Path, clock: ManualClock, queued: list[AsyncInvocation]) -> SqlInvocationQueue:
    store = MetadataStore(f"sqlite:///{folder / 'shipway.db'}")
    queue = SqlInvocationQueue(store.engine)
    for item in queued:
        queue.put(item)
    router = Router(MetricsStore(), account_id="123456789012", max_payload_bytes=1 << 20,
                    model_timeout_seconds=1.0, clock=clock)  # fmt: skip
    router.apply(
        Snapshot(
            (
                EndpointSnapshot(
                    "orders",
                    (
                        VariantSnapshot(
                            "AllTraffic",
                            "m",
                            1.0,
                            RoutingStrategy.LEAST_OUTSTANDING_REQUESTS,
                            (InstanceSnapshot("i-1", f"unix:{folder / 'nobody.sock'}"),),
                        ),
                    ),
                    asynchronous=AsyncLimits(4, CONFIG),
                ),
            ),
            1,
        )
    )
    dispatcher = AsyncDispatcher(
        queue,
        router,
        Locations(SourcePolicy()),
        MetricsStore(),
        clock,
        region="us-east-1",
        publish=lambda topic, message, message_id: None,
        endpoint_exists=lambda name: True,
    )

    async def main() -> None:
        await dispatcher.start()
        for _ in range(200):
            if not queue.backlogs():
                break
            await asyncio.sleep(0.02)
        await dispatcher.close()

    asyncio.run(main())
    return queue


def test_a_request_queued_past_its_ttl_expires_to_its_failure_location(tmp_path: Path) -> None:
    clock = ManualClock()
    expired = invocation(tmp_path, clock, "late", ttl=60)
    clock.advance(61)

    queue = run(tmp_path, clock, [expired])

    failure = (tmp_path / "failed" / "late-error.out").read_text()
    assert failure.startswith("Request expired: it waited 61 s in the queue")
    assert "RequestTTLSeconds of 60 s" in failure
    assert not (tmp_path / "out" / "late.out").exists()
    record = queue.get("late")
    assert record is not None
    assert record.status is AsyncInvocationStatus.FAILED
    assert record.end_time == clock.now()
    assert record.end_time - record.enqueued_time == timedelta(seconds=61)


def test_a_request_whose_input_is_gone_fails_saying_so(tmp_path: Path) -> None:
    clock = ManualClock()
    vanished = invocation(tmp_path, clock, "gone", ttl=3600)
    Path(vanished.input_location.removeprefix("file://")).unlink()

    queue = run(tmp_path, clock, [vanished])

    failure = (tmp_path / "failed" / "gone-error.out").read_text()
    assert "does not exist" in failure
    record = queue.get("gone")
    assert record is not None
    assert record.status is AsyncInvocationStatus.FAILED
