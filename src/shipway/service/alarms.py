"""Alarm operations (CloudWatch's PutMetricAlarm, DescribeAlarms, SetAlarmState...) and the
evaluator that moves alarms between OK, ALARM and INSUFFICIENT_DATA.

:meth:`AlarmService.evaluate` evaluates every alarm over the metrics store
(:func:`~shipway.monitor.alarm_evaluation.evaluate_alarm`), records each state change with a
``StateUpdate`` history item and tells ``on_change`` (the platform wakes the controller, whose
deployments roll back on alarms) and ``on_transition`` (the alarm's SNS actions).
:class:`AlarmEvaluator` runs it every ``alarm_evaluation_interval_seconds`` in one task that
never dies.

The deployment controller asks :meth:`AlarmService.states` and :meth:`AlarmService.missing`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from shipway.domain.alarm import (
    INITIAL_REASON,
    AlarmHistoryItem,
    AlarmNotFound,
    AlarmState,
    AlarmType,
    DescribeAlarmHistoryInput,
    DescribeAlarmHistoryOutput,
    DescribeAlarmsForMetricInput,
    DescribeAlarmsForMetricOutput,
    DescribeAlarmsInput,
    DescribeAlarmsOutput,
    HistoryItemType,
    MetricAlarm,
    PutMetricAlarmInput,
    SetAlarmStateInput,
)
from shipway.domain.clock import Clock
from shipway.domain.errors import (
    InvalidFormat,
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
)
from shipway.domain.metric import ScanBy
from shipway.domain.model import Tag
from shipway.domain.names import Account
from shipway.monitor.alarm_evaluation import Evaluation, evaluate_alarm, evaluation_window
from shipway.monitor.metrics import Datapoint, MetricsStore
from shipway.periodic import Periodic
from shipway.store.alarms import AlarmChange, HistoryQuery
from shipway.store.metadata import MetadataStore

__all__ = ["AlarmEvaluator", "AlarmService", "OnChange"]

log = logging.getLogger(__name__)

OnChange = Callable[[str, AlarmState], None]
"""Told the alarm's name and its new state after every state change."""
OnTransition = Callable[[MetricAlarm, AlarmState], None]
"""Told the alarm as written and the state it left, after every state change (the alarm's SNS
actions: :class:`~shipway.service.alarm_actions.AlarmActions`)."""

SETTLE_SECONDS = 2.0
"""How long after a period ends its datapoints may still be arriving (a request that ended at
the period's last instant is recorded a moment later): until then the alarm is evaluated on
every pass, after that only when its window moves or data dated in the past comes."""
DEFAULT_MAX_RECORDS = 50
DEFAULT_HISTORY_RECORDS = 100
MAX_HISTORY_DATA = 4095


def _ignore(name: str, state: AlarmState) -> None:
    pass


def _no_actions(alarm: MetricAlarm, previous: AlarmState) -> None:
    pass


