"""The asynchronous request queue as a table of the metadata store (SQLite or PostgreSQL).

One row per request: the columns the queue orders, claims and pages on, and ``doc``, the
:class:`~shipway.domain.async_inference.AsyncInvocation` as JSON. A claim is one transaction
that selects the oldest claimable rows and marks them InProgress with a lease; on PostgreSQL
the select takes its rows ``FOR UPDATE SKIP LOCKED``, so dispatchers sharing the database never
take the same request and never wait for each other. SQLite serialises writers, and the claim
takes its write lock before the read (``BEGIN IMMEDIATE``).

Puts and finishes are group-committed: callers that arrive while a transaction is being
written wait for the next one, which writes them all (one commit for many requests under
load, and still durable when each call returns).

Finished requests stay as the record ``shipway async show`` reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shipway.domain.async_inference import AsyncInvocation, AsyncInvocationStatus
from shipway.domain.errors import ValidationError
from shipway.store import schema
from shipway.store.invocation_queue import (
    LEASE_SECONDS,
    RETENTION_SECONDS,
    Backlog,
    InvocationQuery,
)
from shipway.store.transactions import writing

__all__ = ["SqlInvocationQueue"]

_T = schema.async_invocations
_QUEUED = AsyncInvocationStatus.IN_QUEUE.value
_RUNNING = AsyncInvocationStatus.IN_PROGRESS.value


_COLUMNS = (_T.c.status, _T.c.attempts, _T.c.started, _T.c.doc)


def _load(status: str, attempts: int, started: float | None, doc: str) -> AsyncInvocation:
    """A row's request: its status, attempts and start time are the columns' (a claim, a
    release or a recovery changes them without rewriting the document)."""
    invocation = AsyncInvocation.model_validate_json(doc)
    invocation.status = AsyncInvocationStatus(status)
    invocation.attempts = attempts
    if started is not None:
        invocation.start_time = datetime.fromtimestamp(started, UTC)
    return invocation


T = TypeVar("T")


class _Waiter:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class _GroupCommit(Generic[T]):
    """Writes the items of concurrent callers in one transaction: the first caller writes
    everything pending, again and again until nothing is; the others wait for the transaction
    that holds theirs (and get its error, if it failed)."""

    def __init__(self, engine: Engine, write: Callable[[Connection, list[T]], Any]) -> None:
        self._engine = engine
        self._write = write
        self._lock = threading.Lock()
        self._pending: list[tuple[T, _Waiter]] = []
        self._writing = False

    def __call__(self, item: T) -> None:
        waiter = _Waiter()
        with self._lock:
            self._pending.append((item, waiter))
            leading = not self._writing
            self._writing = True
        if leading:
            self._drain()
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._writing = False
                    return
            error: BaseException | None = None
            try:
                with self._engine.begin() as conn:
                    self._write(conn, [item for item, _ in batch])
            except BaseException as exc:  # every caller of the batch hears of it
                error = exc
            for _, waiter in batch:
                waiter.error = error
                waiter.done.set()


class SqlInvocationQueue:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._put = _GroupCommit(engine, _insert)
        self._finish = _GroupCommit(engine, _record_outcomes)

    def put(self, invocation: AsyncInvocation) -> None:
        self._put(invocation)

    def claim(self, endpoint_name: str, limit: int, now: float) -> list[AsyncInvocation]:
        if limit <= 0:
            return []
        # the IN narrows the index to open requests (finished ones are never read); the OR
        # then keeps the queued ones and the running ones whose lease ran out
        claimable = sa.and_(
            _T.c.status.in_([_QUEUED, _RUNNING]),
            sa.or_(_T.c.status == _QUEUED, _T.c.lease_until < now),
        )
        query = (
            sa.select(_T.c.id, _T.c.attempts, _T.c.doc)
            .where(_T.c.endpoint_key == endpoint_name.lower(), claimable)
            .order_by(_T.c.id)
            .limit(limit)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        with writing(self._engine) as conn:
            rows = conn.execute(query).all()
            if rows:
                conn.execute(
                    _T.update()
                    .where(_T.c.id.in_([row_id for row_id, _, _ in rows]))
                    .values(
                        status=_RUNNING,
                        lease_until=now + LEASE_SECONDS,
                        attempts=_T.c.attempts + 1,
                        started=now,
                    )
                )
        return [_load(_RUNNING, attempts + 1, now, doc) for _, attempts, doc in rows]

    def renew(self, request_ids: Sequence[str], now: float) -> None:
        if not request_ids:
            return
        with self._engine.begin() as conn:
            conn.execute(
                _T.update()
                .where(_T.c.request_id.in_(list(request_ids)), _T.c.status == _RUNNING)
                .values(lease_until=now + LEASE_SECONDS)
            )

    def finish(self, invocation: AsyncInvocation) -> None:
        if not invocation.status.finished:
            raise ValueError(f"finish() takes a finished request, not {invocation.status}")
        self._finish(invocation)

    def release(self, request_ids: Sequence[str]) -> None:
        if not request_ids:
            return
        with self._engine.begin() as conn:
            conn.execute(
                _T.update()
                .where(_T.c.request_id.in_(list(request_ids)), _T.c.status == _RUNNING)
                .values(status=_QUEUED, lease_until=None)
            )

    def recover(self) -> int:
        with self._engine.begin() as conn:
            result = conn.execute(
                _T.update().where(_T.c.status == _RUNNING).values(status=_QUEUED, lease_until=None)
            )
        return int(result.rowcount or 0)

    def backlogs(self) -> dict[str, Backlog]:
        waiting = sa.case((_T.c.status == _RUNNING, 1), else_=0)
        query = (
            sa.select(
                _T.c.endpoint_key,
                sa.func.count(),
                sa.func.min(_T.c.enqueued),
                sa.func.sum(waiting),
            )
            .where(_T.c.status.in_([_QUEUED, _RUNNING]))
            .group_by(_T.c.endpoint_key)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
            names = dict(
                conn.execute(
                    sa.select(schema.endpoints.c.name_key, schema.endpoints.c.name).where(
                        schema.endpoints.c.name_key.in_([r[0] for r in rows])
                    )
                ).all()
            )
        return {
            names.get(key, key): Backlog(int(size), float(oldest), int(running or 0))
            for key, size, oldest, running in rows
        }

    def get(self, inference_id: str, endpoint_name: str | None = None) -> AsyncInvocation | None:
        query = (
            sa.select(*_COLUMNS)
            .where(sa.or_(_T.c.inference_id == inference_id, _T.c.request_id == inference_id))
            .order_by(_T.c.id.desc())
            .limit(1)
        )
        if endpoint_name is not None:
            query = query.where(_T.c.endpoint_key == endpoint_name.lower())
        with self._engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else _load(*row)

    def page(self, query: InvocationQuery) -> tuple[list[AsyncInvocation], str | None]:
        select = sa.select(_T.c.id, *_COLUMNS).order_by(_T.c.id.desc()).limit(query.limit + 1)
        if query.endpoint_name is not None:
            select = select.where(_T.c.endpoint_key == query.endpoint_name.lower())
        if query.status is not None:
            select = select.where(_T.c.status == query.status.value)
        if query.next_token is not None:
            if not query.next_token.isdigit():
                raise ValidationError(f"NextToken {query.next_token} was not handed out here.")
            select = select.where(_T.c.id < int(query.next_token))
        with self._engine.connect() as conn:
            rows = conn.execute(select).all()
        token = str(rows[query.limit - 1][0]) if len(rows) > query.limit else None
        return [_load(*row[1:]) for row in rows[: query.limit]], token

    def prune(self, now: float) -> int:
        finished = [s.value for s in AsyncInvocationStatus if s.finished]
        with self._engine.begin() as conn:
            result = conn.execute(
                _T.delete().where(
                    _T.c.status.in_(finished), _T.c.enqueued < now - RETENTION_SECONDS
                )
            )
        return int(result.rowcount or 0)

    def close(self) -> None:
        """The engine is the metadata store's: it closes it."""


def _insert(conn: Connection, invocations: list[AsyncInvocation]) -> None:
    conn.execute(
        _T.insert(),
        [
            {
                "request_id": invocation.request_id,
                "attempts": invocation.attempts,
                "inference_id": invocation.inference_id,
                "endpoint_key": invocation.endpoint_name.lower(),
                "status": invocation.status.value,
                "enqueued": invocation.enqueued_time.timestamp(),
                "lease_until": None,
                "started": None,
                "doc": invocation.model_dump_json(),
            }
            for invocation in invocations
        ],
    )


def _record_outcomes(conn: Connection, invocations: list[AsyncInvocation]) -> None:
    for invocation in invocations:
        start = invocation.start_time
        conn.execute(
            _T.update()
            .where(_T.c.request_id == invocation.request_id)
            .values(
                status=invocation.status.value,
                lease_until=None,
                attempts=invocation.attempts,
                started=None if start is None else start.timestamp(),
                doc=invocation.model_dump_json(),
            )
        )
