"""Alarm actions that name an SNS topic: on a state change, the alarm's notification is
published to it, as CloudWatch publishes it.

:class:`~shipway.service.alarms.AlarmService` tells :meth:`AlarmActions.state_changed` the alarm
as written after each change of state, and the state it left. With ``ActionsEnabled``, every
topic ARN of this server among the actions of the new state (``AlarmActions`` for ALARM,
``OKActions`` for OK, ``InsufficientDataActions`` for INSUFFICIENT_DATA) is sent CloudWatch's
alarm document (``AlarmName``, ``NewStateValue``, ``NewStateReason``, ``StateChangeTime``,
``Trigger``...) with the subject ``ALARM: "<name>" in <region name>``. Other actions (Auto
Scaling policies, which the autoscaler reads itself, and ARNs of other services) are left alone.

The state change is written before the notification is published: a server killed between the
two loses that one notification (CloudWatch's own actions are not transactional either).
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime
from typing import Any

from shipway.domain.alarm import AlarmState, MetricAlarm
from shipway.domain.errors import ShipwayError
from shipway.domain.names import Account
from shipway.service.notifications import NotificationService

__all__ = ["AlarmActions", "alarm_notification"]

log = logging.getLogger(__name__)

MAX_SUBJECT = 100


class AlarmActions:
    def __init__(self, notifications: NotificationService, account: Account) -> None:
        self._notifications = notifications
        self._account = account

    def state_changed(self, alarm: MetricAlarm, previous: AlarmState) -> None:
        """Publish the alarm's notification to the topics its new state's actions name."""
        if alarm.actions_enabled is False:
            return
        actions = {
            AlarmState.ALARM: alarm.alarm_actions,
            AlarmState.OK: alarm.ok_actions,
            AlarmState.INSUFFICIENT_DATA: alarm.insufficient_data_actions,
        }[alarm.state_value]
        topics = [a for a in dict.fromkeys(actions or []) if a.startswith("arn:aws:sns:")]
        if not topics:
            return
        region = region_name(self._account.region)
        message = json.dumps(alarm_notification(alarm, previous, self._account, region))
        subject = _subject(f'{alarm.state_value.value}: "{alarm.alarm_name}" in {region}')
        for topic in topics:
            try:
                self._notifications.publish(topic, message, subject=subject)
            except ShipwayError as exc:  # a topic deleted, or of another account
                log.warning("alarm %s could not notify %s: %s", alarm.alarm_name, topic, exc)


def alarm_notification(
    alarm: MetricAlarm, previous: AlarmState, account: Account, region: str
) -> dict[str, Any]:
    """CloudWatch's alarm document, as its SNS notifications carry it."""
    trigger: dict[str, Any] = {
        "MetricName": alarm.metric_name,
        "Namespace": alarm.namespace,
        "StatisticType": "Statistic" if alarm.statistic is not None else "ExtendedStatistic",
    }
    if alarm.statistic is not None:
        trigger["Statistic"] = alarm.statistic.value.upper()
    else:
        trigger["ExtendedStatistic"] = alarm.extended_statistic
    trigger.update(
        {
            "Unit": None if alarm.unit is None else alarm.unit.value,
            "Dimensions": [{"value": d.value, "name": d.name} for d in alarm.dimensions or []],
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "DatapointsToAlarm": alarm.datapoints_needed,
            "ComparisonOperator": alarm.comparison_operator.value,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.missing_data.value,
            "EvaluateLowSampleCountPercentile": (
                ""
                if alarm.evaluate_low_sample_count_percentile is None
                else alarm.evaluate_low_sample_count_percentile.value
            ),
        }
    )
    return {
        "AlarmName": alarm.alarm_name,
        "AlarmDescription": alarm.alarm_description,
        "AWSAccountId": account.account_id,
        "AlarmConfigurationUpdatedTimestamp": _time(alarm.alarm_configuration_updated_timestamp),
        "NewStateValue": alarm.state_value.value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": _time(alarm.state_updated_timestamp),
        "Region": region,
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": previous.value,
        "OKActions": list(alarm.ok_actions or []),
        "AlarmActions": list(alarm.alarm_actions or []),
        "InsufficientDataActions": list(alarm.insufficient_data_actions or []),
        "Trigger": trigger,
    }


@functools.cache
def region_name(region: str) -> str:
    """A region's name as CloudWatch's notifications say it (``US East (N. Virginia)``), from
    botocore's endpoint data; the code itself for a region it does not know."""
    from botocore.loaders import Loader  # type: ignore[import-untyped]

    try:
        partitions = Loader().load_data("endpoints")["partitions"]
    except Exception:  # botocore's data missing or moved: the code says it too
        log.exception("reading botocore's region names failed")
        return region
    for partition in partitions:
        described = partition.get("regions", {}).get(region, {}).get("description")
        if isinstance(described, str):
            return described
    return region


def _time(moment: datetime) -> str:
    """``2026-01-01T00:00:00.000+0000``, as CloudWatch writes times in its notifications."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def _subject(text: str) -> str:
    """A subject SNS takes: printable ASCII, at most 100 characters."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return printable if len(printable) <= MAX_SUBJECT else printable[: MAX_SUBJECT - 3] + "..."
