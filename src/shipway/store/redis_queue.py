"""The asynchronous request queue on Redis Streams (``SHIPWAY_QUEUE_URL=redis://...``).

Same semantics as :class:`~shipway.store.sql_queue.SqlInvocationQueue`; only the storage differs.
Every key starts with ``<namespace>:async:`` (one server per namespace):

- ``{<endpoint>}:stream`` — one stream per endpoint (lower-cased name), each entry a request id
  and its enqueue time, read by one consumer group. An entry never delivered is InQueue; a
  delivered one sits in the group's pending-entry list (PEL) until the request is finished, when
  it is acknowledged and deleted, so ``XLEN`` is the endpoint's backlog.
- ``{<endpoint>}:leases`` — a sorted set: each pending entry under way, scored by the end of its
  lease on the dispatchers' clock (the ``now`` they pass), like the SQL table's ``lease_until``.
  A pending entry without a lease (given back by :meth:`release` or :meth:`recover`) or with a
  lease that ran out is claimable. The PEL's own idle time cannot be the lease: it runs on Redis's
  clock, and ``XCLAIM`` will not set a delivery time in the future, so ``renew(ids, now)`` could
  not be honoured; and two ``XAUTOCLAIM`` calls with a zero minimum idle time both take the same
  entry.
- ``req:<request id>`` — a hash: ``doc`` (the request as queued, or as finished, in JSON) and
  the fields a claim changes (``status``, ``attempts``, ``start``), which override the queued
  document's, so a claim never rewrites JSON inside Redis.
- ``requests`` and ``{<endpoint>}:requests`` — sorted sets of request ids by a put sequence
  (``seq``), newest last, for :meth:`page`; ``inference:<InferenceId>`` the same for :meth:`get`;
  ``endpoints`` — a hash of the endpoints with a stream (lower-cased name to name), so
  :meth:`backlogs` never scans the keyspace.

A put and a claim are Lua scripts, atomic in Redis: a put is never half done, and concurrent
claims never take the same entry. A claim takes the claimable pending entries first, walking the
PEL in id order, then new entries (``XREADGROUP``): every pending entry is older than every new
one, so requests come out oldest first, and a released one comes back in its place.

Finished records expire after :data:`RETENTION_SECONDS`; the listing sets drop their dead
members as puts and pages meet them. Redis must persist (``appendonly yes``) for a put to be
durable across a Redis restart. The scripts touch keys they derive from what they read, so this
runs on a single Redis (or a replicated primary), not on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from shipway.domain.async_inference import AsyncInvocation, AsyncInvocationStatus
from shipway.domain.errors import ServiceUnavailable, ValidationError
from shipway.store.invocation_queue import (
    LEASE_SECONDS,
    RETENTION_SECONDS,
    Backlog,
    InvocationQuery,
)

__all__ = ["CONSUMER", "GROUP", "RedisInvocationQueue"]

"""How long a finished request's record stays readable (``shipway async show``)."""
GROUP = "shipway"
CONSUMER = "shipway"
"""The one consumer of a namespace: stable across restarts, so :meth:`recover` finds what the
server held when it stopped."""

_QUEUED = AsyncInvocationStatus.IN_QUEUE.value
_RUNNING = AsyncInvocationStatus.IN_PROGRESS.value
_SCAN = 100
"""Ids a page reads at a time."""

_LUA_FIELD = """
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return false
end
"""

# KEYS: stream, requests, endpoint's requests, record, inference index, endpoints, seq.
# ARGV: group, request id, doc, endpoint key, endpoint name, enqueued, record prefix.
_PUT = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
local seq = redis.call('INCR', KEYS[7])
local entry = redis.call('XADD', KEYS[1], '*', 'request', ARGV[2], 'enqueued', ARGV[6])
redis.call('HSET', KEYS[4], 'doc', ARGV[3], 'status', 'InQueue', 'attempts', 0, 'start', '',
  'endpoint', ARGV[4], 'entry', entry, 'seq', seq)
for _, listing in ipairs({KEYS[2], KEYS[3]}) do
  redis.call('ZADD', listing, seq, ARGV[2])
  for _, old in ipairs(redis.call('ZRANGE', listing, 0, 1)) do
    if redis.call('EXISTS', ARGV[7] .. old) == 1 then break end
    redis.call('ZREM', listing, old)
  end
end
redis.call('ZADD', KEYS[5], seq, ARGV[2])
redis.call('PERSIST', KEYS[5])
redis.call('HSET', KEYS[6], ARGV[4], ARGV[5])
return seq
"""

# KEYS: stream, leases.  ARGV: group, consumer, limit, now, lease end, record prefix.
# Returns {doc, attempts} per claimed request, oldest first.
_CLAIM = (
    _LUA_FIELD
    + """
