"""Alarm evaluation: the state an alarm's recent datapoints put it in, as CloudWatch decides it.

A pure function of the alarm, the datapoints of its metric over its evaluation window and the
time: no store, no clock. The window is the last ``EvaluationPeriods`` whole periods that have
ended by ``now`` (aligned to multiples of ``Period``); :func:`evaluation_window` gives it, and
the caller queries the metric's statistic over it.

The M-out-of-N rule: with M = ``DatapointsToAlarm`` (default N = ``EvaluationPeriods``), the
alarm is ALARM when at least M of the N datapoints breach the threshold, else OK. A period with
no datapoint counts as ``TreatMissingData`` says:

- ``breaching`` / ``notBreaching``: as a breaching / a non-breaching datapoint;
- ``ignore``: as whatever keeps the current state. The datapoints there are decide when they
  settle the question either way (M already breach, or M cannot be reached even if every
  missing one breached); otherwise the alarm keeps its state;
- ``missing`` (the default): when every period is missing the alarm is INSUFFICIENT_DATA;
  otherwise the datapoints there are decide, and when fewer than M exist, all of them must breach.

With ``EvaluateLowSampleCountPercentile: ignore`` a percentile alarm keeps its state while a
datapoint it would evaluate has too few samples to be statistically significant.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from shipway.domain.alarm import (
    AlarmState,
    EvaluateLowSampleCountPercentile,
    MetricAlarm,
    TreatMissingData,
)
from shipway.monitor.metrics import Datapoint

__all__ = ["Evaluation", "evaluate_alarm", "evaluation_window", "minimum_samples"]

MAX_REASON = 1023
MAX_REASON_DATA = 4000


@dataclass(frozen=True)
class Evaluation:
    """The state an evaluation arrived at, and why (CloudWatch's StateReason and its JSON)."""

    state: AlarmState
    reason: str
    reason_data: str | None = None


def evaluation_window(period: int, evaluation_periods: int, now: float) -> tuple[float, float]:
    """[start, end) in epoch seconds of the last ``evaluation_periods`` whole periods that have
    ended at ``now``."""
    end = math.floor(now / period) * period
    return float(end - evaluation_periods * period), float(end)


def minimum_samples(percentile: float) -> float:
    """The fewest samples a percentile needs to be significant: 10 / (1 - p) at or above the
    median (p99 needs 1000), 10 / p below it."""
    fraction = percentile / 100.0
    if fraction >= 0.5:
        return 10.0 / max(1.0 - fraction, 1e-9)
    return 10.0 / max(fraction, 1e-9)


def evaluate_alarm(
    alarm: MetricAlarm, datapoints: Sequence[Datapoint], now: datetime
) -> Evaluation:
    """The state ``datapoints`` (of the alarm's statistic over :func:`evaluation_window`, one
    per period at most, as :meth:`MetricsStore.query` gives them) put ``alarm`` in at ``now``.

    When the state stays what it is (or the evaluation does not decide, with ``ignore``), the
    result is the alarm's current state and reason: as CloudWatch, a reason is written when the
    state changes.
    """
    window_start, _ = evaluation_window(alarm.period, alarm.evaluation_periods, now.timestamp())
    n = alarm.evaluation_periods
    m = alarm.datapoints_needed
    slots = {window_start + i * alarm.period: i for i in range(n)}
    present: dict[int, Datapoint] = {}
    for point in datapoints:
        index = slots.get(point.timestamp)
        if index is not None:
            present[index] = point
    keep = Evaluation(alarm.state_value, alarm.state_reason, alarm.state_reason_data)
    if _too_few_samples(alarm, present.values()):
        return keep
    operator = alarm.comparison_operator
    breaching = [p for p in present.values() if operator.breached(p.value, alarm.threshold)]
    missing = n - len(present)
    mode = alarm.missing_data
    context = _Context(alarm, now, window_start, present, breaching, missing)

    if missing == 0 or mode is TreatMissingData.NOT_BREACHING:
        alarming = len(breaching) >= m
        return context.threshold(alarming, treated=mode if missing else None)
    if mode is TreatMissingData.BREACHING:
        return context.threshold(len(breaching) + missing >= m, treated=mode)
    if mode is TreatMissingData.IGNORE:
        if len(breaching) >= m:
            return context.threshold(True)
        if len(breaching) + missing < m:
            return context.threshold(False)
        return keep
    # missing: decide on the datapoints there are
    if not present:
        if alarm.state_value is AlarmState.INSUFFICIENT_DATA:
            return keep
        noun = _datapoints(n)
        return Evaluation(
            AlarmState.INSUFFICIENT_DATA,
            f"Insufficient Data: {noun} {'was' if n == 1 else 'were'} unknown.",
            context.reason_data(),
        )
    return context.threshold(len(breaching) >= min(m, len(present)))


def _too_few_samples(alarm: MetricAlarm, points: Iterable[Datapoint]) -> bool:
    if (
        alarm.extended_statistic is None
        or alarm.evaluate_low_sample_count_percentile is not EvaluateLowSampleCountPercentile.IGNORE
    ):
        return False
    needed = minimum_samples(float(alarm.extended_statistic[1:]))
    return any(p.sample_count < needed for p in points)


@dataclass(frozen=True)
class _Context:
    alarm: MetricAlarm
    now: datetime
    window_start: float
    present: dict[int, Datapoint]
    breaching: list[Datapoint]
    missing: int

    def threshold(self, alarming: bool, *, treated: TreatMissingData | None = None) -> Evaluation:
        """ALARM or OK, with CloudWatch's "Threshold Crossed: ..." reason."""
        alarm = self.alarm
        state = AlarmState.ALARM if alarming else AlarmState.OK
        if state is alarm.state_value:
            return Evaluation(state, alarm.state_reason, alarm.state_reason_data)
        newest_first = sorted(self.present.values(), key=lambda p: p.timestamp, reverse=True)
        breaching = {p.timestamp for p in self.breaching}
        if alarming:
            shown = [p for p in newest_first if p.timestamp in breaching]
            verb = alarm.comparison_operator.phrase
            minimum = alarm.datapoints_needed
        else:
            shown = [p for p in newest_first if p.timestamp not in breaching]
            verb = "not " + alarm.comparison_operator.phrase
            minimum = alarm.evaluation_periods - alarm.datapoints_needed + 1
        transition = f"{alarm.state_value.value} -> {state.value}"
        counted_missing = self.missing if treated is not None else 0
        label = "Breaching" if treated is TreatMissingData.BREACHING else "NonBreaching"
        counts_missing_here = counted_missing and (
            (treated is TreatMissingData.BREACHING) == alarming
        )
        missing = counted_missing if counts_missing_here else 0

        def sentence(limit: int) -> str:
            return self._sentence(shown, limit, verb, minimum, transition, missing, label)

        reason = sentence(_longest(len(shown), lambda k: len(sentence(k)) <= MAX_REASON))
        return Evaluation(state, reason[:MAX_REASON], self.reason_data())

    def _sentence(
        self,
        shown: list[Datapoint],
        limit: int,
        verb: str,
        minimum: int,
        transition: str,
        missing: int,
        label: str,
    ) -> str:
        alarm = self.alarm
        n = alarm.evaluation_periods
        listed = ", ".join(f"{_number(p.value)} ({_when(p.timestamp)})" for p in shown[:limit])
        if limit < len(shown):
            listed += ", ..."
        threshold = _number(alarm.threshold)
        if not shown:
            periods = "period" if missing == 1 else "periods"
            reason = f"Threshold Crossed: no datapoints were received for {missing} {periods}"
        elif n == 1:
            reason = f"Threshold Crossed: 1 datapoint [{listed}] was {verb} the threshold"
            reason += f" ({threshold})"
        else:
            count = len(shown)
            were = "was" if count == 1 else "were"
            reason = (
                f"Threshold Crossed: {count} out of the last {n} datapoints [{listed}] {were} "
                f"{verb} the threshold ({threshold})"
            )
        if missing:
            were = "was" if missing == 1 else "were"
            joiner = " and " if not shown else ", and "
            reason += f"{joiner}{_datapoints(missing, 'missing ')} {were} treated as [{label}]"
        if n > 1:
            reason += f" (minimum {_datapoints(minimum)} for {transition} transition)"
        return reason + "."

    def reason_data(self) -> str:
        """CloudWatch's StateReasonData: the query and the datapoints evaluated, as JSON
        (the oldest datapoints left out when it would be longer than CloudWatch allows)."""
        points = sorted(self.present.values(), key=lambda p: p.timestamp, reverse=True)

        def text(count: int) -> str:
            return json.dumps(self._reason_document(points[:count]), separators=(",", ":"))

        return text(_longest(len(points), lambda k: len(text(k)) <= MAX_REASON_DATA))

    def _reason_document(self, newest_first: list[Datapoint]) -> dict[str, object]:
        alarm = self.alarm
        document: dict[str, object] = {
            "version": "1.0",
            "queryDate": _iso(self.now.timestamp()),
            "startDate": _iso(self.window_start),
        }
        if alarm.unit is not None:
            document["unit"] = alarm.unit.value
        if alarm.statistic is not None:
            document["statistic"] = alarm.statistic.value
        else:
            document["extendedStatistic"] = alarm.extended_statistic
        document["period"] = alarm.period
        document["recentDatapoints"] = [p.value for p in reversed(newest_first)]
        document["threshold"] = alarm.threshold
        document["evaluatedDatapoints"] = [
            {"timestamp": _iso(p.timestamp), "sampleCount": float(p.sample_count), "value": p.value}
            for p in newest_first
        ]
        return document


def _longest(count: int, fits: Callable[[int], bool]) -> int:
    """The largest k in [0, count] that ``fits`` (which holds for every smaller k once it
    holds for one), found in log(count) tries; 0 when none fits."""
    if fits(count):
        return count
    low, high = 0, count  # fits(low) is assumed, fits(high) is false
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _datapoints(count: int, adjective: str = "") -> str:
    return f"{count} {adjective}datapoint{'' if count == 1 else 's'}"


def _number(value: float) -> str:
    return repr(float(value))


def _when(epoch: float) -> str:
    """CloudWatch's reason format: ``21/11/26 10:00:00`` (day/month/year, UTC)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%d/%m/%y %H:%M:%S")


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"
