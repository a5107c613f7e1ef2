"""Adaptive batching: merge concurrent requests into one predict call, give each caller its rows.

One predict call on a small model costs about the same for 1 row as for 100, so merging the
requests that arrive together is nearly free throughput. The batcher never waits for a batch to
fill unless told to (``max_delay``): while one predict runs, new requests queue, and the next call
takes everything queued (up to ``max_batch_size`` requests). An idle model answers a lone request
at once, with no added latency.

Requests merge only when their rows fit together (same number of columns and kind of dtype, or
the same DataFrame columns). If a merged call fails, or returns a number of predictions that does
not match the rows, each request of that batch is predicted alone, so one bad request never fails
another.

Predict calls run on the event loop while they are short (a moving average under
``inline_threshold``) and on one dedicated thread otherwise, so a slow model never stops the
server from answering health checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["AdaptiveBatcher", "count_rows"]

log = logging.getLogger(__name__)

Predict = Callable[[Any], Any]


def count_rows(rows: Any) -> int:
    return int(rows.shape[0]) if hasattr(rows, "shape") else len(rows)


def _group_key(rows: Any) -> Hashable:
    if isinstance(rows, np.ndarray):
        return ("array", rows.shape[1:], rows.dtype.kind)
    columns = getattr(rows, "columns", None)
    if columns is not None:
        return ("frame", tuple(columns))
    return ("other", id(rows))  # never merged


def _concat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=0)
    import pandas as pd

    return pd.concat(parts, axis=0, ignore_index=True)


class _Request:
    __slots__ = ("future", "rows")

    def __init__(self, rows: Any, future: asyncio.Future[Any]) -> None:
        self.rows = rows
        self.future = future


class AdaptiveBatcher:
    def __init__(
        self,
        predict: Predict,
        *,
        max_batch_size: int = 64,
        max_delay: float = 0.0,
        inline_threshold: float = 0.002,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max(1, max_batch_size)
        self.max_delay = max(0.0, max_delay)
        self.inline_threshold = inline_threshold
        self._queue: deque[_Request] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._average: float | None = None  # moving average of one predict call, seconds
        self.calls = 0
        """Predict calls made (observable: merged requests make fewer calls than requests)."""

    async def submit(self, rows: Any) -> Any:
        """Queue ``rows`` for prediction and return this request's predictions."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run(), name="adaptive-batcher")
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Request(rows, future))
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                await self._gather()
                batch = [
                    self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch_size))
                ]
                batch = [r for r in batch if not r.future.done()]  # callers that gave up
                if batch:
                    try:
                        await self._serve(batch)
                    except Exception as exc:  # a broken batch must not stop the loop
                        log.exception("batch failed")
                        for request in batch:
                            if not request.future.done():
                                request.future.set_exception(exc)

    async def _gather(self) -> None:
        """Let requests that are already arriving join this batch."""
        if len(self._queue) >= self.max_batch_size:
            return
        if self.max_delay > 0:
            deadline = time.monotonic() + self.max_delay
            while len(self._queue) < self.max_batch_size and time.monotonic() < deadline:
                await asyncio.sleep(min(0.0005, self.max_delay))
        else:
            await asyncio.sleep(0)

    async def _serve(self, batch: list[_Request]) -> None:
        groups: dict[Hashable, list[_Request]] = {}
        for request in batch:
            groups.setdefault(_group_key(request.rows), []).append(request)
        for group in groups.values():
            if len(group) == 1:
                await self._serve_one(group[0])
                continue
            counts = [count_rows(r.rows) for r in group]
            try:
                predictions = np.asarray(await self._call(_concat([r.rows for r in group])))
            except Exception:
                log.debug("merged predict failed; predicting each request alone", exc_info=True)
                predictions = None
            if predictions is None or predictions.ndim == 0 or predictions.shape[0] != sum(counts):
                for request in group:
                    await self._serve_one(request)
                continue
            offsets = np.cumsum(counts)[:-1]
            for request, part in zip(group, np.split(predictions, offsets), strict=True):
                if not request.future.done():
                    request.future.set_result(part)

    async def _serve_one(self, request: _Request) -> None:
        try:
            result = await self._call(request.rows)
        except Exception as exc:
            if not request.future.done():
                request.future.set_exception(exc)
            return
        if not request.future.done():
            request.future.set_result(result)

    async def _call(self, rows: Any) -> Any:
        started = time.perf_counter()
        self.calls += 1
        if self._average is not None and self._average < self.inline_threshold:
            result = self._predict(rows)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._thread, self._predict, rows)
        elapsed = time.perf_counter() - started
        self._average = elapsed if self._average is None else 0.8 * self._average + 0.2 * elapsed
        return result