class AlarmService:
    def __init__(
        self,
        store: MetadataStore,
        metrics: MetricsStore,
        clock: Clock,
        account: Account,
        on_change: OnChange = _ignore,
        on_transition: OnTransition = _no_actions,
    ) -> None:
        self._alarms = store.alarms
        self._metrics = metrics
        self._clock = clock
        self._account = account
        self._on_change = on_change
        self._on_transition = on_transition
        self._evaluated: dict[str, tuple[float, datetime, AlarmState, int]] = {}
        """What each alarm was last evaluated on, once its window had settled: window end,
        configuration time, state and the metrics store's revision."""
        self._held: dict[str, float] = {}
        """Alarms whose state was set by hand: the end of the window they were set in. The
        evaluator leaves them be until a later period has ended."""

    def arn(self, name: str) -> str:
        """``arn:aws:cloudwatch:{region}:{account}:alarm:{name}`` (the name as it is)."""
        return f"arn:aws:cloudwatch:{self._account.region}:{self._account.account_id}:alarm:{name}"

    # --- alarms ------------------------------------------------------------------------------

    def put_metric_alarm(self, request: PutMetricAlarmInput) -> MetricAlarm:
        """Create the alarm, or replace the definition of the one of that name.

        A new alarm starts INSUFFICIENT_DATA; a replaced one keeps its state (and its tags, as
        CloudWatch ignores Tags on an update) and is evaluated again at once.
        """
        now = self._clock.now()
        name = request.alarm_name
        definition = request.model_dump(exclude={"alarm_name", "tags"}, exclude_none=True)
        replaced = False

        def change(current: MetricAlarm | None) -> AlarmChange:
            nonlocal replaced
            replaced = current is not None
            if current is None:
                alarm = MetricAlarm(
                    **definition,
                    alarm_name=name,
                    alarm_arn=self.arn(name),
                    alarm_configuration_updated_timestamp=now,
                    state_value=AlarmState.INSUFFICIENT_DATA,
                    state_reason=INITIAL_REASON,
                    state_updated_timestamp=now,
                    state_transitioned_timestamp=now,
                )
                data = {"version": "1.0", "type": "Create", "createdAlarm": _summary(alarm)}
                item = _history(
                    name, now, HistoryItemType.CONFIGURATION_UPDATE, f'Alarm "{name}" created', data
                )
                return AlarmChange(alarm, [item], tags=list(request.tags or []))
            alarm = MetricAlarm(
                **definition,
                alarm_name=name,
                alarm_arn=current.alarm_arn,
                alarm_configuration_updated_timestamp=now,
                state_value=current.state_value,
                state_reason=current.state_reason,
                state_reason_data=current.state_reason_data,
                state_updated_timestamp=current.state_updated_timestamp,
                state_transitioned_timestamp=current.state_transitioned_timestamp,
            )
            data = {
                "version": "1.0",
                "type": "Update",
                "originalUpdatedAlarm": _summary(current),
                "updatedAlarm": _summary(alarm),
            }
            item = _history(
                name, now, HistoryItemType.CONFIGURATION_UPDATE, f'Alarm "{name}" updated', data
            )
            return AlarmChange(alarm, [item])

        alarm = self._alarms.upsert(name, change)
        self._held.pop(name, None)
        if replaced:
            alarm = self._evaluate(alarm, now) or alarm
        return alarm

    def describe_alarm(self, name: str) -> MetricAlarm:
        alarm = self._alarms.get(name)
        if alarm is None:
            raise AlarmNotFound([name])
        return alarm

    def describe_alarms(self, request: DescribeAlarmsInput) -> DescribeAlarmsOutput:
        if request.alarm_names and request.alarm_name_prefix is not None:
            raise InvalidParameterCombination(
                "AlarmNames and AlarmNamePrefix cannot be specified together."
            )
        family = request.children_of_alarm_name or request.parents_of_alarm_name
        if family is not None:
            others = request.model_dump(
                exclude={
                    "children_of_alarm_name",
                    "parents_of_alarm_name",
                    "max_records",
                    "next_token",
                },
                exclude_none=True,
            )
            if others or (request.children_of_alarm_name and request.parents_of_alarm_name):
                raise InvalidParameterCombination(
                    "With ChildrenOfAlarmName or ParentsOfAlarmName, only MaxRecords and "
                    "NextToken may be given."
                )
            # composite alarms are not supported: a metric alarm has no children and no parents
            return DescribeAlarmsOutput(metric_alarms=[])
        if request.alarm_types is not None and AlarmType.METRIC_ALARM not in request.alarm_types:
            return DescribeAlarmsOutput(metric_alarms=[])
        keep = None if request.action_prefix is None else _has_action(request.action_prefix)
        limit = request.max_records or DEFAULT_MAX_RECORDS
        items, more = self._alarms.page(
            names=request.alarm_names or None,  # an empty AlarmNames filters nothing
            prefix=request.alarm_name_prefix,
            state=request.state_value,
            keep=keep,
            after=_decode(request.next_token, "alarms") if request.next_token else None,
            limit=limit,
        )
        token = _encode("alarms", items[-1].alarm_name) if more and items else None
        return DescribeAlarmsOutput(metric_alarms=items, next_token=token)

    def describe_alarms_for_metric(
        self, request: DescribeAlarmsForMetricInput
    ) -> DescribeAlarmsForMetricOutput:
        dimensions = (
            None if request.dimensions is None else {(d.name, d.value) for d in request.dimensions}
        )

        def keep(alarm: MetricAlarm) -> bool:
            if request.statistic is not None and alarm.statistic != request.statistic:
                return False
            if request.extended_statistic is not None and (
                alarm.extended_statistic != request.extended_statistic
            ):
                return False
            if request.period is not None and alarm.period != request.period:
                return False
            if request.unit is not None and alarm.unit != request.unit:
                return False
            return dimensions is None or dimensions == {
                (d.name, d.value) for d in alarm.dimensions or []
            }

        items, _ = self._alarms.page(
            namespace=request.namespace, metric_name=request.metric_name, keep=keep
        )
        return DescribeAlarmsForMetricOutput(metric_alarms=items)

    def delete_alarms(self, names: Sequence[str]) -> None:
        """Delete the alarms and their history; when one does not exist, ResourceNotFound and
        nothing is deleted."""
        missing = self._alarms.remove(names)
        if missing:
            raise AlarmNotFound(missing)
        for name in names:
            self._held.pop(name, None)

    def set_alarm_state(self, request: SetAlarmStateInput) -> MetricAlarm:
        """Set the state by hand (to test actions, or a rollback). It holds until the alarm's
        next evaluation after the period under way has ended, which sets the state the data
        says again (CloudWatch evaluates an alarm once a period, too)."""
        if request.state_reason_data is not None:
            try:
                json.loads(request.state_reason_data)
            except ValueError as exc:
                raise InvalidFormat(f"StateReasonData is not valid JSON: {exc}.") from exc
        now = self._clock.now()
        outcome = Evaluation(request.state_value, request.state_reason, request.state_reason_data)
        previous: AlarmState | None = None

        def change(current: MetricAlarm) -> AlarmChange:
            nonlocal previous
            previous = current.state_value
            return _transition(current, outcome, now)

        alarm = self._alarms.update(request.alarm_name, change)
        if alarm is None:
            raise AlarmNotFound([request.alarm_name])
        _, window_end = evaluation_window(alarm.period, 1, now.timestamp())
        self._held[alarm.alarm_name] = window_end
        if previous is not None and previous is not request.state_value:
            self._notify(alarm, previous)
        return alarm

    def describe_alarm_history(
        self, request: DescribeAlarmHistoryInput
    ) -> DescribeAlarmHistoryOutput:
        if (
            request.start_date is not None
            and request.end_date is not None
            and (request.start_date > request.end_date)
        ):
            raise InvalidParameterValue("The parameter StartDate must not be after EndDate.")
        wanted_types = request.alarm_types
        if request.alarm_contributor_id is not None or (
            wanted_types is not None and AlarmType.METRIC_ALARM not in wanted_types
        ):
            return DescribeAlarmHistoryOutput(alarm_history_items=[])
        ascending = request.scan_by is ScanBy.TIMESTAMP_ASCENDING
        after = None
        if request.next_token:
            position = _decode(request.next_token, f"history-{request.scan_by.value}")
            if not position.isdigit():
                raise InvalidNextToken(f"Invalid NextToken: {request.next_token[:64]}")
            after = int(position)
        items, more = self._alarms.history(
            HistoryQuery(
                alarm_name=request.alarm_name,
                item_type=request.history_item_type,
                start=request.start_date,
                end=request.end_date,
                ascending=ascending,
                after_id=after,
                limit=request.max_records or DEFAULT_HISTORY_RECORDS,
            )
        )
        token = None if more is None else _encode(f"history-{request.scan_by.value}", str(more))
        return DescribeAlarmHistoryOutput(alarm_history_items=items, next_token=token)

    def enable_alarm_actions(self, names: Sequence[str]) -> None:
        """Turn actions on; names of alarms that do not exist are skipped, as CloudWatch does."""
        self._set_actions_enabled(names, enabled=True)

    def disable_alarm_actions(self, names: Sequence[str]) -> None:
        self._set_actions_enabled(names, enabled=False)

    def _set_actions_enabled(self, names: Sequence[str], *, enabled: bool) -> None:
        for name in dict.fromkeys(names):
            self._alarms.update(
                name,
                lambda alarm: AlarmChange(alarm.model_copy(update={"actions_enabled": enabled})),
            )

    def list_tags(self, resource_arn: str) -> list[Tag]:
        """The tags of the alarm with this ARN (ListTagsForResource)."""
        prefix = self.arn("")
        name = resource_arn[len(prefix) :] if resource_arn.startswith(prefix) else None
        tags = None if not name else self._alarms.tags(name)
        if tags is None:
            raise AlarmNotFound([resource_arn])
        return tags

    # --- for the deployment controller --------------------------------------------------------

    def states(self, names: Iterable[str]) -> dict[str, AlarmState]:
        """The state of each named alarm that exists."""
        return self._alarms.states(names)

    def missing(self, names: Iterable[str]) -> list[str]:
        """The names (in order, once each) of alarms that do not exist."""
        wanted = list(dict.fromkeys(names))
        found = self._alarms.states(wanted)
        return [n for n in wanted if n not in found]

    # --- evaluation ----------------------------------------------------------------------------

    def evaluate(self, now: datetime | None = None) -> list[tuple[str, AlarmState]]:
        """Evaluate every alarm at ``now`` (the clock's time by default); returns the
        transitions made, each also written with a StateUpdate history item and told to
        ``on_change``."""
        moment = now or self._clock.now()
        changed = []
        evaluated: dict[str, tuple[float, datetime, AlarmState, int]] = {}
        for alarm in self._alarms.all():
            name = alarm.alarm_name
            _, window_end = evaluation_window(alarm.period, 1, moment.timestamp())
            held = self._held.get(name)
            if held is not None:
                if window_end <= held:
                    continue
                self._held.pop(name, None)
            basis = (
                window_end,
                alarm.alarm_configuration_updated_timestamp,
                alarm.state_value,
                self._metrics.revision,  # read before the query: a write during it counts
            )
            if self._evaluated.get(name) == basis:
                evaluated[name] = basis
                continue
            try:
                updated = self._evaluate(alarm, moment)
            except Exception:  # one broken alarm must not stop the others
                log.exception("evaluating alarm %s failed", name)
                continue
            if updated is not None:
                changed.append((name, updated.state_value))
            if moment.timestamp() >= window_end + SETTLE_SECONDS:
                state = alarm.state_value if updated is None else updated.state_value
                evaluated[name] = (*basis[:2], state, basis[3])
        self._evaluated = evaluated
        return changed

    def datapoints(self, alarm: MetricAlarm, now: float) -> list[Datapoint]:
        """The datapoints of the alarm's metric in its evaluation window at ``now`` (epoch
        seconds), one per period with data, oldest first."""
        start, end = evaluation_window(alarm.period, alarm.evaluation_periods, now)
        return self._metrics.query(
            alarm.metric_name,
            alarm.dimension_map,
            start=start,
            end=end,
            period=alarm.period,
            statistic=alarm.stat,
            namespace=alarm.namespace,
            unit=None if alarm.unit is None else alarm.unit.value,
        )

    def _evaluate(self, alarm: MetricAlarm, now: datetime) -> MetricAlarm | None:
        """Evaluate one alarm; the alarm as written when its state changed, else None."""
        outcome = evaluate_alarm(alarm, self.datapoints(alarm, now.timestamp()), now)
        if outcome.state is alarm.state_value:
            return None

        def change(current: MetricAlarm) -> AlarmChange | None:
            # written only over what was evaluated: a new definition or a state set in between
            # is evaluated again next time
            if (
                current.state_value is not alarm.state_value
                or current.alarm_configuration_updated_timestamp
                != alarm.alarm_configuration_updated_timestamp
            ):
                return None
            return _transition(current, outcome, now)

        updated = self._alarms.update(alarm.alarm_name, change)
        if updated is not None:
            self._notify(updated, alarm.state_value)
        return updated

    def _notify(self, alarm: MetricAlarm, previous: AlarmState) -> None:
        name = alarm.alarm_name
        try:
            self._on_change(name, alarm.state_value)
        except Exception:  # telling the controller must never fail an evaluation
            log.exception("on_change for alarm %s failed", name)
        try:
            self._on_transition(alarm, previous)
        except Exception:  # nor running its actions
            log.exception("the actions of alarm %s failed", name)


