"""The asynchronous request queue's contract, which every backend passes: the metadata store's
table on SQLite and on PostgreSQL, and Redis Streams.

Claims come oldest first, up to a limit, and never twice to concurrent claimers; a lease that
runs out (``now`` moved past it) makes a request claimable again, a renewal keeps it; a finished
request is never claimed again and its record stays readable; a released or recovered one is
claimable at once, in its place; backlogs, ``get`` and ``page`` read the same state.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipway.domain.async_inference import AsyncInvocation, AsyncInvocationStatus
from shipway.domain.errors import ServiceUnavailable, ValidationError
from shipway.store.invocation_queue import (
    LEASE_SECONDS,
    RETENTION_SECONDS,
    Backlog,
    InvocationQuery,
    InvocationQueue,
)
from shipway.store.metadata import MetadataStore
from shipway.store.redis_queue import RedisInvocationQueue
from shipway.store.sql_queue import SqlInvocationQueue

QUEUED = AsyncInvocationStatus.IN_QUEUE
RUNNING = AsyncInvocationStatus.IN_PROGRESS
COMPLETED = AsyncInvocationStatus.COMPLETED
FAILED = AsyncInvocationStatus.FAILED

T = 1_800_000_000.0
"""The tests' clock (epoch seconds): every ``now`` is explicit."""

