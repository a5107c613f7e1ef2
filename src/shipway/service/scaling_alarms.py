"""The CloudWatch alarms of scaling policies.

A target tracking policy gets two alarms, as on AWS: ``AlarmHigh`` (the metric over the target
for three periods in a row) and, unless the policy never scales in (``DisableScaleIn``),
``AlarmLow`` (under 90 % of it for fifteen periods), both with the policy's ARN as their
action and named ``TargetTracking-<ResourceId>-AlarmHigh|AlarmLow-<uuid>``. Their period
follows how often policies are evaluated (:meth:`~shipway.domain.scaling.TrackedMetric.period`)
and their threshold is the target in the metric's own terms over that period. They are the
policy's: replacing or deleting the policy deletes them.

A step scaling policy creates none: its alarms are the user's, those whose AlarmActions name
the policy.
"""

from __future__ import annotations

import contextlib
import uuid

from shipway.domain.alarm import AlarmNotFound, DescribeAlarmsInput, PutMetricAlarmInput
from shipway.domain.scaling import (
    Alarm,
    PolicyType,
    ScalableTarget,
    ScalingPolicy,
    TargetTrackingScalingPolicyConfiguration,
    parse_resource_id,
    tracked_metric,
)
from shipway.domain.shape import parse
from shipway.service.alarms import AlarmService

__all__ = [
    "HIGH_EVALUATION_PERIODS",
    "LOW_EVALUATION_PERIODS",
    "LOW_FRACTION",
    "PolicyAlarms",
]

HIGH_EVALUATION_PERIODS = 3
"""AlarmHigh: the metric over the target for three periods in a row scales out."""
LOW_EVALUATION_PERIODS = 15
"""AlarmLow: under 90 % of the target for fifteen periods in a row scales in."""
LOW_FRACTION = 0.9


class PolicyAlarms:
    def __init__(self, alarms: AlarmService, interval_seconds: float) -> None:
        """``interval_seconds``: how often the autoscaler evaluates policies."""
        self._alarms = alarms
        self._interval = interval_seconds

    def create(
        self,
        target: ScalableTarget,
        policy_arn: str,
        configuration: TargetTrackingScalingPolicyConfiguration,
    ) -> list[Alarm]:
        """AlarmHigh and (unless DisableScaleIn) AlarmLow of a target tracking policy; none
        is left behind when one cannot be made."""
        metric = tracked_metric(configuration, parse_resource_id(target.resource_id))
        period = metric.period(self._interval)
        threshold = metric.threshold(configuration.target_value, period)
        kinds = [("AlarmHigh", "GreaterThanThreshold", threshold, HIGH_EVALUATION_PERIODS)]
        if not configuration.disable_scale_in:
            kinds.append(
                ("AlarmLow", "LessThanThreshold", threshold * LOW_FRACTION, LOW_EVALUATION_PERIODS)
            )
        created: list[Alarm] = []
        try:
            for kind, operator, value, periods in kinds:
                request = parse(
                    PutMetricAlarmInput,
                    {
                        "AlarmName": f"TargetTracking-{target.resource_id}-{kind}-{uuid.uuid4()}",
                        "AlarmDescription": (
                            f"DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {policy_arn}."
                        ),
                        "AlarmActions": [policy_arn],
                        "MetricName": metric.metric_name,
                        "Namespace": metric.namespace,
                        "Statistic": metric.statistic.value,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in metric.dimensions],
                        "Period": period,
                        "EvaluationPeriods": periods,
                        "DatapointsToAlarm": periods,
                        "Threshold": value,
                        "ComparisonOperator": operator,
                    },
                )
                alarm = self._alarms.put_metric_alarm(request)
                created.append(Alarm(alarm_name=alarm.alarm_name, alarm_arn=alarm.alarm_arn))
        except BaseException:
            self.delete_names([a.alarm_name for a in created])
            raise
        return created

    def delete(self, policy: ScalingPolicy) -> None:
        """The alarms target tracking created for the policy (a step scaling policy's alarms
        are the user's: they stay)."""
        if policy.policy_type is PolicyType.TARGET_TRACKING:
            self.delete_names([a.alarm_name for a in policy.alarms or []])

    def delete_names(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(AlarmNotFound):  # deleted by hand already
                self._alarms.delete_alarms([name])

    def listed(self, policy: ScalingPolicy) -> ScalingPolicy:
        """The policy with its alarms: a step scaling policy's are those whose AlarmActions
        name it (a target tracking policy keeps the ones it made)."""
        if policy.policy_type is not PolicyType.STEP_SCALING:
            return policy
        found = self._alarms.describe_alarms(
            DescribeAlarmsInput(action_prefix=policy.policy_arn, max_records=100)
        ).metric_alarms
        alarms = [
            Alarm(alarm_name=a.alarm_name, alarm_arn=a.alarm_arn)
            for a in found
            if policy.policy_arn in (a.alarm_actions or [])
        ]
        return policy.model_copy(update={"alarms": alarms})
