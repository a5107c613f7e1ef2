"""The shadow report: how a shadow variant's answers compare with production's (beyond SageMaker).

The router mirrors a sample of an endpoint's invocations to its shadow variant and hands each
outcome to a :class:`ShadowTally` (one per endpoint); this module only counts and compares, with
no I/O. Per (production variant, shadow variant) pair it keeps:

- counts that add up: ``sampled = skipped + compared + production_errors + shadow_errors``, where
  each sampled request whose outcome is known lands in exactly one of them, in this order: the copy
  was ``skipped`` (too many copies in flight), production failed, the shadow failed, or both
  answered and their outputs were ``compared``;
- the difference of each compared pair (:func:`difference`: 0.0 for equal outputs, the largest
  absolute numeric difference for numeric JSON or CSV outputs, +inf otherwise), over the last
  ``window`` pairs, so the agreement rate can be computed for any tolerance when reporting;
- each side's model latency over the last ``window`` sampled requests;
- the most recent disagreements, bodies truncated.

:meth:`ShadowTally.report` turns it into a :class:`ShadowReport`, a shape with a JSON form
(PascalCase, as every Shipway API shape).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from shipway.domain.errors import NotFound, ShipwayError, ValidationError
from shipway.domain.shape import Shape

__all__ = [
    "Answer",
    "Disagreement",
    "LatencySummary",
    "ShadowPairReport",
    "ShadowReport",
    "ShadowReportNotFound",
    "ShadowTally",
    "difference",
]

MAX_PARSE_BYTES = 1 << 20
"""Outputs larger than this are compared byte for byte only (parsing runs on the event loop)."""
EXCERPT_BYTES = 512
"""How much of a body a disagreement example keeps."""

_INF = math.inf


# --- comparing two outputs -------------------------------------------------------------------


def difference(
    production: bytes, shadow: bytes, *, max_parse_bytes: int = MAX_PARSE_BYTES
) -> float:
    """How far apart two outputs are: 0.0 when equal, +inf when they cannot be compared.

    Equal bytes are 0.0. Otherwise, when both parse as JSON, or both as CSV numbers, and have
    the same structure (lists of the same length, objects with the same keys, equal strings,
    booleans and nulls), the largest absolute difference between corresponding numbers; any
    other pair (different structure, text, NaN against a number...) is +inf.
    """
    if production == shadow:
        return 0.0
    if len(production) > max_parse_bytes or len(shadow) > max_parse_bytes:
        return _INF
    for parse in (_json, _csv):
        left = parse(production)
        if left is _UNPARSED:
            continue
        right = parse(shadow)
        if right is _UNPARSED:
            continue
        try:
            return _distance(left, right)
        except RecursionError:
            return _INF
    return _INF


_UNPARSED: Any = object()


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _UNPARSED


def _csv(body: bytes) -> Any:
    """Rows of floats from header-less CSV, or ``_UNPARSED`` when a cell is not a number."""
    try:
        text = body.decode("utf-8")
        rows = [
            [float(cell) for cell in line.split(",")] for line in text.splitlines() if line.strip()
        ]
    except ValueError:  # not UTF-8 (UnicodeDecodeError is a ValueError) or not a number
        return _UNPARSED
    return rows if rows else _UNPARSED


def _distance(left: Any, right: Any) -> float:
    if isinstance(left, bool) or isinstance(right, bool) or left is None or right is None:
        return 0.0 if left is right else _INF
    if isinstance(left, int | float) and isinstance(right, int | float):
        if left == right or (math.isnan(left) and math.isnan(right)):
            return 0.0
        gap = abs(float(left) - float(right))
        return _INF if math.isnan(gap) else gap  # NaN against a number
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return _INF
        return _largest(_distance(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) and isinstance(right, dict):
        if left.keys() != right.keys():
            return _INF
        return _largest(_distance(value, right[key]) for key, value in left.items())
    if isinstance(left, str) and isinstance(right, str):
        return 0.0 if left == right else _INF
    return _INF


def _largest(gaps: Iterable[float]) -> float:
    largest = 0.0
    for gap in gaps:
        if gap > largest:
            largest = gap
            if gap == _INF:
                break
    return largest


# --- what the router hands over --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One side's outcome for a mirrored request.

    ``status`` is the model's HTTP status, None when there was no answer (timeout, lost
    connection, no live instance); ``seconds`` the model latency, None when nothing was sent.
    """

    status: int | None
    body: bytes = b""
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400


