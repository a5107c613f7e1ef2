"""The autoscaler: every ``interval`` seconds, each scalable target's policies are evaluated
against the metrics store and the target's capacity is changed when they say so.

One pass (:meth:`Autoscaler.evaluate`), for each registered target that has policies:

1. The endpoint must be InService with no deployment in progress. A deployment suspends
   scaling of its endpoint, as on SageMaker: a not scaled activity
   (``TargetServicePutResourceAsUnscalable``) is recorded once per deployment. Any other status
   (Updating to a new capacity, Creating...) is waited out silently.
2. Each target tracking policy's metric (:func:`~shipway.domain.scaling.tracked_metric`: a
   predefined SageMaker metric of the variant, or the customized one as given) is read per
   evaluation interval over the two windows of :mod:`~shipway.control.scaling_math`, in its
   per-minute meaning. Windows start no earlier than the target's last capacity change, the
   last time the endpoint was seen not InService, or when the autoscaler started watching the
   target: what was measured on another fleet says nothing about this one, and a window is
   read only once the autoscaler has watched all of it. For ``InvocationsPerInstance`` the
   instances the load was spread over are known from the metrics themselves (``Invocations``
   / ``InvocationsPerInstance``: the router divides each request by the instances it could
   route to), so instances still starting after a scale-out do not make the next decision
   overshoot.
3. Each step scaling policy acts while an alarm naming it in its AlarmActions (with actions
   enabled) is in ALARM: once when the alarm goes to ALARM and again each alarm period it stays
   there (CloudWatch invokes the action once a period), on the alarm's latest datapoint.
4. :func:`~shipway.control.scaling_math.decide` combines the proposals; a change goes through
   :meth:`ScalingService.set_capacity <shipway.service.scaling.ScalingService.set_capacity>`,
   which records the activity. A change the bounds prevented is a not scaled activity
   (``AlreadyAtMaxCapacity``/``AlreadyAtMinCapacity``), recorded once until the capacity
   changes, not every interval; a change that failed (the instance quota is used up) is tried
   again a minute later.

The cooldowns need when the target last scaled: the autoscaler remembers the changes it made;
after a restart it takes the target's newest successful activity as its last scale-out and
scale-in both (the cautious reading). The loop never dies: one target's error is logged and the
others go on. Time comes from the injected clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from shipway.control.scaling_math import (
    SCALE_IN_INTERVALS,
    SCALE_OUT_INTERVALS,
    Breach,
    MetricWindows,
    Proposal,
    ScalingHistory,
    decide,
    per_minute,
    step_scale,
    track_target,
)
from shipway.domain.alarm import AlarmNotFound, AlarmState, MetricAlarm
from shipway.domain.clock import Clock
from shipway.domain.endpoint import Endpoint, EndpointStatus
from shipway.domain.scaling import (
    DescribeScalingActivitiesInput,
    NotScaledReason,
    PolicyType,
    ScalableDimension,
    ScalableTarget,
    ScalingActivity,
    ScalingActivityStatusCode,
    ScalingPolicy,
    ServiceNamespace,
    parse_resource_id,
    tracked_metric,
)
from shipway.monitor.metrics import SAGEMAKER, MetricsStore
from shipway.periodic import Periodic
from shipway.service.alarms import AlarmService
from shipway.service.scaling import ScalingService

__all__ = ["Autoscaler"]

log = logging.getLogger(__name__)

UNSCALABLE = "TargetServicePutResourceAsUnscalable"
"""The not scaled reason while a deployment has the endpoint: AWS's code for a resource its
service has made unscalable for the moment."""
_NOUNS = {
    ScalableDimension.INSTANCE_COUNT: "desired instance count",
    ScalableDimension.PROVISIONED_CONCURRENCY: "desired provisioned concurrency",
}
RETRY_SECONDS = 60.0
"""After setting a capacity failed (the server's instance quota used up...), how long until it
is tried again (or one interval, if longer): one failed activity a minute, not one a pass."""
_HISTORY_LOOKBACK = 50
"""Activities read to find a target's last successful one after a restart."""


@dataclass
class _TargetState:
    """What the autoscaler remembers of one target between passes."""

    history: ScalingHistory
    since: float
    """Windows start here: when the autoscaler first saw the target, its last capacity change,
    or the last time the endpoint was seen not InService, whichever is latest."""
    capacity: int | None = None
    """The capacity seen on the previous pass."""
    suspended_for: int | None = None
    """The generation of the deployment a suspension was recorded for."""
    not_scaled: str | None = None
    """The reason code of the not scaled activity recorded since the capacity last changed."""
    failed_at: float | None = None
    """When setting the capacity last failed (retried :data:`RETRY_SECONDS` later)."""
    fired: dict[tuple[str, str], float] = field(default_factory=dict)
    """(policy ARN, alarm name) of a step policy: when its action last ran."""


class Autoscaler:
    def __init__(
        self,
        scaling: ScalingService,
        metrics: MetricsStore,
        alarms: AlarmService,
        clock: Clock,
        interval: float,
        *,
        endpoints: Callable[[str], Endpoint | None],
    ) -> None:
        """``interval``: seconds between passes (``Settings.autoscaling_interval_seconds``), also
        the length of one evaluation interval of the metrics; ``endpoints(name)``: the stored
        endpoint (``MetadataStore.endpoints.get``), for its status and deployment."""
        self._scaling = scaling
        self._metrics = metrics
        self._alarms = alarms
        self._clock = clock
        self._interval = interval
        self._period = max(1, round(interval))
        """An evaluation interval in whole seconds (the metrics store's resolution)."""
        self._endpoints = endpoints
        self._retry_seconds = max(RETRY_SECONDS, interval)
        self._states: dict[tuple[str, ScalableDimension], _TargetState] = {}
        self._periodic = Periodic("autoscaling pass", self.evaluate, interval)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._periodic.start()

    async def close(self) -> None:
        """Stop after the pass under way, if any."""
        await self._periodic.close()

    # --- one pass -----------------------------------------------------------------------------

    def evaluate(self) -> list[ScalingActivity]:
        """Evaluate every target's policies once; the activities recorded."""
        now = self._clock.time()
        recorded = []
        seen = set()
        for target in self._scaling.targets():
            key = (target.resource_id.lower(), target.scalable_dimension)
            seen.add(key)
            try:
                activity = self._evaluate(target, key, now)
            except Exception:  # one target must not stop the others
                log.exception("autoscaling %s failed", target.resource_id)
                continue
            if activity is not None:
                recorded.append(activity)
        for gone in set(self._states) - seen:
            del self._states[gone]
        return recorded

    def _evaluate(
        self, target: ScalableTarget, key: tuple[str, ScalableDimension], now: float
    ) -> ScalingActivity | None:
        state = self._states.get(key)
        if state is None:
            # what happened before it watched the target (a restart, a new target) it did not
            # see the fleet for: windows start now
            state = self._states[key] = _TargetState(self._last_scaled(target), since=now)
        variant = parse_resource_id(target.resource_id)
        endpoint = self._endpoints(variant.endpoint_name)
        if endpoint is None:
            return None
        policies = self._scaling.policies(target)
        deployment = endpoint.deployment
        if deployment is not None or endpoint.endpoint_status is not EndpointStatus.IN_SERVICE:
            state.since = now  # the fleet is changing: measure again once it is done
            if deployment is None or not policies or state.suspended_for == deployment.generation:
                return None
            state.suspended_for = deployment.generation
            return self._scaling.record_activity(
                target,
                cause=(
                    f"endpoint {endpoint.endpoint_name} is {endpoint.endpoint_status.value}: a "
                    f"deployment to endpoint configuration {deployment.endpoint_config_name} is in "
                    "progress, and scaling waits until it ends"
                ),
                description=f"Scaling of the {_NOUNS[target.scalable_dimension]} is suspended.",
                status_code=ScalingActivityStatusCode.FAILED,
                status_message="Scaling is suspended while the endpoint is being updated.",
                not_scaled_reasons=[self._reason(target, UNSCALABLE, state.capacity)],
            )
        capacity = self._scaling.current_capacity(target)
        if capacity is None:
            return None
        if state.capacity is not None and capacity != state.capacity:
            state.since, state.not_scaled = now, None  # changed by someone else
        state.capacity = capacity
        if not policies:
            return None
        proposals = self._proposals(target, policies, capacity, state, now)
        decision = decide(target, capacity, proposals)
        noun = _NOUNS[target.scalable_dimension]
        if decision.capacity is not None:
            if state.failed_at is not None and now - state.failed_at < self._retry_seconds:
                return None  # tried and failed a moment ago (the instance quota is used up)
            activity = self._scaling.set_capacity(
                target,
                decision.capacity,
                cause=decision.cause,
                description=f"Setting {noun} to {decision.capacity}.",
            )
            state.failed_at = None
            if activity.status_code is ScalingActivityStatusCode.FAILED:
                state.failed_at = now
            elif activity.status_code is ScalingActivityStatusCode.SUCCESSFUL:
                applied = self._scaling.current_capacity(target)
                if applied is not None and applied != capacity:
                    state.history = state.history.scaled(capacity, applied, now)
                    state.capacity, state.since, state.not_scaled = applied, now, None
            return activity
        reason = decision.not_scaled
        if reason is None:
            return None
        if state.not_scaled == reason.code:
            return None  # said already (the capacity asked for varies with the load)
        state.not_scaled = reason.code
        return self._scaling.record_activity(
            target,
            cause=decision.cause,
            description=f"Setting {noun} to {decision.wanted}.",
            status_code=ScalingActivityStatusCode.FAILED,
            status_message=(
                f"Failed to set {noun} to {decision.wanted}: it stays {capacity}, "
                f"within [{target.min_capacity}, {target.max_capacity}]."
            ),
            not_scaled_reasons=[reason],
        )

    def _proposals(
        self,
        target: ScalableTarget,
        policies: list[ScalingPolicy],
        capacity: int,
        state: _TargetState,
        now: float,
    ) -> list[Proposal]:
        proposals = []
        firing = set()
        for policy in policies:
            if policy.policy_type is PolicyType.TARGET_TRACKING:
                metric = self._windows(target, policy, state, now)
                proposals.append(track_target(policy, metric, capacity, now, state.history))
                continue
            if policy.policy_type is not PolicyType.STEP_SCALING:
                continue
            for alarm in self._alarms_in_alarm(policy):
                key = (policy.policy_arn, alarm.alarm_name)
                firing.add(key)
                last = state.fired.get(key)
                entered = alarm.state_transitioned_timestamp.timestamp()
                if last is not None and last >= entered and now - last < alarm.period:
                    continue  # acted on this period already
                value = self._latest(alarm, now)
                if value is None:
                    continue
                state.fired[key] = now
                breach = Breach(alarm.alarm_name, value, alarm.threshold)
                proposals.append(step_scale(policy, breach, capacity, now, state.history))
        state.fired = {k: t for k, t in state.fired.items() if k in firing}
        return proposals

    def _windows(
        self, target: ScalableTarget, policy: ScalingPolicy, state: _TargetState, now: float
    ) -> MetricWindows:
        """The policy's metric per evaluation interval over the two windows (module doc)."""
        config = policy.target_tracking_scaling_policy_configuration
        assert config is not None  # a target tracking policy has one
        metric = tracked_metric(config, parse_resource_id(target.resource_id))
        period = self._period
        end = float(math.floor(now))
        start = end - SCALE_IN_INTERVALS * period
        points = self._metrics.query(
            metric.metric_name,
            metric.dimension_map,
            start=start,
            end=end,
            period=period,
            statistic=metric.statistic.value,
            namespace=metric.namespace,
        )
        values = [(p.timestamp, per_minute(p.value, metric.statistic, period)) for p in points]

        def window(intervals: int) -> tuple[float, list[float]] | None:
            first = end - intervals * period
            if first < state.since:
                return None  # reaches back before the fleet changed
            return first, [v for t, v in values if t >= first]

        short = window(SCALE_OUT_INTERVALS)
        long = window(SCALE_IN_INTERVALS)
        measured = None
        if metric.namespace == SAGEMAKER and metric.metric_name == "InvocationsPerInstance":
            measured = self._instances_measured(metric.dimension_map, short or long, end)
        return MetricWindows(
            scale_out=short[1] if short else [],
            scale_in=long[1] if long else [],
            measured=measured,
        )

    def _instances_measured(
        self, dimensions: dict[str, str], window: tuple[float, list[float]] | None, end: float
    ) -> float | None:
        """How many instances a variant's invocations were spread over in the window: each
        request adds 1 to Invocations and 1 / (instances routed to) to InvocationsPerInstance."""
        if window is None or not window[1]:
            return None
        start = window[0]
        length = int(end - start)
        totals = {}
        for name in ("Invocations", "InvocationsPerInstance"):
            points = self._metrics.query(
                name, dimensions, start=start, end=end, period=length, statistic="Sum"
            )
            totals[name] = sum(p.value for p in points)
        if totals["InvocationsPerInstance"] <= 0:
            return None
        return totals["Invocations"] / totals["InvocationsPerInstance"]

    def _alarms_in_alarm(self, policy: ScalingPolicy) -> list[MetricAlarm]:
        """The alarms that name the step policy in their AlarmActions, are in ALARM and have
        their actions enabled."""
        found = []
        for ref in policy.alarms or []:
            try:
                alarm = self._alarms.describe_alarm(ref.alarm_name)
            except AlarmNotFound:
                continue
            if (
                alarm.state_value is AlarmState.ALARM
                and alarm.actions_enabled is not False
                and policy.policy_arn in (alarm.alarm_actions or [])
            ):
                found.append(alarm)
        return found

    def _latest(self, alarm: MetricAlarm, now: float) -> float | None:
        """The alarm's newest datapoint in its evaluation window."""
        points = self._alarms.datapoints(alarm, now)
        return points[-1].value if points else None

    def _last_scaled(self, target: ScalableTarget) -> ScalingHistory:
        """The target's newest successful activity as its last scale-out and scale-in (a
        restarted server does not know which it was, nor the capacities)."""
        found = self._scaling.describe_scaling_activities(
            DescribeScalingActivitiesInput(
                service_namespace=ServiceNamespace.SAGEMAKER,
                resource_id=target.resource_id,
                scalable_dimension=target.scalable_dimension,
                max_results=_HISTORY_LOOKBACK,
            )
        ).scaling_activities
        last = next(
            (a for a in found if a.status_code is ScalingActivityStatusCode.SUCCESSFUL), None
        )
        if last is None:
            return ScalingHistory()
        at = last.start_time.timestamp()
        capacity = self._scaling.current_capacity(target) or 0
        return ScalingHistory(
            scale_out_time=at, scale_out_from=capacity, scale_out_to=capacity, scale_in_time=at
        )

    @staticmethod
    def _reason(target: ScalableTarget, code: str, capacity: int | None) -> NotScaledReason:
        return NotScaledReason(
            code=code,
            min_capacity=target.min_capacity,
            max_capacity=target.max_capacity,
            current_capacity=capacity,
        )
