"""A periodic task: one call every interval, in an asyncio task that never dies.

The alarm evaluator, the autoscaler and the samplers of instance usage and of requests in
flight each run one. A call that raises is logged and the next goes on at its time; ``close``
stops after the call under way. Calls that read the store or ``/proc`` run in a worker thread
(``thread=True``, the default), so the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

__all__ = ["Periodic"]

log = logging.getLogger(__name__)


class Periodic:
    def __init__(
        self, what: str, call: Callable[[], object], interval: float, *, thread: bool = True
    ) -> None:
        """``what`` names the call in the log ("alarm evaluation"); the first call is made at
        :meth:`start`, then one every ``interval`` seconds."""
        self._what = what
        self._call = call
        self._interval = interval
        self._thread = thread
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._what)

    async def close(self) -> None:
        """Stop after the call under way, if any (closing twice is harmless)."""
        if self._task is None or self._stopping is None:
            return
        self._stopping.set()
        await self._task
        self._task = None

    async def _run(self) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                if self._thread:
                    await asyncio.to_thread(self._call)
                else:
                    self._call()
            except Exception:
                log.exception("%s failed; trying again in %.1f s", self._what, self._interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