# --- the report's shapes ---------------------------------------------------------------------


class LatencySummary(Shape):
    """Model latency in milliseconds over the requests counted (nearest-rank percentiles)."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float


class Disagreement(Shape):
    """One compared pair whose outputs differ; bodies are truncated excerpts."""

    time: datetime
    difference: float | None
    """The largest absolute numeric difference; None when the outputs are not comparable."""
    request: str
    production_output: str
    shadow_output: str


class ShadowPairReport(Shape):
    production_variant: str
    shadow_variant: str
    sampling_fraction: float | None = None
    """The share of requests mirrored to the shadow now (None: the shadow is not routed)."""
    sampled: int
    skipped: int
    compared: int
    production_errors: int
    shadow_errors: int
    window: int
    """Compared pairs the agreement figures cover (the most recent ones)."""
    agreeing: int
    """Pairs in the window whose difference is within the tolerance."""
    agreement_rate: float | None
    """``agreeing / window``; None before anything was compared."""
    max_difference: float | None
    """The largest finite difference in the window (None when there is none)."""
    incomparable: int
    """Pairs in the window whose outputs differ and are not numerically comparable."""
    production_latency: LatencySummary | None
    shadow_latency: LatencySummary | None
    disagreements: list[Disagreement]
    """The most recent pairs differing by more than the tolerance, newest last."""


class ShadowReport(Shape):
    endpoint_name: str
    since: datetime
    """When this report started (the shadow variant set was last changed or reset)."""
    tolerance: float
    in_flight: int
    """Mirrored copies still under way (not counted yet)."""
    max_in_flight: int
    pairs: list[ShadowPairReport]


class ShadowReportNotFound(NotFound):
    """The endpoint has no shadow report: it is unknown or has no shadow variant in service."""

    def __init__(self, endpoint_name: str) -> None:
        ShipwayError.__init__(
            self,
            f"Endpoint {endpoint_name} has no shadow report: it is not in service with a "
            "shadow variant (ShadowProductionVariants).",
        )
        self.kind = "shadow report"
        self.name = endpoint_name
        self.arn = None


# --- the tally -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Example:
    time: datetime
    difference: float
    request: bytes
    production: bytes
    shadow: bytes


@dataclass(slots=True)
class _Pair:
    window: int
    examples: int
    skipped: int = 0
    compared: int = 0
    production_errors: int = 0
    shadow_errors: int = 0
    differences: deque[float] = field(init=False)
    production_seconds: deque[float] = field(init=False)
    shadow_seconds: deque[float] = field(init=False)
    disagreements: deque[_Example] = field(init=False)

    def __post_init__(self) -> None:
        self.differences = deque(maxlen=self.window)
        self.production_seconds = deque(maxlen=self.window)
        self.shadow_seconds = deque(maxlen=self.window)
        self.disagreements = deque(maxlen=self.examples)

    @property
    def sampled(self) -> int:
        return self.skipped + self.compared + self.production_errors + self.shadow_errors


class ShadowTally:
    """The running comparison of one endpoint's shadow variants against its production variants.

    ``window`` bounds the differences and latencies kept per pair, ``examples`` the
    disagreements; ``excerpt_bytes`` how much of each body an example keeps.
    """

    def __init__(
        self,
        endpoint_name: str,
        since: datetime,
        *,
        window: int = 10_000,
        examples: int = 5,
        excerpt_bytes: int = EXCERPT_BYTES,
    ) -> None:
        if window < 1 or examples < 0:
            raise ValueError("window must be positive and examples not negative")
        self.endpoint_name = endpoint_name
        self.since = since
        self._window = window
        self._examples = examples
        self._excerpt_bytes = excerpt_bytes
        self._pairs: dict[tuple[str, str], _Pair] = {}

    def expect(self, production_variant: str, shadow_variant: str) -> None:
        """Show the pair in reports even before its first sample."""
        self._pair(production_variant, shadow_variant)

    def add(
        self,
        production_variant: str,
        shadow_variant: str,
        request: bytes,
        production: Answer,
        shadow: Answer | None,
        at: datetime,
    ) -> None:
        """Count one sampled request; ``shadow`` is None when its copy was skipped."""
        pair = self._pair(production_variant, shadow_variant)
        if production.seconds is not None:
            pair.production_seconds.append(production.seconds)
        if shadow is None:
            pair.skipped += 1
            return
        if shadow.seconds is not None:
            pair.shadow_seconds.append(shadow.seconds)
        if not production.ok:
            pair.production_errors += 1
        elif not shadow.ok:
            pair.shadow_errors += 1
        else:
            pair.compared += 1
            gap = difference(production.body, shadow.body)
            pair.differences.append(gap)
            if gap > 0 and self._examples:
                keep = self._excerpt_bytes + 1  # one more byte says it was cut
                example = _Example(
                    at, gap, request[:keep], production.body[:keep], shadow.body[:keep]
                )
                pair.disagreements.append(example)

    def report(
        self,
        tolerance: float = 0.0,
        *,
        in_flight: int = 0,
        max_in_flight: int = 0,
        sampling: Mapping[str, float] | None = None,
    ) -> ShadowReport:
        """The report as of now; pairs agree when their difference is at most ``tolerance``.

        ``sampling`` gives each shadow variant's current sampling fraction, by name.
        """
        if not tolerance >= 0:  # also refuses NaN
            raise ValidationError(f"Tolerance must be a number of at least 0, not {tolerance}.")
        sampling = sampling or {}
        pairs = [
            self._pair_report(production, shadow, pair, tolerance, sampling.get(shadow))
            for (production, shadow), pair in sorted(self._pairs.items())
        ]
        return ShadowReport(
            endpoint_name=self.endpoint_name,
            since=self.since,
            tolerance=tolerance,
            in_flight=in_flight,
            max_in_flight=max_in_flight,
            pairs=pairs,
        )

    def _pair(self, production_variant: str, shadow_variant: str) -> _Pair:
        key = (production_variant, shadow_variant)
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = _Pair(self._window, self._examples)
        return pair

    def _pair_report(
        self,
        production: str,
        shadow: str,
        pair: _Pair,
        tolerance: float,
        fraction: float | None,
    ) -> ShadowPairReport:
        differences = pair.differences
        agreeing = sum(1 for gap in differences if gap <= tolerance)
        finite = [gap for gap in differences if gap != _INF]
        return ShadowPairReport(
            production_variant=production,
            shadow_variant=shadow,
            sampling_fraction=fraction,
            sampled=pair.sampled,
            skipped=pair.skipped,
            compared=pair.compared,
            production_errors=pair.production_errors,
            shadow_errors=pair.shadow_errors,
            window=len(differences),
            agreeing=agreeing,
            agreement_rate=agreeing / len(differences) if differences else None,
            max_difference=max(finite) if finite else None,
            incomparable=len(differences) - len(finite),
            production_latency=_latency(pair.production_seconds),
            shadow_latency=_latency(pair.shadow_seconds),
            disagreements=[
                Disagreement(
                    time=example.time,
                    difference=None if example.difference == _INF else example.difference,
                    request=self._excerpt(example.request),
                    production_output=self._excerpt(example.production),
                    shadow_output=self._excerpt(example.shadow),
                )
                for example in pair.disagreements
                if example.difference > tolerance
            ],
        )

    def _excerpt(self, body: bytes) -> str:
        limit = self._excerpt_bytes
        text = body[:limit].decode("utf-8", "replace")
        return text + "…" if len(body) > limit else text


def _latency(seconds: Iterable[float]) -> LatencySummary | None:
    values = sorted(seconds)
    if not values:
        return None
    count = len(values)

    def rank(p: float) -> float:
        return values[max(0, math.ceil(p / 100 * count) - 1)] * 1000.0

    return LatencySummary(
        count=count, mean=sum(values) / count * 1000.0, p50=rank(50), p90=rank(90), p99=rank(99)
    )