class AlarmEvaluator(Periodic):
    """Evaluates every alarm every ``interval`` seconds, in one task that never dies."""

    def __init__(self, service: AlarmService, interval: float) -> None:
        super().__init__("alarm evaluation", service.evaluate, interval)


def _has_action(prefix: str) -> Callable[[MetricAlarm], bool]:
    def keep(alarm: MetricAlarm) -> bool:
        actions = [
            *(alarm.ok_actions or []),
            *(alarm.alarm_actions or []),
            *(alarm.insufficient_data_actions or []),
        ]
        return any(action.startswith(prefix) for action in actions)

    return keep


def _transition(current: MetricAlarm, outcome: Evaluation, now: datetime) -> AlarmChange:
    """The alarm with its new state and reason, and the StateUpdate item when the state moved."""
    moved = outcome.state is not current.state_value
    alarm = current.model_copy(
        update={
            "state_value": outcome.state,
            "state_reason": outcome.reason,
            "state_reason_data": outcome.reason_data,
            "state_updated_timestamp": now,
            "state_transitioned_timestamp": now if moved else current.state_transitioned_timestamp,
        }
    )
    if not moved:
        return AlarmChange(alarm)
    new_state: dict[str, Any] = {"stateValue": outcome.state.value, "stateReason": outcome.reason}
    if outcome.reason_data is not None:
        with contextlib.suppress(ValueError):
            new_state["stateReasonData"] = json.loads(outcome.reason_data)
    data = {
        "version": "1.0",
        "oldState": {"stateValue": current.state_value.value, "stateReason": current.state_reason},
        "newState": new_state,
    }
    summary = f"Alarm updated from {current.state_value.value} to {outcome.state.value}"
    item = _history(current.alarm_name, now, HistoryItemType.STATE_UPDATE, summary, data)
    return AlarmChange(alarm, [item])


