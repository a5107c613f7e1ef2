"""The queue of asynchronous requests: a small interface with one implementation per backend.

- :class:`~shipway.store.sql_queue.SqlInvocationQueue` — a table of the metadata store: SQLite
  by default, PostgreSQL (claims with ``FOR UPDATE SKIP LOCKED``) when the store is PostgreSQL.
- :class:`~shipway.store.redis_queue.RedisInvocationQueue` — Redis Streams, one stream and
  consumer group per endpoint, when ``SHIPWAY_QUEUE_URL=redis://...``.

Delivery is at least once: a request is *claimed* with a lease its dispatcher renews while it
runs; a dispatcher that stops (a server killed) stops renewing, and the request is claimed again
once the lease runs out, or at once when the server restarts (:meth:`recover`: one server owns
its data dir, so whatever it held when it stopped is free). The dispatcher makes the outcome
exactly once where the caller sees it: a redelivered request writes the same output object and
publishes its notification under the same message id, which SNS delivers once.

Every method is synchronous (the dispatcher calls them from worker threads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.engine import Engine

from shipway.domain.async_inference import AsyncInvocation, AsyncInvocationStatus

__all__ = [
    "LEASE_SECONDS",
    "RETENTION_SECONDS",
    "Backlog",
    "InvocationQuery",
    "InvocationQueue",
    "open_queue",
]

LEASE_SECONDS = 30.0
"""How long a claim holds without renewal; the dispatcher renews every third of it."""
RETENTION_SECONDS = 7 * 24 * 3600
"""How long a finished request's record is kept (what ``shipway async show`` reads)."""


@dataclass(frozen=True)
class Backlog:
    """An endpoint's requests queued or under way, and when the oldest of them was queued."""

    size: int = 0
    oldest_enqueued: float | None = None
    """Epoch seconds; None with an empty backlog."""
    in_progress: int = 0


@dataclass(frozen=True)
class InvocationQuery:
    endpoint_name: str | None = None
    status: AsyncInvocationStatus | None = None
    limit: int = 50
    next_token: str | None = None
    """The token the previous page handed out (newest first)."""


class InvocationQueue(Protocol):
    def put(self, invocation: AsyncInvocation) -> None:
        """Queue a request (durable on return)."""
        ...

    def claim(self, endpoint_name: str, limit: int, now: float) -> list[AsyncInvocation]:
        """Take up to ``limit`` of the endpoint's requests, oldest first: InQueue ones and
        InProgress ones whose lease ran out. They come back InProgress, ``attempts`` counted
        and ``start_time`` set, leased for :data:`LEASE_SECONDS`."""
        ...

    def renew(self, request_ids: Sequence[str], now: float) -> None:
        """Extend the leases of requests still under way."""
        ...

    def finish(self, invocation: AsyncInvocation) -> None:
        """Record a request's outcome (Completed or Failed): it is never claimed again."""
        ...

    def release(self, request_ids: Sequence[str]) -> None:
        """Give requests back unfinished (a stopping server's): InQueue again, in their place."""
        ...

    def recover(self) -> int:
        """At a server's start: every request it held when it stopped goes back to the queue.
        Returns how many."""
        ...

    def backlogs(self) -> dict[str, Backlog]:
        """Every endpoint with a backlog (queued or in progress), by endpoint name."""
        ...

    def get(self, inference_id: str, endpoint_name: str | None = None) -> AsyncInvocation | None:
        """The newest request with that InferenceId (or request id)."""
        ...

    def page(self, query: InvocationQuery) -> tuple[list[AsyncInvocation], str | None]:
        """Requests, newest first, and the token of the next page."""
        ...

    def prune(self, now: float) -> int:
        """Forget the records of requests finished more than :data:`RETENTION_SECONDS` before
        ``now``; returns how many went (a backend whose records expire by themselves: 0)."""
        ...

    def close(self) -> None: ...


def open_queue(queue_url: str | None, engine: Engine, *, namespace: str) -> InvocationQueue:
    """The queue ``queue_url`` names (``redis://...``), or the metadata store's table."""
    if queue_url is None:
        from shipway.store.sql_queue import SqlInvocationQueue

        return SqlInvocationQueue(engine)
    if queue_url.startswith(("redis://", "rediss://", "unix://")):
        from shipway.store.redis_queue import RedisInvocationQueue

        return RedisInvocationQueue(queue_url, namespace=namespace)
    from shipway.domain.errors import ValidationError

    raise ValidationError(
        f"SHIPWAY_QUEUE_URL {queue_url} is not a queue Shipway knows; use redis://host:port/db, "
        "or leave it unset for the metadata store's own table."
    )