local stream, leases, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local limit, now, prefix = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[6]
if redis.call('EXISTS', stream) == 0 then return {} end
local picked = {}
local pending = redis.call('XPENDING', stream, group)[1]
local lapsed = redis.call('ZRANGEBYSCORE', leases, '-inf', '(' .. ARGV[4], 'LIMIT', 0, 1)
if pending > redis.call('ZCARD', leases) or #lapsed > 0 then
  local from = '-'
  while #picked < limit do
    local batch = redis.call('XPENDING', stream, group, from, '+', 100)
    for _, held in ipairs(batch) do
      local id = held[1]
      local lease = redis.call('ZSCORE', leases, id)
      if (not lease) or tonumber(lease) < now then
        local found = redis.call('XRANGE', stream, id, id)
        if #found == 0 then
          redis.call('XACK', stream, group, id)
          redis.call('ZREM', leases, id)
        else
          redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID')
          picked[#picked + 1] = {id, found[1][2]}
          if #picked >= limit then break end
        end
      end
    end
    if #batch < 100 then break end
    from = '(' .. batch[#batch][1]
  end
end
if #picked < limit then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #picked,
    'STREAMS', stream, '>')
  if read then
    for _, entry in ipairs(read[1][2]) do picked[#picked + 1] = entry end
  end
end
local claimed = {}
for _, entry in ipairs(picked) do
  local record = prefix .. field(entry[2], 'request')
  if redis.call('EXISTS', record) == 1 then
    redis.call('HSET', record, 'status', 'InProgress', 'start', ARGV[4])
    local attempts = redis.call('HINCRBY', record, 'attempts', 1)
    redis.call('ZADD', leases, ARGV[5], entry[1])
    claimed[#claimed + 1] = {redis.call('HGET', record, 'doc'), attempts}
  else
    redis.call('XACK', stream, group, entry[1])
    redis.call('XDEL', stream, entry[1])
  end
end
return claimed
"""
)

# KEYS: leases, record.  ARGV: entry id.  Only a request under way goes back.
_RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], 'status', 'InQueue')
  return 1
end
return 0
"""

# KEYS: stream, leases.  ARGV: group, consumer, record prefix.
_RECOVER = (
    _LUA_FIELD
    + """
local stream, leases, group, consumer, prefix = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', stream) == 0 then return 0 end
local recovered, from = 0, '-'
while true do
  local batch = redis.call('XPENDING', stream, group, from, '+', 100, consumer)
  for _, held in ipairs(batch) do
    if redis.call('ZREM', leases, held[1]) == 1 then
      local found = redis.call('XRANGE', stream, held[1], held[1])
      if #found == 1 then
        redis.call('HSET', prefix .. field(found[1][2], 'request'), 'status', 'InQueue')
      end
      recovered = recovered + 1
    end
  end
  if #batch < 100 then return recovered end
  from = '(' .. batch[#batch][1]
end
"""
)


class _Keys:
    """The namespace's key names (see the module docstring)."""

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}:async:"
        self.records = f"{self.prefix}req:"
        self.requests = f"{self.prefix}requests"
        self.endpoints = f"{self.prefix}endpoints"
        self.seq = f"{self.prefix}seq"

    def stream(self, endpoint_key: str) -> str:
        return f"{self.prefix}{{{endpoint_key}}}:stream"

    def leases(self, endpoint_key: str) -> str:
        return f"{self.prefix}{{{endpoint_key}}}:leases"

    def listing(self, endpoint_key: str) -> str:
        return f"{self.prefix}{{{endpoint_key}}}:requests"

    def record(self, request_id: str) -> str:
        return f"{self.records}{request_id}"

    def inference(self, inference_id: str) -> str:
        return f"{self.prefix}inference:{inference_id}"


def _redacted(url: str) -> str:
    """``url`` without its password or query (which may carry one), fit for a message or log."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _invocation(record: dict[str, str]) -> AsyncInvocation:
    """A record as the request it holds: a finished one is its document; a live one has the
    status, attempts and start its claims (or releases) wrote beside the queued document."""
    invocation = AsyncInvocation.model_validate_json(record["doc"])
    status = AsyncInvocationStatus(record["status"])
    if not status.finished:
        invocation.status = status
        invocation.attempts = int(record["attempts"])
        start = record.get("start")
        invocation.start_time = datetime.fromtimestamp(float(start), UTC) if start else None
    return invocation


class RedisInvocationQueue:
    """The queue in the Redis at ``url``, under the keys of ``namespace`` (one server's)."""

    def __init__(self, url: str, *, namespace: str) -> None:
        self._where = _redacted(url)
        try:
            self._redis = redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=5,
                socket_timeout=30,
                # A blip is retried; a Redis that is down answers within about a second
                # (the client's default, ten retries, would hold a caller for several).
                retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=3),
            )
        except ValueError as exc:
            raise ValidationError(
                f"SHIPWAY_QUEUE_URL {self._where} is not a Redis URL Shipway can use: {exc}"
            ) from exc
        self._keys = _Keys(namespace)
        self._put = self._redis.register_script(_PUT)
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._recover = self._redis.register_script(_RECOVER)

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """Redis's failures as the platform's: the caller answers 503, the dispatcher retries."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ServiceUnavailable(
                f"the queue at {self._where} cannot be reached: {exc}"
            ) from exc
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"the queue at {self._where} failed: {exc}") from exc

    def put(self, invocation: AsyncInvocation) -> None:
        """Queue a request. A second put of the same request id (a retry whose answer was lost)
        changes nothing."""
        if invocation.status is not AsyncInvocationStatus.IN_QUEUE:
            raise ValueError(f"put() takes a request InQueue, not {invocation.status}")
        keys = self._keys
        endpoint_key = invocation.endpoint_name.lower()
        with self._reaching():
            self._put(
                keys=[
                    keys.stream(endpoint_key),
                    keys.requests,
                    keys.listing(endpoint_key),
                    keys.record(invocation.request_id),
                    keys.inference(invocation.inference_id),
                    keys.endpoints,
                    keys.seq,
                ],
                args=[
                    GROUP,
                    invocation.request_id,
                    invocation.model_dump_json(),
                    endpoint_key,
                    invocation.endpoint_name,
                    repr(invocation.enqueued_time.timestamp()),
                    keys.records,
                ],
            )

    def claim(self, endpoint_name: str, limit: int, now: float) -> list[AsyncInvocation]:
        if limit <= 0:
            return []
        endpoint_key = endpoint_name.lower()
        with self._reaching():
            claimed: list[list[Any]] = self._claim(
                keys=[self._keys.stream(endpoint_key), self._keys.leases(endpoint_key)],
                args=[
                    GROUP,
                    CONSUMER,
                    limit,
                    repr(now),
                    repr(now + LEASE_SECONDS),
                    self._keys.records,
                ],
            )
        started = datetime.fromtimestamp(now, UTC)
        invocations = []
        for doc, attempts in claimed:
            invocation = AsyncInvocation.model_validate_json(doc)
            invocation.status = AsyncInvocationStatus.IN_PROGRESS
            invocation.attempts = int(attempts)
            invocation.start_time = started
            invocations.append(invocation)
        return invocations

    def _entries(self, request_ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """(request id, endpoint key, stream entry id) of the requests that have a record."""
        pipe = self._redis.pipeline(transaction=False)
        for request_id in request_ids:
            pipe.hmget(self._keys.record(request_id), ["endpoint", "entry"])
        found = []
        for request_id, (endpoint_key, entry) in zip(request_ids, pipe.execute(), strict=True):
            if endpoint_key is not None and entry is not None:
                found.append((request_id, endpoint_key, entry))
        return found

    def renew(self, request_ids: Sequence[str], now: float) -> None:
        if not request_ids:
            return
        with self._reaching():
            entries = self._entries(request_ids)
            pipe = self._redis.pipeline(transaction=False)
            for _, endpoint_key, entry in entries:
                # XX: only a lease that still exists (a request still under way) is extended.
                pipe.zadd(self._keys.leases(endpoint_key), {entry: now + LEASE_SECONDS}, xx=True)
            pipe.execute()

    def finish(self, invocation: AsyncInvocation) -> None:
        if not invocation.status.finished:
            raise ValueError(f"finish() takes a finished request, not {invocation.status}")
        keys = self._keys
        record = keys.record(invocation.request_id)
        with self._reaching():
            entries = self._entries([invocation.request_id])
            if not entries:
                return
            _, endpoint_key, entry = entries[0]
            stream = keys.stream(endpoint_key)
            start = invocation.start_time
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(
                record,
                mapping={
                    "doc": invocation.model_dump_json(),
                    "status": invocation.status.value,
                    "attempts": invocation.attempts,
                    "start": "" if start is None else repr(start.timestamp()),
                },
            )
            pipe.xack(stream, GROUP, entry)
            pipe.xdel(stream, entry)
            pipe.zrem(keys.leases(endpoint_key), entry)
            pipe.expire(record, RETENTION_SECONDS)
            pipe.expire(keys.inference(invocation.inference_id), RETENTION_SECONDS)
            pipe.execute()

    def release(self, request_ids: Sequence[str]) -> None:
        """Give requests back: each stays in the PEL at its place, without a lease, so the next
        claim takes it before any request queued after it."""
        if not request_ids:
            return
        with self._reaching():
            entries = self._entries(request_ids)
            pipe = self._redis.pipeline(transaction=False)
            for request_id, endpoint_key, entry in entries:
                self._release(
                    keys=[self._keys.leases(endpoint_key), self._keys.record(request_id)],
                    args=[entry],
                    client=pipe,
                )
            pipe.execute()

    def recover(self) -> int:
        """Every request this namespace's consumer held goes back to its place in the queue."""
        recovered = 0
        with self._reaching():
            for endpoint_key in cast(list[str], self._redis.hkeys(self._keys.endpoints)):
                recovered += int(
                    self._recover(
                        keys=[self._keys.stream(endpoint_key), self._keys.leases(endpoint_key)],
                        args=[GROUP, CONSUMER, self._keys.records],
                    )
                )
        return recovered

    def backlogs(self) -> dict[str, Backlog]:
        with self._reaching():
            names = cast(dict[str, str], self._redis.hgetall(self._keys.endpoints))
            pipe = self._redis.pipeline(transaction=False)
            for endpoint_key in names:
                pipe.xlen(self._keys.stream(endpoint_key))
                pipe.xrange(self._keys.stream(endpoint_key), count=1)
                pipe.zcard(self._keys.leases(endpoint_key))
            answers = pipe.execute()
        backlogs = {}
        for index, name in enumerate(names.values()):
            size, first, in_progress = answers[3 * index : 3 * index + 3]
            if size:
                oldest = float(first[0][1]["enqueued"]) if first else None
                backlogs[name] = Backlog(int(size), oldest, int(in_progress))
        return backlogs

    def _records(self, request_ids: Sequence[str]) -> list[dict[str, str]]:
        """The records of the requests, ``{}`` for those that expired."""
        pipe = self._redis.pipeline(transaction=False)
        for request_id in request_ids:
            pipe.hgetall(self._keys.record(request_id))
        return list(pipe.execute())

    def get(self, inference_id: str, endpoint_name: str | None = None) -> AsyncInvocation | None:
        with self._reaching():
            candidates = cast(
                list[str], self._redis.zrange(self._keys.inference(inference_id), 0, -1)
            )
            # The name may be a request id; the newest of all is the one with the highest seq.
            records = self._records([*candidates, inference_id])
        newest = None
        for record in records:
            if not record or (
                endpoint_name is not None and record["endpoint"] != endpoint_name.lower()
            ):
                continue
            if newest is None or int(record["seq"]) > int(newest["seq"]):
                newest = record
        return None if newest is None else _invocation(newest)

    def page(self, query: InvocationQuery) -> tuple[list[AsyncInvocation], str | None]:
        token = query.next_token
        if token is not None and not token.isdigit():
            raise ValidationError(f"NextToken {token} was not handed out here.")
        if query.limit <= 0:
            return [], None
        listing = (
            self._keys.requests
            if query.endpoint_name is None
            else self._keys.listing(query.endpoint_name.lower())
        )
        below = "+inf" if token is None else f"({token}"
        found: list[tuple[int, AsyncInvocation]] = []
        with self._reaching():
            while True:
                batch = cast(
                    list[tuple[str, float]],
                    self._redis.zrevrangebyscore(
                        listing, below, "-inf", start=0, num=_SCAN, withscores=True
                    ),
                )
                if not batch:
                    return [invocation for _, invocation in found], None
                ids = [request_id for request_id, _ in batch]
                gone = []
                for (request_id, seq), record in zip(batch, self._records(ids), strict=True):
                    if not record:
                        gone.append(request_id)
                        continue
                    invocation = _invocation(record)
                    if query.status is not None and invocation.status is not query.status:
                        continue
                    if len(found) == query.limit:
                        return [invocation for _, invocation in found], str(found[-1][0])
                    found.append((int(seq), invocation))
                if gone:
                    self._redis.zrem(listing, *gone)
                below = f"({int(batch[-1][1])}"

    def prune(self, now: float) -> int:
        """Finished records expire by themselves (a TTL of RETENTION_SECONDS)."""
        return 0

    def close(self) -> None:
        self._redis.close()