def _history(
    name: str, now: datetime, kind: HistoryItemType, summary: str, data: dict[str, Any]
) -> AlarmHistoryItem:
    return AlarmHistoryItem(
        alarm_name=name,
        alarm_type=AlarmType.METRIC_ALARM,
        timestamp=now,
        history_item_type=kind,
        history_summary=summary[:255],
        history_data=_fit(data),
    )


def _fit(data: dict[str, Any]) -> str:
    """HistoryData as JSON within CloudWatch's 4095 characters: the bulky parts (alarm
    definitions, reason data) are left out of a document that would be longer."""
    text = json.dumps(data, separators=(",", ":"))
    if len(text) <= MAX_HISTORY_DATA:
        return text
    slim = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for key, value in data.items():
        if isinstance(value, dict):
            slim[key] = {k: v for k, v in value.items() if isinstance(v, str) and len(v) < 1024}
    text = json.dumps(slim, separators=(",", ":"))
    return text if len(text) <= MAX_HISTORY_DATA else json.dumps({"version": "1.0"})


def _summary(alarm: MetricAlarm) -> dict[str, Any]:
    """An alarm's definition as CloudWatch's history shows it: camelCase, no state."""
    document = alarm.model_dump(
        mode="json",
        exclude_none=True,
        exclude={
            "alarm_configuration_updated_timestamp",
            "state_value",
            "state_reason",
            "state_reason_data",
            "state_updated_timestamp",
            "state_transitioned_timestamp",
        },
    )
    return {_camel(key): value for key, value in document.items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _encode(kind: str, position: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([kind, position]).encode()).decode()


def _decode(token: str, kind: str) -> str:
    """The position a NextToken carries; InvalidNextToken unless this API made it for ``kind``."""
    invalid = InvalidNextToken(f"Invalid NextToken: {token[:64]}")
    try:
        made_for, position = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise invalid from exc
    if made_for != kind or not isinstance(position, str):
        raise invalid
    return position
