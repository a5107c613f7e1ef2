"""Application Auto Scaling for SageMaker variants: scalable targets, scaling policies, scaling
activities, and :meth:`ScalingService.set_capacity`, the one way a variant's capacity changes
for scaling.

Registering a target checks it against the endpoint as it is now: the endpoint exists, the
variant is one of its production variants, the dimension fits the variant and the bounds are
valid for it (:mod:`shipway.domain.variant_capacity`). A target tracking policy creates its two
CloudWatch alarms, as AWS does (:mod:`shipway.service.scaling_alarms`); replacing or deleting
the policy, or deregistering its target, deletes them.

:meth:`ScalingService.set_capacity` writes the variant's desired capacity with a
compare-and-set on the endpoint (only while it is InService: SageMaker suspends scaling during
a deployment), moves the endpoint to Updating, wakes the controller and records the activity.
The autoscaler (``control/autoscaler.py``) and RegisterScalableTarget's clamp both call it.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Collection

from shipway.domain.alarm import AlarmState
from shipway.domain.clock import Clock
from shipway.domain.endpoint import Endpoint, EndpointStatus
from shipway.domain.endpoint_config import ProductionVariant
from shipway.domain.errors import (
    InvalidNextToken,
    NotFound,
    ResourceLimitExceeded,
    ValidationError,
)
from shipway.domain.names import Account
from shipway.domain.scaling import (
    PREDEFINED_DIMENSIONS,
    AlarmStateSummary,
    DeleteScalingPolicyInput,
    DeregisterScalableTargetInput,
    DescribeScalableTargetsInput,
    DescribeScalableTargetsOutput,
    DescribeScalingActivitiesInput,
    DescribeScalingActivitiesOutput,
    DescribeScalingPoliciesInput,
    DescribeScalingPoliciesOutput,
    EndpointScaling,
    NotScaledReason,
    ObjectNotFound,
    PolicyType,
    PutScalingPolicyInput,
    PutScalingPolicyOutput,
    RegisterScalableTargetInput,
    RegisterScalableTargetOutput,
    ScalableDimension,
    ScalableTarget,
    ScalingActivity,
    ScalingActivityStatusCode,
    ScalingPolicy,
    ServiceNamespace,
    StepScalingPolicyConfiguration,
    SuspendedState,
    TargetTrackingScalingPolicyConfiguration,
    VariantId,
    VariantScaling,
    parse_resource_id,
)
from shipway.domain.variant_capacity import (
    check_bounds,
    check_dimension,
    desired_capacity,
    production_variant,
    with_capacity,
)
from shipway.service.alarms import AlarmService
from shipway.service.scaling_alarms import PolicyAlarms
from shipway.store.metadata import MetadataStore
from shipway.store.scaling import Page, TargetKey, resource_key, target_key

__all__ = ["MAX_POLICIES_PER_TARGET", "ScalingService"]

MAX_POLICIES_PER_TARGET = 50
"""Application Auto Scaling's quota of scaling policies per scalable target."""
TARGETS_PAGE = 50
POLICIES_PAGE = 10
ACTIVITIES_PAGE = 50
SERVICE_LINKED_ROLE = (
    "arn:aws:iam::{account}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)

_NOUNS = {
    ScalableDimension.INSTANCE_COUNT: "desired instance count",
    ScalableDimension.PROVISIONED_CONCURRENCY: "desired provisioned concurrency",
}


def _ignore(_endpoint_name: str) -> None:
    pass


class ScalingService:
    def __init__(
        self,
        store: MetadataStore,
        alarms: AlarmService,
        clock: Clock,
        account: Account,
        *,
        interval_seconds: float = 60.0,
        max_instances: int | None = None,
        on_change: Callable[[str], None] = _ignore,
    ) -> None:
        """``interval_seconds``: how often the autoscaler evaluates policies (it sets the
        period of target tracking alarms); ``max_instances``: the server's instance quota;
        ``on_change(endpoint_name)``: told after a variant's capacity was changed."""
        self._store = store
        self._scaling = store.scaling
        self._alarms = alarms
        self._clock = clock
        self._account = account
        self._policy_alarms = PolicyAlarms(alarms, interval_seconds)
        self._max_instances = max_instances
        self._on_change = on_change

    # --- scalable targets ----------------------------------------------------------------------

    def register_scalable_target(
        self, request: RegisterScalableTargetInput
    ) -> RegisterScalableTargetOutput:
        """Register a variant as a scalable target, or update the given fields of one.

        When the variant's desired capacity is outside the new bounds it is brought inside
        them (a scaling activity)."""
        endpoint, variant, variant_id = self._resolve(request.resource_id)
        dimension = request.scalable_dimension
        check_dimension(endpoint, variant, dimension)
        now = self._clock.now()

        def change(current: ScalableTarget | None) -> ScalableTarget:
            if current is None:
                missing = [
                    name
                    for name, value in (
                        ("MinCapacity", request.min_capacity),
                        ("MaxCapacity", request.max_capacity),
                    )
                    if value is None
                ]
                if missing:
                    raise ValidationError(
                        f"{' and '.join(missing)} must be given to register a new scalable "
                        f"target ({variant_id.resource_id})."
                    )
            low = _given(request.min_capacity, current.min_capacity if current else None)
            high = _given(request.max_capacity, current.max_capacity if current else None)
            check_bounds(endpoint, variant, dimension, low, high)
            suspended = _suspended(current.suspended_state if current else None, request)
            if current is None:
                return ScalableTarget(
                    service_namespace=ServiceNamespace.SAGEMAKER,
                    resource_id=variant_id.resource_id,
                    scalable_dimension=dimension,
                    min_capacity=low,
                    max_capacity=high,
                    role_arn=request.role_arn or self.service_linked_role,
                    creation_time=now,
                    suspended_state=suspended,
                    scalable_target_arn=self._target_arn(),
                )
            return current.model_copy(
                update={
                    "min_capacity": low,
                    "max_capacity": high,
                    "role_arn": request.role_arn or current.role_arn,
                    "suspended_state": suspended,
                }
            )

        target, _ = self._scaling.upsert_target(
            target_key(variant_id, dimension), change, tags=request.tags
        )
        capacity = desired_capacity(endpoint, variant, dimension)
        if capacity is not None and not target.min_capacity <= capacity <= target.max_capacity:
            if capacity < target.min_capacity:
                wanted, cause = (
                    target.min_capacity,
                    f"minimum capacity was set to {target.min_capacity}",
                )
            else:
                wanted, cause = (
                    target.max_capacity,
                    f"maximum capacity was set to {target.max_capacity}",
                )
            self.set_capacity(
                target,
                wanted,
                cause=cause,
                description=f"Setting {_NOUNS[dimension]} to {wanted}.",
            )
        return RegisterScalableTargetOutput(scalable_target_arn=target.scalable_target_arn)

    def describe_scalable_targets(
        self, request: DescribeScalableTargetsInput
    ) -> DescribeScalableTargetsOutput:
        page = Page(
            resource_keys=_resource_keys(request.resource_ids),
            dimension=request.scalable_dimension,
            after=_decode(request.next_token, "targets"),
            limit=request.max_results or TARGETS_PAGE,
        )
        targets, more = self._scaling.targets(page)
        return DescribeScalableTargetsOutput(
            scalable_targets=targets, next_token=_encode("targets", more)
        )

    def describe_target(self, resource_id: str, dimension: ScalableDimension) -> ScalableTarget:
        """One registered target; ObjectNotFound when there is none."""
        target = self._scaling.target(_key(resource_id, dimension))
        if target is None:
            raise ObjectNotFound(_no_target(resource_id, dimension))
        return target

    def deregister_scalable_target(self, request: DeregisterScalableTargetInput) -> None:
        """Deregister a target and delete its policies (and their alarms)."""
        removed = self._scaling.remove_target(_key(request.resource_id, request.scalable_dimension))
        if removed is None:
            raise ObjectNotFound(_no_target(request.resource_id, request.scalable_dimension))
        for policy in removed[1]:
            self._policy_alarms.delete(policy)

    def targets(self) -> list[ScalableTarget]:
        """Every registered target, in the order they were registered."""
        return self._scaling.targets()[0]

    def target(self, resource_id: str, dimension: ScalableDimension) -> ScalableTarget | None:
        """The target registered for this variant and dimension, if any."""
        return self._scaling.target(_key(resource_id, dimension))

    def dimension_of(self, endpoint_name: str, variant_name: str) -> ScalableDimension:
        """The dimension a variant scales along: provisioned concurrency for a serverless
        variant, instance count otherwise (NotFound when the endpoint does not exist)."""
        endpoint = self._store.endpoints.get(endpoint_name)
        if endpoint is None:
            raise NotFound("endpoint", endpoint_name, self._account.arn("endpoint", endpoint_name))
        variant = production_variant(endpoint, variant_name)
        if variant is not None and variant.serverless_config is not None:
            return ScalableDimension.PROVISIONED_CONCURRENCY
        return ScalableDimension.INSTANCE_COUNT

    @property
    def service_linked_role(self) -> str:
        """The role AWS fills in when RegisterScalableTarget gives no RoleARN."""
        return SERVICE_LINKED_ROLE.format(account=self._account.account_id)

    # --- scaling policies ----------------------------------------------------------------------

    def put_scaling_policy(self, request: PutScalingPolicyInput) -> PutScalingPolicyOutput:
        """Create a policy on a registered target, or replace the one of that name.

        A target tracking policy gets new alarms; those of the policy it replaces are deleted
        once it is stored."""
        if (
            request.policy_type is PolicyType.PREDICTIVE_SCALING
            or request.predictive_scaling_policy_configuration is not None
        ):
            raise ValidationError(
                "PredictiveScaling is not supported for SageMaker variants: use "
                "TargetTrackingScaling or StepScaling."
            )
        key = _key(request.resource_id, request.scalable_dimension)
        target = self._scaling.target(key)
        if target is None:
            raise ObjectNotFound(_no_target(request.resource_id, request.scalable_dimension))
        name = request.policy_name
        existing = self._scaling.policy(key, name)
        policy_type = request.policy_type or (existing.policy_type if existing else None)
        if policy_type is None:
            raise ValidationError(
                "PolicyType must be given to create a scaling policy: TargetTrackingScaling "
                "or StepScaling."
            )
        tracking, steps = _configuration(request, policy_type, existing)
        if tracking is not None:
            _check_metric(tracking, target.scalable_dimension)
        if existing is None and self._scaling.count_policies(key) >= MAX_POLICIES_PER_TARGET:
            raise ResourceLimitExceeded(
                f"The scalable target {target.resource_id} has {MAX_POLICIES_PER_TARGET} "
                "scaling policies, the most a target may have. Delete one first."
            )
        arn = existing.policy_arn if existing else self._policy_arn(target, name)
        alarms = self._policy_alarms.create(target, arn, tracking) if tracking is not None else None
        now = self._clock.now()

        def change(current_target: ScalableTarget, current: ScalingPolicy | None) -> ScalingPolicy:
            return ScalingPolicy(
                policy_arn=current.policy_arn if current else arn,
                policy_name=name,
                service_namespace=ServiceNamespace.SAGEMAKER,
                resource_id=current_target.resource_id,
                scalable_dimension=current_target.scalable_dimension,
                policy_type=policy_type,
                step_scaling_policy_configuration=steps,
                target_tracking_scaling_policy_configuration=tracking,
                alarms=alarms,
                creation_time=current.creation_time if current else now,
            )

        try:
            stored = self._scaling.upsert_policy(key, name, change)
        except BaseException:
            self._policy_alarms.delete_names([a.alarm_name for a in alarms or []])
            raise
        if stored is None:  # deregistered in the meantime
            self._policy_alarms.delete_names([a.alarm_name for a in alarms or []])
            raise ObjectNotFound(_no_target(request.resource_id, request.scalable_dimension))
        policy, previous = stored
        if previous is not None:
            self._policy_alarms.delete(previous)
        return PutScalingPolicyOutput(policy_arn=policy.policy_arn, alarms=policy.alarms or [])

    def describe_scaling_policies(
        self, request: DescribeScalingPoliciesInput
    ) -> DescribeScalingPoliciesOutput:
        page = Page(
            resource_keys=_resource_keys([request.resource_id] if request.resource_id else None),
            dimension=request.scalable_dimension,
            after=_decode(request.next_token, "policies"),
            limit=request.max_results or POLICIES_PAGE,
        )
        policies, more = self._scaling.policies(page, names=request.policy_names or None)
        return DescribeScalingPoliciesOutput(
            scaling_policies=[self._policy_alarms.listed(p) for p in policies],
            next_token=_encode("policies", more),
        )

    def describe_policy(
        self, resource_id: str, dimension: ScalableDimension, name: str
    ) -> ScalingPolicy:
        """One policy, with its alarms; ObjectNotFound when there is none."""
        policy = self._scaling.policy(_key(resource_id, dimension), name)
        if policy is None:
            raise ObjectNotFound(_no_policy(resource_id, dimension, name))
        return self._policy_alarms.listed(policy)

    def delete_scaling_policy(self, request: DeleteScalingPolicyInput) -> None:
        """Delete a policy (and the alarms target tracking created for it)."""
        key = _key(request.resource_id, request.scalable_dimension)
        removed = self._scaling.remove_policy(key, request.policy_name)
        if removed is None:
            raise ObjectNotFound(
                _no_policy(request.resource_id, request.scalable_dimension, request.policy_name)
            )
        self._policy_alarms.delete(removed)

    def policies(self, target: ScalableTarget) -> list[ScalingPolicy]:
        """The target's policies, oldest first, each with its alarms (a step scaling policy's
        are the alarms whose AlarmActions name it)."""
        key = _key(target.resource_id, target.scalable_dimension)
        return [self._policy_alarms.listed(p) for p in self._scaling.policies(Page(keys=[key]))[0]]

    def alarm_states(self, policy: ScalingPolicy) -> dict[str, AlarmState]:
        """The state of each alarm of the policy that still exists."""
        return self._alarms.states([a.alarm_name for a in policy.alarms or []])

    # --- activities and capacity ----------------------------------------------------------------

    def describe_scaling_activities(
        self, request: DescribeScalingActivitiesInput
    ) -> DescribeScalingActivitiesOutput:
        """Activities, newest first; not scaled ones only with IncludeNotScaledActivities."""
        page = Page(
            resource_keys=_resource_keys([request.resource_id] if request.resource_id else None),
            dimension=request.scalable_dimension,
            after=_decode(request.next_token, "activities"),
            limit=request.max_results or ACTIVITIES_PAGE,
        )
        activities, more = self._scaling.activities(
            page, include_not_scaled=bool(request.include_not_scaled_activities)
        )
        return DescribeScalingActivitiesOutput(
            scaling_activities=activities, next_token=_encode("activities", more)
        )

    def endpoint_activities(
        self,
        endpoint_name: str,
        *,
        variant_name: str | None = None,
        include_not_scaled: bool = False,
        max_results: int = ACTIVITIES_PAGE,
        next_token: str | None = None,
    ) -> DescribeScalingActivitiesOutput:
        """The activities of an endpoint's variants (or of one), newest first."""
        variants = (
            None
            if variant_name is None
            else [resource_key(VariantId(endpoint_name=endpoint_name, variant_name=variant_name))]
        )
        page = Page(
            resource_keys=variants,
            endpoint_name=endpoint_name,
            after=_decode(next_token, "activities"),
            limit=max_results,
        )
        activities, more = self._scaling.activities(page, include_not_scaled=include_not_scaled)
        return DescribeScalingActivitiesOutput(
            scaling_activities=activities, next_token=_encode("activities", more)
        )

    def current_capacity(self, target: ScalableTarget) -> int | None:
        """The variant's desired capacity now along the target's dimension (None when the
        endpoint or variant is gone)."""
        variant_id = parse_resource_id(target.resource_id)
        endpoint = self._store.endpoints.get(variant_id.endpoint_name)
        if endpoint is None:
            return None
        variant = production_variant(endpoint, variant_id.variant_name)
        if variant is None:
            return None
        return desired_capacity(endpoint, variant, target.scalable_dimension)

    def set_capacity(
        self, target: ScalableTarget, capacity: int, *, cause: str, description: str
    ) -> ScalingActivity:
        """Set the variant's desired capacity (clamped into the target's bounds and, for
        instances, the server's quota) and record the activity.

        Compare-and-set on the endpoint: only while it is InService (SageMaker suspends
        scaling during a deployment, and while the endpoint is Updating for any reason);
        otherwise nothing changes and the activity is Failed, saying why. Capacity already
        there is a not scaled activity (AlreadyAtDesiredCapacity). The endpoint goes Updating
        until the controller has the new capacity running."""
        dimension = target.scalable_dimension
        noun = _NOUNS[dimension]
        bounded = min(max(capacity, target.min_capacity), target.max_capacity)
        variant_id = parse_resource_id(target.resource_id)

        def failed(reason: str, asked: int = bounded) -> ScalingActivity:
            return self.record_activity(
                target,
                cause=cause,
                description=description,
                status_code=ScalingActivityStatusCode.FAILED,
                status_message=f"Failed to set {noun} to {asked}. Reason: {reason}",
            )

        endpoint = self._store.endpoints.get(variant_id.endpoint_name)
        if endpoint is None:
            return failed(f"endpoint {variant_id.endpoint_name} does not exist.")
        variant = production_variant(endpoint, variant_id.variant_name)
        current = None if variant is None else desired_capacity(endpoint, variant, dimension)
        if variant is None or current is None:
            return failed(
                f"endpoint {endpoint.endpoint_name} has no production variant "
                f"{variant_id.variant_name} to scale along {dimension.value}."
            )
        if endpoint.endpoint_status is not EndpointStatus.IN_SERVICE:
            return failed(_not_in_service(endpoint))
        if bounded == current:
            return self.record_activity(
                target,
                cause=cause,
                description=description,
                status_code=ScalingActivityStatusCode.FAILED,
                status_message=f"The {noun} is already {current}.",
                not_scaled_reasons=[
                    NotScaledReason(
                        code="AlreadyAtDesiredCapacity",
                        min_capacity=target.min_capacity,
                        max_capacity=target.max_capacity,
                        current_capacity=current,
                    )
                ],
            )
        applied, note = bounded, ""
        if dimension is ScalableDimension.INSTANCE_COUNT and bounded > current:
            room = self._room()
            if room is not None and bounded - current > room:
                applied = current + max(room, 0)
                note = (
                    f" ({bounded} asked; the server allows {self._max_instances} instances in "
                    "all, SHIPWAY_MAX_INSTANCES)"
                )
                if applied == current:
                    return failed(
                        f"the server's instance quota ({self._max_instances}, "
                        "SHIPWAY_MAX_INSTANCES) is used up.",
                        bounded,
                    )
        now = self._clock.now()

        def scale(stored: Endpoint) -> Endpoint:
            variants = [
                with_capacity(stored, v, dimension, applied)
                if v.variant_name == variant_id.variant_name
                else v
                for v in stored.variants
            ]
            return stored.model_copy(
                update={
                    "variants": variants,
                    "endpoint_status": EndpointStatus.UPDATING,
                    "last_modified_time": now,
                }
            )

        updated = self._store.endpoints.update(
            endpoint.endpoint_name, scale, expected_status=EndpointStatus.IN_SERVICE.value
        )
        if updated is None:  # changed status (or went) since it was read
            latest = self._store.endpoints.get(endpoint.endpoint_name)
            if latest is None:
                return failed(f"endpoint {endpoint.endpoint_name} does not exist.")
            return failed(_not_in_service(latest))
        self._on_change(endpoint.endpoint_name)
        return self.record_activity(
            target,
            cause=cause,
            description=description,
            status_code=ScalingActivityStatusCode.SUCCESSFUL,
            status_message=(
                f"Successfully set {noun} to {applied}{note}. Change successfully fulfilled "
                "by sagemaker."
            ),
        )

    def record_activity(
        self,
        target: ScalableTarget,
        *,
        cause: str,
        description: str,
        status_code: ScalingActivityStatusCode,
        status_message: str | None = None,
        details: str | None = None,
        not_scaled_reasons: list[NotScaledReason] | None = None,
    ) -> ScalingActivity:
        """Record a scaling activity of the target (ended now).

        An activity that did not change anything (Failed, or not scaled) and repeats the
        target's newest one (same cause, description, status and reasons) replaces it, so an
        autoscaler that decides the same every interval leaves one activity, not one per
        interval; its StartTime is when that decision was first made."""
        now = self._clock.now()
        activity = ScalingActivity(
            activity_id=str(uuid.uuid4()),
            service_namespace=ServiceNamespace.SAGEMAKER,
            resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension,
            description=description,
            cause=cause,
            start_time=now,
            end_time=now,
            status_code=status_code,
            status_message=status_message,
            details=details,
            not_scaled_reasons=not_scaled_reasons or None,
        )

        def same(previous: ScalingActivity) -> bool:
            return (
                status_code is not ScalingActivityStatusCode.SUCCESSFUL
                and previous.status_code is status_code
                and (previous.cause, previous.description, previous.status_message)
                == (cause, description, status_message)
                and _codes(previous.not_scaled_reasons) == _codes(activity.not_scaled_reasons)
            )

        return self._scaling.add_activity(activity, same=same)

    # --- endpoints -----------------------------------------------------------------------------

    def endpoint_scaling(self, endpoint_name: str) -> EndpointScaling:
        """An endpoint's targets at a glance: bounds, desired capacity, policies, alarm states
        (NotFound when the endpoint does not exist)."""
        endpoint = self._store.endpoints.get(endpoint_name)
        if endpoint is None:
            raise NotFound("endpoint", endpoint_name, self._account.arn("endpoint", endpoint_name))
        targets, _ = self._scaling.targets(Page(endpoint_name=endpoint.endpoint_name))
        variants = []
        for target in targets:
            policies = self.policies(target)
            names = [a.alarm_name for p in policies for a in p.alarms or []]
            states = self._alarms.states(names)
            variant_id = parse_resource_id(target.resource_id)
            variant = production_variant(endpoint, variant_id.variant_name)
            variants.append(
                VariantScaling(
                    variant_name=variant_id.variant_name,
                    scalable_target=target,
                    desired_capacity=(
                        None
                        if variant is None
                        else desired_capacity(endpoint, variant, target.scalable_dimension)
                    ),
                    scaling_policies=policies,
                    alarms=[
                        AlarmStateSummary(
                            alarm_name=n, state_value=states[n].value if n in states else "MISSING"
                        )
                        for n in names
                    ],
                )
            )
        return EndpointScaling(endpoint_name=endpoint.endpoint_name, variants=variants)

    def forget_endpoint(
        self, endpoint_name: str, variant_names: Collection[str] | None = None
    ) -> None:
        """The endpoint is gone (``variant_names`` None), or a deployment left these variants
        behind: delete their targets, policies, the policies' alarms and the activities."""
        for policy in self._scaling.remove_endpoint(endpoint_name, variant_names):
            self._policy_alarms.delete(policy)

    def forget_gone_endpoints(self) -> list[str]:
        """Forget the scaling of endpoints no longer stored (a server that stopped between an
        endpoint's removal and :meth:`forget_endpoint`); the endpoints' names. Run at start."""
        named = {parse_resource_id(t.resource_id).endpoint_name for t in self.targets()}
        gone = sorted(name for name in named if self._store.endpoints.get(name) is None)
        for name in gone:
            self.forget_endpoint(name)
        return gone

    # --- plumbing ------------------------------------------------------------------------------

    def _resolve(self, resource_id: str) -> tuple[Endpoint, ProductionVariant, VariantId]:
        """The endpoint and production variant a ResourceId names, as they are now
        (ValidationError naming what is missing)."""
        variant_id = parse_resource_id(resource_id)
        name = variant_id.endpoint_name
        endpoint = self._store.endpoints.get(name)
        if endpoint is None or endpoint.endpoint_status is EndpointStatus.DELETING:
            gone = "does not exist" if endpoint is None else "is being deleted"
            raise ValidationError(
                f'The endpoint "{self._account.arn("endpoint", name)}" of ResourceId '
                f"{resource_id} {gone}."
            )
        variant = production_variant(endpoint, variant_id.variant_name)
        if variant is None:
            known = ", ".join(v.variant_name for v in endpoint.config.production_variants)
            shadow = any(
                s.variant_name == variant_id.variant_name
                for s in endpoint.config.shadow_production_variants or []
            )
            what = (
                "is a shadow variant, which is not scalable"
                if shadow
                else "is not one of its production variants"
            )
            raise ValidationError(
                f"Variant {variant_id.variant_name} of ResourceId {resource_id} {what}: "
                f"endpoint {endpoint.endpoint_name} has {known}."
            )
        return (
            endpoint,
            variant,
            VariantId(endpoint_name=endpoint.endpoint_name, variant_name=variant.variant_name),
        )

    def _room(self) -> int | None:
        """How many more instances the server's quota leaves (None: no quota)."""
        if self._max_instances is None:
            return None
        return self._max_instances - sum(e.instances_asked() for e in self._store.endpoints.all())

    def _target_arn(self) -> str:
        return (
            f"arn:aws:application-autoscaling:{self._account.region}:{self._account.account_id}"
            f":scalable-target/{uuid.uuid4().hex}"
        )

    def _policy_arn(self, target: ScalableTarget, name: str) -> str:
        return (
            f"arn:aws:autoscaling:{self._account.region}:{self._account.account_id}:"
            f"scalingPolicy:{uuid.uuid4()}:resource/sagemaker/{target.resource_id}:"
            f"policyName/{name}"
        )


def _given(value: int | None, current: int | None) -> int:
    chosen = value if value is not None else current
    assert chosen is not None  # checked: both are given on a first registration
    return chosen


def _suspended(
    current: SuspendedState | None, request: RegisterScalableTargetInput
) -> SuspendedState:
    """The stored SuspendedState with each flag the request gives replaced; a new target's
    flags are all false (AWS describes them so)."""
    merged = {
        "dynamic_scaling_in_suspended": False,
        "dynamic_scaling_out_suspended": False,
        "scheduled_scaling_suspended": False,
    }
    if current is not None:
        merged.update(current.model_dump(exclude_none=True))
    if request.suspended_state is not None:
        merged.update(request.suspended_state.model_dump(exclude_none=True))
    return SuspendedState(**merged)


def _configuration(
    request: PutScalingPolicyInput, policy_type: PolicyType, existing: ScalingPolicy | None
) -> tuple[TargetTrackingScalingPolicyConfiguration | None, StepScalingPolicyConfiguration | None]:
    """The policy's configuration: the request's, else (on a replace of the same type) the
    stored one; the other type's configuration is refused."""
    kept = existing if existing is not None and existing.policy_type is policy_type else None
    if policy_type is PolicyType.TARGET_TRACKING:
        if request.step_scaling_policy_configuration is not None:
            raise ValidationError(
                "StepScalingPolicyConfiguration does not go with PolicyType "
                "TargetTrackingScaling: give a TargetTrackingScalingPolicyConfiguration."
            )
        tracking = request.target_tracking_scaling_policy_configuration or (
            kept.target_tracking_scaling_policy_configuration if kept else None
        )
        if tracking is None:
            raise ValidationError(
                "PolicyType TargetTrackingScaling needs a TargetTrackingScalingPolicyConfiguration."
            )
        return tracking, None
    if request.target_tracking_scaling_policy_configuration is not None:
        raise ValidationError(
            "TargetTrackingScalingPolicyConfiguration does not go with PolicyType StepScaling: "
            "give a StepScalingPolicyConfiguration."
        )
    steps = request.step_scaling_policy_configuration or (
        kept.step_scaling_policy_configuration if kept else None
    )
    if steps is None:
        raise ValidationError("PolicyType StepScaling needs a StepScalingPolicyConfiguration.")
    return None, steps


def _check_metric(
    configuration: TargetTrackingScalingPolicyConfiguration, dimension: ScalableDimension
) -> None:
    predefined = configuration.predefined_metric_specification
    if predefined is None:
        return
    metric = predefined.predefined_metric_type
    if predefined.resource_label is not None:
        raise ValidationError(
            f"ResourceLabel does not apply to PredefinedMetricType {metric.value} (only to "
            "load balancer request counts)."
        )
    scales = PREDEFINED_DIMENSIONS[metric]
    if scales is not dimension:
        fitting = ", ".join(t.value for t, d in PREDEFINED_DIMENSIONS.items() if d is dimension)
        raise ValidationError(
            f"PredefinedMetricType {metric.value} is for {scales.value}, not {dimension.value}; "
            f"use {fitting}."
        )


def _not_in_service(endpoint: Endpoint) -> str:
    doing = " (a deployment is in progress)" if endpoint.deployment is not None else ""
    return (
        f"endpoint {endpoint.endpoint_name} is {endpoint.endpoint_status.value}{doing}; "
        "its variants scale only while it is InService."
    )


def _codes(reasons: list[NotScaledReason] | None) -> list[str]:
    return [r.code for r in reasons or []]


def _key(resource_id: str, dimension: ScalableDimension) -> TargetKey:
    return target_key(parse_resource_id(resource_id), dimension)


def _resource_keys(resource_ids: list[str] | None) -> list[str] | None:
    if not resource_ids:
        return None
    return [resource_key(parse_resource_id(r)) for r in resource_ids]


def _no_target(resource_id: str, dimension: ScalableDimension) -> str:
    return (
        f"No scalable target registered for service namespace: sagemaker, resource ID: "
        f"{resource_id}, scalable dimension: {dimension.value}"
    )


def _no_policy(resource_id: str, dimension: ScalableDimension, name: str) -> str:
    return (
        f"No scaling policy found for service namespace: sagemaker, resource ID: {resource_id}, "
        f"scalable dimension: {dimension.value}, policy name: {name}"
    )


def _encode(kind: str, after: int | None) -> str | None:
    if after is None:
        return None
    return base64.urlsafe_b64encode(json.dumps([kind, after]).encode()).decode()


def _decode(token: str | None, kind: str) -> int | None:
    """The id a NextToken continues after; InvalidNextToken unless this API made it for
    this listing."""
    if token is None:
        return None
    try:
        found, after = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise InvalidNextToken(f"Invalid NextToken: {token[:64]!r}.") from exc
    if found != kind or not isinstance(after, int) or isinstance(after, bool):
        raise InvalidNextToken(f"Invalid NextToken: {token[:64]!r}.")
    return after
