"""Transforming one shard: its records read, sent to a model server, answers written in order.

The engine-independent heart of batch transform. An engine gives a ``send`` (one request body
to one instance's ``POST /invocations``, the answer's body back) and a part file; this reads
the shard's payloads (:mod:`shipway.batch.splitting`) in a worker thread, sends them one after
the other, and appends each answer to the part, assembled as the job says (``AssembleWith``
Line: each answer ends with a newline; None: bytes as they are) or, with DataProcessing, as the
joined and filtered records.

A request that fails is retried (``InvocationsMaxRetries``) when retrying can help: a timeout,
or the model answering 5xx. When it still fails and it carried several records, the record to
blame is found by halving: the first half is sent alone, and so on, so the FailureReason names
one record, not a payload of thousands.
"""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from shipway.batch.data_processing import DataProcessor
from shipway.batch.splitting import Payload, RecordTooLarge, payloads
from shipway.domain.errors import ShipwayError
from shipway.domain.transform_job import AssembleWith, BatchStrategy, SplitType
from shipway.store.locations import Locations

__all__ = [
    "InstanceLost",
    "RecordFailed",
    "RequestFailed",
    "Send",
    "ShardInput",
    "ShardResult",
    "ShardWork",
    "open_input",
    "transform_shard",
]


class RequestFailed(Exception):
    """The model server did not answer a request with 200."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, tuple[str, bool]]:
        return _request_failed, (self.message, self.retryable)


def _request_failed(message: str, retryable: bool) -> RequestFailed:
    return RequestFailed(message, retryable=retryable)


class InstanceLost(Exception):
    """The instance went away with the request (crashed, or stopped): the shard runs again
    elsewhere; no record is to blame."""


class RecordFailed(ShipwayError):
    """A record of the shard could not be transformed; ``record`` is its index in the shard
    (from 0)."""

    def __init__(self, message: str, record: int) -> None:
        super().__init__(message)
        self.record = record

    def __reduce__(self) -> tuple[type[RecordFailed], tuple[str, int]]:
        return RecordFailed, (self.message, self.record)  # it crosses from Ray actors


Send = Callable[[bytes], Awaitable[bytes]]
"""One request body to a model server; its answer's body, or :class:`RequestFailed` /
:class:`InstanceLost`."""


@dataclass(frozen=True)
class ShardWork:
    """What a shard's transform needs to know of its job."""

    split: SplitType
    strategy: BatchStrategy
    limit: int | None
    assemble_with: AssembleWith
    max_retries: int
    processor: DataProcessor | None = None
    """The job's DataProcessing, when it has any other than the defaults."""


@dataclass(frozen=True)
class ShardInput:
    """Where a shard's bytes are: ``[start, end)`` of the object at ``url`` (``end`` None: to
    its end), gzip-compressed or not. Plain data: it travels to Ray actors."""

    url: str
    start: int = 0
    end: int | None = None
    gzip: bool = False


def open_input(locations: Locations, shard: ShardInput) -> IO[bytes]:
    """The shard's object opened for reading, decompressed when gzipped (blocking)."""
    raw: IO[bytes] = locations.open(shard.url)
    return cast(IO[bytes], _Gzipped(raw)) if shard.gzip else raw


class _Gzipped(gzip.GzipFile):
    """A gzip stream that closes the object under it too."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


@dataclass(frozen=True)
class ShardResult:
    records: int
    part_size: int


async def transform_shard(
    work: ShardWork, locations: Locations, shard: ShardInput, send: Send, part: Path
) -> ShardResult:
    """Transform the shard into ``part`` (written anew, flushed to disk before this returns)."""
    reader = await asyncio.to_thread(open_input, locations, shard)
    start, end = shard.start, shard.end
    records = 0
    try:
        pieces: Iterator[Payload] = payloads(
            reader,
            start=start,
            end=end,
            split=work.split,
            strategy=work.strategy,
            limit=work.limit,
        )
        out = await asyncio.to_thread(open, part, "wb")
        try:
            while True:
                try:
                    payload = await asyncio.to_thread(next, pieces, None)
                except RecordTooLarge as exc:
                    raise RecordFailed(exc.message, exc.record) from None
                if payload is None:
                    break
                output = await _transform(work, payload, send)
                await asyncio.to_thread(out.write, output)
                records += payload.count
            await asyncio.to_thread(_sync, out)
            size = out.tell()
        finally:
            await asyncio.to_thread(out.close)
    finally:
        await asyncio.to_thread(reader.close)
    return ShardResult(records, size)


def _sync(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())


async def _transform(work: ShardWork, payload: Payload, send: Send) -> bytes:
    processor = work.processor
    records = payload.records() if processor is not None else []
    try:
        body = processor.model_input(records) if processor is not None else payload.body
        answer = await _send(work, body, send)
        if processor is None:
            if work.assemble_with is AssembleWith.LINE and not answer.endswith(b"\n"):
                return answer + b"\n"
            return answer
        return processor.joined(records, processor.outputs(answer, len(records)))
    except RequestFailed as exc:
        if payload.count == 1:
            raise RecordFailed(exc.message, payload.first) from None
        blamed, message = await _blame(work, payload, send, exc.message)
        raise RecordFailed(message, blamed) from None
    except ValueError as exc:  # an answer that does not match its records
        index = getattr(exc, "index", None)
        record = payload.first + (index if isinstance(index, int) else 0)
        raise RecordFailed(str(exc), record) from None


async def _send(work: ShardWork, body: bytes, send: Send) -> bytes:
    attempt = 0
    while True:
        try:
            return await send(body)
        except RequestFailed as exc:
            if not exc.retryable or attempt >= work.max_retries:
                raise
            attempt += 1
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))


async def _blame(work: ShardWork, payload: Payload, send: Send, message: str) -> tuple[int, str]:
    """The first record of a failed multi-record payload that fails alone (by halving), and
    its failure; the payload's first record when none fails alone."""
    records = payload.records()
    processor = work.processor
    low, high = 0, len(records)
    while high - low > 1:
        middle = (low + high) // 2
        part = records[low:middle]
        try:
            body = processor.model_input(part) if processor is not None else _body(work.split, part)
            await send(body)
        except (RequestFailed, ValueError) as exc:
            high, message = middle, getattr(exc, "message", str(exc))
            continue
        low = middle
    return payload.first + low, message


def _body(split: SplitType, records: list[bytes]) -> bytes:
    if split is SplitType.LINE:
        return b"\n".join(records) + b"\n"
    return b"".join(records)