Opener = Callable[[], InvocationQueue]


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a queue on this test's backend; each call is a new queue object on the same
    data, as a restarted server (or a second dispatcher) would open it."""
    closing: list[Callable[[], None]] = []

    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        namespace: str = request.getfixturevalue("redis_namespace")

        def opener() -> InvocationQueue:
            queue = RedisInvocationQueue(url, namespace=namespace)
            closing.append(queue.close)
            return queue
    else:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'metadata.db'}"
        else:
            url = request.getfixturevalue("postgres_url")

        def opener() -> InvocationQueue:
            store = MetadataStore(url)
            closing.append(store.close)
            return SqlInvocationQueue(store.engine)

    try:
        yield opener
    finally:
        for close in reversed(closing):
            close()


@pytest.fixture
def queue(reopen: Opener) -> InvocationQueue:
    return reopen()


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def request(
    endpoint: str = "Orders", *, enqueued: float = T, inference_id: str | None = None
) -> AsyncInvocation:
    request_id = uuid.uuid4().hex
    name = inference_id or request_id
    return AsyncInvocation(
        request_id=request_id,
        inference_id=name,
        endpoint_name=endpoint,
        input_location=f"s3://inputs/{name}.json",
        inline_input=True,
        input_size=17,
        content_type="application/json",
        custom_attributes="trace=1",
        output_location=f"s3://outputs/{name}.out",
        failure_location=f"s3://failures/{name}-error.out",
        success_topic="arn:aws:sns:us-east-1:123456789012:done",
        enqueued_time=at(enqueued),
    )


def queued(queue: InvocationQueue, count: int, endpoint: str = "Orders") -> list[AsyncInvocation]:
    """``count`` requests put one after another, a second apart."""
    puts = [request(endpoint, enqueued=T + index) for index in range(count)]
    for invocation in puts:
        queue.put(invocation)
    return puts


def ids(invocations: list[AsyncInvocation]) -> list[str]:
    return [invocation.request_id for invocation in invocations]


def finished(invocation: AsyncInvocation, status: AsyncInvocationStatus) -> AsyncInvocation:
    return invocation.model_copy(
        update={
            "status": status,
            "end_time": at(T + 5),
            "failure_reason": "ModelError: the model answered 500" if status is FAILED else None,
            "invoked_production_variant": "AllTraffic",
        }
    )


def status_of(queue: InvocationQueue, invocation: AsyncInvocation) -> AsyncInvocationStatus:
    found = queue.get(invocation.request_id)
    assert found is not None
    return found.status


def test_claims_come_oldest_first_up_to_the_limit_as_they_were_put(
    queue: InvocationQueue,
) -> None:
    puts = queued(queue, 5)
    queue.put(request("Billing", enqueued=T))

    first = queue.claim("ORDERS", 2, now=T + 10)  # endpoint names are case-insensitive
    assert ids(first) == ids(puts[:2])
    assert first[0] == puts[0].model_copy(
        update={"status": RUNNING, "attempts": 1, "start_time": at(T + 10)}
    )
    assert queue.claim("Orders", 0, now=T + 10) == []
    rest = queue.claim("Orders", 10, now=T + 11)
    assert ids(rest) == ids(puts[2:])
    assert {(i.status, i.attempts, i.start_time) for i in rest} == {(RUNNING, 1, at(T + 11))}
    assert queue.claim("Orders", 10, now=T + 12) == []
    assert queue.claim("Nowhere", 10, now=T + 12) == []
    assert status_of(queue, puts[0]) is RUNNING


def test_concurrent_claimers_never_take_the_same_request(reopen: Opener) -> None:
    puts = queued(reopen(), 60)
    dispatchers = [reopen(), reopen()]
    start = threading.Barrier(len(dispatchers))
    taken: list[list[str]] = [[] for _ in dispatchers]
    failures: list[BaseException] = []

    def dispatch(index: int) -> None:
        try:
            start.wait()
            while claimed := dispatchers[index].claim("Orders", 3, now=T + 10):
                taken[index] += ids(claimed)
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=dispatch, args=(i,)) for i in range(len(dispatchers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    first, second = taken
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(ids(puts))
    assert len(first + second) == len(puts)


def test_concurrent_puts_and_finishes_are_each_durable_once(queue: InvocationQueue) -> None:
    """Many threads putting at once (the SQL queue writes them in shared transactions): every
    request is there once, in a claimable state, and every finish is recorded."""
    made = [request() for _ in range(200)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(queue.put, made))
    claimed = queue.claim("Orders", 500, now=T + 1)
    assert sorted(ids(claimed)) == sorted(ids(made))
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                queue.finish,
                [finished(i, AsyncInvocationStatus.COMPLETED) for i in claimed],
            )
        )
    assert queue.backlogs() == {}
    assert {status_of(queue, i) for i in made} == {AsyncInvocationStatus.COMPLETED}


def test_records_finished_past_the_retention_are_pruned(queue: InvocationQueue) -> None:
    old, recent, open_ = request(enqueued=T), request(enqueued=T + 3600), request(enqueued=T)
    for invocation in (old, recent, open_):
        queue.put(invocation)
    for invocation in queue.claim("Orders", 3, now=T + 3700):
        if invocation.request_id != open_.request_id:
            queue.finish(finished(invocation, AsyncInvocationStatus.COMPLETED))
    pruned = queue.prune(T + RETENTION_SECONDS + 60)
    if isinstance(queue, RedisInvocationQueue):
        assert pruned == 0  # its records expire by themselves
        return
    assert pruned == 1
    assert queue.get(old.request_id) is None
    assert queue.get(recent.request_id) is not None
    assert queue.get(open_.request_id) is not None  # never a request not finished


def test_a_request_whose_lease_ran_out_is_claimed_again(queue: InvocationQueue) -> None:
    (one,) = queued(queue, 1)
    assert ids(queue.claim("Orders", 5, now=T)) == [one.request_id]

    assert queue.claim("Orders", 5, now=T + LEASE_SECONDS - 1) == []
    (again,) = queue.claim("Orders", 5, now=T + 3600)
    assert (again.request_id, again.attempts, again.start_time) == (one.request_id, 2, at(T + 3600))


def test_a_renewed_lease_holds_past_its_first_end(queue: InvocationQueue) -> None:
    held, other = queued(queue, 2)
    queue.claim("Orders", 2, now=T)

    queue.renew([held.request_id], now=T + 20)
    assert ids(queue.claim("Orders", 5, now=T + LEASE_SECONDS + 1)) == [other.request_id]
    assert queue.claim("Orders", 5, now=T + 20 + LEASE_SECONDS - 1) == []
    assert ids(queue.claim("Orders", 5, now=T + 20 + LEASE_SECONDS + 1)) == [held.request_id]
    queue.renew([], now=T)


def test_a_finished_request_is_never_claimed_again_and_its_record_stays(
    queue: InvocationQueue,
) -> None:
    done, failed, waiting = queued(queue, 3)
    claimed = queue.claim("Orders", 2, now=T)
    outcomes = [finished(claimed[0], COMPLETED), finished(claimed[1], FAILED)]
    for outcome in outcomes:
        queue.finish(outcome)

    # A late renewal or release (a dispatcher that lost its lease) changes nothing.
    queue.renew([done.request_id], now=T + 10 * LEASE_SECONDS)
    queue.release([failed.request_id])
    (last,) = queue.claim("Orders", 5, now=T + 10 * LEASE_SECONDS)
    assert last.request_id == waiting.request_id
    queue.finish(finished(last, COMPLETED))
    assert queue.claim("Orders", 5, now=T + 1000 * LEASE_SECONDS) == []

    assert queue.get(done.request_id) == outcomes[0]
    assert queue.get(failed.inference_id) == outcomes[1]
    listed, _ = queue.page(InvocationQuery(status=FAILED))
    assert listed == [outcomes[1]]
    assert queue.backlogs() == {}
    with pytest.raises(ValueError, match="finished"):
        queue.finish(claimed[0])


def test_a_released_request_is_claimed_again_at_once_in_its_place(
    queue: InvocationQueue,
) -> None:
    first, second, third = queued(queue, 3)
    queue.claim("Orders", 2, now=T)

    queue.release([first.request_id, "no-such-request"])
    assert status_of(queue, first) is QUEUED
    assert status_of(queue, second) is RUNNING
    queue.renew([first.request_id], now=T + 1)  # a renewal does not take it back
    again = queue.claim("Orders", 5, now=T + 1)
    assert ids(again) == [first.request_id, third.request_id]
    assert [i.attempts for i in again] == [2, 1]
    queue.release([])


def test_recover_frees_what_a_crashed_server_held(reopen: Opener) -> None:
    crashed = reopen()
    puts = queued(crashed, 3)
    crashed.claim("Orders", 2, now=T)
    queued(crashed, 1, endpoint="Billing")
    crashed.claim("Billing", 1, now=T)

    restarted = reopen()
    assert restarted.recover() == 3
    assert restarted.recover() == 0
    assert [status_of(restarted, i) for i in puts] == [QUEUED, QUEUED, QUEUED]
    assert [backlog.in_progress for backlog in restarted.backlogs().values()] == [0, 0]
    again = restarted.claim("Orders", 5, now=T + 1)  # long before the old leases end
    assert ids(again) == ids(puts)
    assert [i.attempts for i in again] == [2, 2, 1]


def test_backlogs_count_what_is_queued_or_under_way(queue: InvocationQueue) -> None:
    assert queue.backlogs() == {}
    orders = queued(queue, 3, endpoint="orders")
    queue.put(request("billing", enqueued=T + 7))
    queue.claim("orders", 2, now=T)

    assert queue.backlogs() == {
        "orders": Backlog(size=3, oldest_enqueued=T, in_progress=2),
        "billing": Backlog(size=1, oldest_enqueued=T + 7, in_progress=0),
    }
    queue.finish(finished(orders[0].model_copy(update={"status": RUNNING}), COMPLETED))
    assert queue.backlogs()["orders"] == Backlog(size=2, oldest_enqueued=T + 1, in_progress=1)
    for invocation in queue.claim("orders", 5, now=T + 10 * LEASE_SECONDS):
        queue.finish(finished(invocation, COMPLETED))
    assert queue.backlogs() == {"billing": Backlog(size=1, oldest_enqueued=T + 7, in_progress=0)}


def test_get_finds_the_newest_request_of_an_inference_id(queue: InvocationQueue) -> None:
    older = request("Orders", inference_id="job-1")
    newer = request("Billing", enqueued=T + 1, inference_id="job-1")
    queue.put(older)
    queue.put(newer)

    assert queue.get("job-1") == newer
    assert queue.get("job-1", "ORDERS") == older
    assert queue.get("job-1", "Nowhere") is None
    assert queue.get(older.request_id) == older
    assert queue.get(older.request_id, "Billing") is None
    assert queue.get("job-2") is None
    (claimed,) = queue.claim("Billing", 1, now=T)
    queue.finish(finished(claimed, COMPLETED))
    assert queue.get("job-1") == finished(claimed, COMPLETED)


def test_pages_come_newest_first_filtered_with_tokens(queue: InvocationQueue) -> None:
    orders = queued(queue, 5)
    billing = queued(queue, 2, endpoint="Billing")
    running = queue.claim("Orders", 2, now=T)
    everything = list(reversed(orders + billing))

    seen: list[AsyncInvocation] = []
    token: str | None = None
    pages = 0
    while True:
        page, token = queue.page(InvocationQuery(limit=3, next_token=token))
        seen += page
        pages += 1
        if token is None:
            break
    assert pages == 3
    assert ids(seen) == ids(everything)

    page, token = queue.page(InvocationQuery(endpoint_name="orders", limit=4))
    assert (ids(page), token is not None) == (ids(list(reversed(orders)))[:4], True)
    page, token = queue.page(InvocationQuery(endpoint_name="orders", limit=4, next_token=token))
    assert (ids(page), token) == ([orders[0].request_id], None)

    page, token = queue.page(InvocationQuery(status=RUNNING, limit=1))
    assert ids(page) == [running[1].request_id]
    assert page[0].status is RUNNING
    page, token = queue.page(InvocationQuery(status=RUNNING, limit=1, next_token=token))
    assert (ids(page), token) == ([running[0].request_id], None)
    page, _ = queue.page(InvocationQuery(endpoint_name="Billing", status=QUEUED))
    assert ids(page) == ids(list(reversed(billing)))
    assert queue.page(InvocationQuery(endpoint_name="Nowhere")) == ([], None)


@pytest.mark.parametrize("token", ["garbage", "-1", "12abc"])
def test_a_token_this_queue_did_not_hand_out_is_a_validation_error(
    queue: InvocationQueue, token: str
) -> None:
    queued(queue, 1)
    with pytest.raises(ValidationError, match="NextToken"):
        queue.page(InvocationQuery(next_token=token))


# Redis only: what the contract leaves to the backend.


@pytest.mark.redis
def test_a_redis_put_repeated_after_a_lost_answer_queues_once(
    redis_url: str, redis_namespace: str
) -> None:
    queue = RedisInvocationQueue(redis_url, namespace=redis_namespace)
    try:
        invocation = request()
        queue.put(invocation)
        queue.put(invocation)
        assert queue.backlogs()["Orders"].size == 1
        assert len(queue.claim("Orders", 5, now=T)) == 1
    finally:
        queue.close()


@pytest.mark.redis
def test_redis_keeps_a_finished_record_for_the_retention_only(
    redis_url: str, redis_namespace: str
) -> None:
    import redis

    queue = RedisInvocationQueue(redis_url, namespace=redis_namespace)
    client = redis.Redis.from_url(redis_url)
    try:
        done, waiting = queued(queue, 2)
        record = f"{redis_namespace}:async:req:{{}}"
        (claimed, _) = queue.claim("Orders", 2, now=T)
        queue.finish(finished(claimed, COMPLETED))
        assert 0 < client.ttl(record.format(done.request_id)) <= RETENTION_SECONDS
        assert client.ttl(record.format(waiting.request_id)) == -1  # never while unfinished

        client.delete(record.format(done.request_id))  # as its expiry will
        assert queue.get(done.request_id) is None
        assert ids(queue.page(InvocationQuery())[0]) == [waiting.request_id]
    finally:
        client.close()
        queue.close()


def test_an_unreachable_redis_is_service_unavailable_without_its_password() -> None:
    queue = RedisInvocationQueue("redis://shipway:s3cret@127.0.0.1:1/0", namespace="t")
    started = time.monotonic()
    try:
        with pytest.raises(ServiceUnavailable, match="cannot be reached") as raised:
            queue.backlogs()
    finally:
        queue.close()
    assert "redis://shipway:***@127.0.0.1:1/0" in raised.value.message
    assert "s3cret" not in str(raised.value)
    assert time.monotonic() - started < 5
