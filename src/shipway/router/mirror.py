"""Shadow traffic: sampled copies of an endpoint's invocations, sent to its shadow variants.

The router calls :meth:`Mirror.send` once production has answered (or failed) a request of an
endpoint that has shadow variants. For each shadow it draws whether to sample the request (the
fraction :meth:`~shipway.router.routing.EndpointRoute.sampling_fraction` gives) and, if so,
starts a task that sends the same body and headers to the shadow and hands both answers to the
endpoint's :class:`~shipway.monitor.shadow_report.ShadowTally`. The caller never waits for it,
and nothing a shadow does (an error, a timeout, no live instance, even a bug here) reaches the
caller: the task logs and counts it as a shadow error.

Copies are bounded: at most ``max_in_flight`` per endpoint; beyond that a sampled request is not
sent and is counted as skipped. The tally starts afresh when an endpoint's set of shadow variants
(names and models) changes, when the endpoint or its shadows leave the routing snapshot, and on
:meth:`Mirror.reset`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shipway.domain.clock import Clock
from shipway.monitor.shadow_report import Answer, ShadowReport, ShadowTally
from shipway.router.routing import EndpointRoute, Snapshot, VariantRoute

__all__ = ["Forward", "Mirror"]

log = logging.getLogger(__name__)

Forward = Callable[
    [EndpointRoute, VariantRoute, list[tuple[bytes, bytes]], bytes], Awaitable[Answer]
]
"""Send a copy (headers, body) to a shadow variant of an endpoint; its answer."""

_NO_ANSWER = Answer(None)

ShadowKey = tuple[tuple[str, str], ...]
"""An endpoint's shadow variants, as (variant name, model name) pairs."""


@dataclass(eq=False)
class _Shadowed:
    """An endpoint with shadow variants: its tally and how many copies are under way."""

    key: ShadowKey
    pairs: tuple[tuple[str, str], ...]
    tally: ShadowTally
    in_flight: int = 0


class Mirror:
    def __init__(
        self,
        forward: Forward,
        *,
        clock: Clock,
        rng: random.Random,
        max_in_flight: int = 64,
        window: int = 10_000,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self._forward = forward
        self._clock = clock
        self._rng = rng
        self._window = window
        self._states: dict[str, _Shadowed] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        """Copies under way, over every endpoint."""
        return len(self._tasks)

    def apply(self, snapshot: Snapshot) -> None:
        """Follow a new routing snapshot: keep, start afresh or drop each endpoint's tally."""
        states: dict[str, _Shadowed] = {}
        for endpoint in snapshot.endpoints:
            if not endpoint.shadows:
                continue
            name = endpoint.endpoint_name
            key = tuple((s.variant_name, s.model_name) for s in endpoint.shadows)
            pairs = tuple(
                (v.variant_name, s.variant_name)
                for v in endpoint.variants
                for s in endpoint.shadows
            )
            state = self._states.get(name)
            if state is None:
                state = _Shadowed(key, pairs, self._tally(name, pairs))
            elif state.key != key:
                state.key, state.pairs, state.tally = key, pairs, self._tally(name, pairs)
            else:
                state.pairs = pairs
                for production, shadow in pairs:
                    state.tally.expect(production, shadow)
            states[name] = state
        self._states = states

    def reset(self, endpoint_name: str) -> bool:
        """Start the endpoint's report afresh; False when it has none."""
        state = self._states.get(endpoint_name)
        if state is None:
            return False
        state.tally = self._tally(endpoint_name, state.pairs)
        return True

    def report(
        self, endpoint_name: str, tolerance: float, route: EndpointRoute | None
    ) -> ShadowReport | None:
        """The endpoint's shadow report (``route`` gives the current sampling fractions)."""
        state = self._states.get(endpoint_name)
        if state is None:
            return None
        sampling = (
            {} if route is None else {s.name: route.sampling_fraction(s) for s in route.shadows}
        )
        return state.tally.report(
            tolerance,
            in_flight=state.in_flight,
            max_in_flight=self.max_in_flight,
            sampling=sampling,
        )

    def send(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        production: Answer,
    ) -> None:
        """Mirror a request production ``variant`` answered (``production``) to sampled shadows.

        Returns at once: the copies run as tasks of the running event loop.
        """
        state = self._states.get(route.name)
        if state is None:  # a table applied without a snapshot through here: adopt it
            state = self._adopt(route)
        for shadow in route.shadows:
            fraction = route.sampling_fraction(shadow)
            if fraction <= 0.0 or (fraction < 1.0 and self._rng.random() >= fraction):
                continue
            tally = state.tally
            if state.in_flight >= self.max_in_flight:
                tally.add(variant.name, shadow.name, body, production, None, self._clock.now())
                continue
            state.in_flight += 1
            task = asyncio.get_running_loop().create_task(
                self._copy(state, tally, route, variant, shadow, headers, body, production)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the copies under way; cancel those still running after ``timeout`` s."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _copy(
        self,
        state: _Shadowed,
        tally: ShadowTally,
        route: EndpointRoute,
        variant: VariantRoute,
        shadow: VariantRoute,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        production: Answer,
    ) -> None:
        answer = _NO_ANSWER
        try:
            answer = await self._forward(route, shadow, headers, body)
        except Exception:  # the task's boundary: a copy must never fail anything else
            log.exception(
                "could not mirror a request of endpoint %s to its shadow variant %s",
                route.name,
                shadow.name,
            )
        finally:
            state.in_flight -= 1
        tally.add(variant.name, shadow.name, body, production, answer, self._clock.now())

    def _adopt(self, route: EndpointRoute) -> _Shadowed:
        pairs = tuple((v.name, s.name) for v in route.variants for s in route.shadows)
        key = tuple((s.name, s.model_name) for s in route.shadows)
        state = self._states[route.name] = _Shadowed(key, pairs, self._tally(route.name, pairs))
        return state

    def _tally(self, endpoint_name: str, pairs: tuple[tuple[str, str], ...]) -> ShadowTally:
        tally = ShadowTally(endpoint_name, self._clock.now(), window=self._window)
        for production, shadow in pairs:
            tally.expect(production, shadow)
        return tally
