"""Endpoint operations: create, describe, list, update, delete.

These only write desired state (an :class:`Endpoint` record with its status, and for
UpdateEndpoint a planned :class:`~shipway.domain.deployment.Deployment`) and wake the
controller, which starts and stops instances and moves the status and the deployment on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from shipway.control.rollout import Plan, plan
from shipway.domain.clock import Clock
from shipway.domain.deployment import (
    Deployment,
    DeploymentConfig,
    DeploymentPhase,
    UpdateEndpointInput,
    VariantProperty,
)
from shipway.domain.endpoint import (
    CreateEndpointInput,
    CreateEndpointOutput,
    DeployedImage,
    DescribeEndpointOutput,
    DesiredWeightAndCapacity,
    Endpoint,
    EndpointStatus,
    EndpointSummary,
    InstanceFailure,
    PendingDeploymentSummary,
    PendingProductionVariantSummary,
    ProductionVariantStatus,
    ProductionVariantSummary,
    UpdateEndpointWeightsAndCapacitiesInput,
    VariantState,
    VariantStatusValue,
    find_model,
)
from shipway.domain.endpoint_config import EndpointConfig, ProductionVariant, ServerlessConfig
from shipway.domain.errors import InvalidState, NotFound, ResourceLimitExceeded, ValidationError
from shipway.domain.instance import Instance, InstanceStatus
from shipway.domain.listing import ListEndpointsInput
from shipway.domain.model import Model
from shipway.domain.names import Account
from shipway.store.metadata import MetadataStore

__all__ = ["AlarmLookup", "EndpointService"]

KIND = "endpoint"


class AlarmLookup(Protocol):
    """What deployments need of the alarms: which exist, and their states."""

    def missing(self, names: Sequence[str]) -> list[str]: ...

    def states(self, names: Sequence[str]) -> Mapping[str, str]: ...


class EndpointService:
    def __init__(
        self,
        store: MetadataStore,
        account: Account,
        clock: Clock,
        on_change: Callable[[str], None] = lambda _name: None,
        max_instances: int | None = None,
        alarms: AlarmLookup | None = None,
    ) -> None:
        self._alarms = alarms
        self._max_instances = max_instances
        self._store = store
        self._account = account
        self._clock = clock
        self._on_change = on_change

    def arn(self, name: str) -> str:
        return self._account.arn(KIND, name)

    def create_endpoint(self, request: CreateEndpointInput) -> CreateEndpointOutput:
        config, models = self._config(request.endpoint_config_name)
        if request.deployment_config is not None:
            self._check_alarms(request.deployment_config)
        self._check_quota(sum(v.initial_instance_count or 0 for v in config.production_variants))
        now = self._clock.now()
        arn = self.arn(request.endpoint_name)
        endpoint = Endpoint(
            endpoint_name=request.endpoint_name,
            endpoint_arn=arn,
            endpoint_config_name=config.endpoint_config_name,
            endpoint_status=EndpointStatus.CREATING,
            creation_time=now,
            last_modified_time=now,
            config=config,
            models=models,
            variants=[
                VariantState(
                    variant_name=v.variant_name,
                    desired_weight=v.weight,
                    desired_instance_count=v.initial_instance_count or 0,
                    desired_serverless_config=v.serverless_config,
                )
                for v in config.production_variants
            ],
            deployment_config=request.deployment_config,
            tags=request.tags,
        )
        self._store.endpoints.add(endpoint, KIND, arn)
        self._on_change(endpoint.endpoint_name)
        return CreateEndpointOutput(endpoint_arn=arn)

    def _config(self, name: str) -> tuple[EndpointConfig, list[Model]]:
        """A configuration to deploy and copies of the models it names (each once): they must
        all exist now; the endpoint keeps the copies, so later deletions change nothing."""
        config = self._store.endpoint_configs.get(name)
        if config is None:
            raise NotFound(
                "endpoint configuration", name, self._account.arn("endpoint-config", name)
            )
        models: dict[str, Model] = {}
        for variant in config.all_variants():
            model_name = variant.model_name or ""
            model = self._store.models.get(model_name)
            if model is None:
                raise NotFound("model", model_name, self._account.arn("model", model_name))
            models.setdefault(model.model_name.lower(), model)
        return config, list(models.values())

    def _check_alarms(self, policy: DeploymentConfig) -> None:
        names = policy.alarm_names
        missing = self._alarms.missing(names) if self._alarms is not None and names else []
        if self._alarms is None and names:
            missing = names
        if missing:
            raise ValidationError(
                f"AutoRollbackConfiguration names alarm{'s' if len(missing) > 1 else ''} that "
                f"do{'' if len(missing) > 1 else 'es'} not exist: {', '.join(missing)}. Create "
                "them first (CloudWatch PutMetricAlarm, or `shipway alarms put`)."
            )

    def update_endpoint(self, request: UpdateEndpointInput) -> CreateEndpointOutput:
        """Deploy a new configuration to a running endpoint (SageMaker §5.3, §5.4).

        Everything is checked and the whole deployment planned here, so a bad request leaves
        the running endpoint untouched; the controller then carries the plan out.
        """
        endpoint = self.get(request.endpoint_name)
        _check_updatable(endpoint)
        config, models = self._config(request.endpoint_config_name)
        if _serverless(endpoint.config) or _serverless(config):
            raise ValidationError(
                "UpdateEndpoint to or from a serverless endpoint configuration is not supported "
                "yet: change its concurrency with UpdateEndpointWeightsAndCapacities "
                "(ServerlessUpdateConfig), or delete the endpoint and create it again."
            )
        if request.retain_deployment_config and request.deployment_config is not None:
            raise ValidationError(
                "Give either DeploymentConfig or RetainDeploymentConfig=true, not both."
            )
        given = (
            endpoint.deployment_config
            if request.retain_deployment_config
            else request.deployment_config
        )
        policy = given or DeploymentConfig()
        self._check_alarms(policy)
        excluded = {
            p.variant_property_type for p in request.exclude_retained_variant_properties or []
        }
        # (without RetainAllVariantProperties the exclusions have nothing to act on: ignored)
        variants = _new_variants(
            endpoint, config, retain=bool(request.retain_all_variant_properties), excluded=excluded
        )
        if not any(v.desired_weight > 0 and v.desired_instance_count > 0 for v in variants):
            raise ValidationError(
                "At least one variant of the new configuration must have a weight above 0 and "
                "at least one instance."
            )
        old_counts = _counts(
            endpoint.config, {v.variant_name: v.desired_instance_count for v in endpoint.variants}
        )
        new_counts = _counts(config, {v.variant_name: v.desired_instance_count for v in variants})
        steps = plan(
            policy,
            old_counts=old_counts,
            new_counts=new_counts,
            old_production=[v.variant_name for v in endpoint.config.production_variants],
            new_production=[v.variant_name for v in config.production_variants],
        )
        self._check_quota(_peak(steps, old_counts) - sum(old_counts.values()))
        now = self._clock.now()
        generation = endpoint.latest_generation + 1
        deployment = Deployment(
            endpoint_config_name=config.endpoint_config_name,
            config=config,
            models=models,
            variants=variants,
            generation=generation,
            deployment_config=policy,
            steps=steps.steps,
            bake_seconds=steps.bake_seconds,
            termination_wait_seconds=steps.termination_wait_seconds,
            maximum_execution_seconds=steps.maximum_execution_seconds,
            rollback_batch=steps.rollback_batch,
            started=now,
            phase_started=now,
            new_counts=steps.steps[0].new_counts,
            old_counts=old_counts,
            old_full_counts=old_counts,
            old_production=[v.variant_name for v in endpoint.config.production_variants],
        )

        def deploying(current: Endpoint) -> Endpoint:
            _check_updatable(current)
            if (current.variants, current.latest_generation) != (
                endpoint.variants,
                endpoint.latest_generation,
            ):
                raise InvalidState(
                    f'Endpoint "{current.endpoint_arn}" changed while this update was being '
                    "planned; try again."
                )
            return current.model_copy(
                update={
                    "deployment": deployment,
                    "deployment_config": given,
                    "latest_generation": generation,
                    "endpoint_status": EndpointStatus.UPDATING,
                    "failure_reason": None,
                    "last_modified_time": now,
                }
            )

        self._store.endpoints.update(endpoint.endpoint_name, deploying)
        self._on_change(endpoint.endpoint_name)
        return CreateEndpointOutput(endpoint_arn=endpoint.endpoint_arn)

    def update_endpoint_weights_and_capacities(
        self, request: UpdateEndpointWeightsAndCapacitiesInput
    ) -> CreateEndpointOutput:
        """Change variants' weights and instance counts in place (SageMaker §5.5).

        The endpoint is ``Updating`` until the controller has every variant at its new count;
        new weights route at once. Variants not named keep what they have.
        """
        endpoint = self.get(request.endpoint_name)
        _check_updatable(endpoint)
        changes = {c.variant_name: c for c in request.desired_weights_and_capacities}
        known = {v.variant_name for v in endpoint.variants}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValidationError(
                f"Endpoint {endpoint.endpoint_name} has no variant {', '.join(unknown)}; its "
                f"variants are {', '.join(sorted(known))}."
            )
        for change in changes.values():
            _check_capacity_change(endpoint, change)
        variants = [
            v.model_copy(
                update={
                    "desired_weight": _given(
                        changes, v.variant_name, "desired_weight", v.desired_weight
                    ),
                    "desired_instance_count": _given(
                        changes, v.variant_name, "desired_instance_count", v.desired_instance_count
                    ),
                    "desired_serverless_config": _serverless_update(v, changes.get(v.variant_name)),
                }
            )
            for v in endpoint.variants
        ]
        if not any(
            v.desired_weight > 0
            and (v.desired_instance_count > 0 or v.desired_serverless_config is not None)
            for v in variants
        ):
            raise ValidationError(
                "At least one variant must keep a weight above 0 and at least one instance."
            )
        growth = sum(v.desired_instance_count for v in variants) - sum(
            v.desired_instance_count for v in endpoint.variants
        )
        self._check_quota(max(0, growth))
        now = self._clock.now()

        def updating(current: Endpoint) -> Endpoint:
            _check_updatable(current)
            return current.model_copy(
                update={
                    "variants": variants,
                    "endpoint_status": EndpointStatus.UPDATING,
                    "last_modified_time": now,
                }
            )

        self._store.endpoints.update(endpoint.endpoint_name, updating)
        self._on_change(endpoint.endpoint_name)
        return CreateEndpointOutput(endpoint_arn=endpoint.endpoint_arn)

    def _check_quota(self, more: int) -> None:
        if self._max_instances is None:
            return
        asked = sum(e.instances_asked() for e in self._store.endpoints.all())
        if asked + more > self._max_instances:
            raise ResourceLimitExceeded(
                f"The endpoints would need {asked + more} instances; this server allows "
                f"{self._max_instances} (SHIPWAY_MAX_INSTANCES). Delete endpoints or raise the "
                "limit."
            )

    def get(self, name: str) -> Endpoint:
        endpoint = self._store.endpoints.get(name)
        if endpoint is None:
            raise NotFound(KIND, name, self.arn(name))
        return endpoint

    def describe_endpoint(self, name: str) -> DescribeEndpointOutput:
        endpoint = self.get(name)
        instances = self._store.instances.for_endpoint(endpoint.endpoint_name)
        serving = endpoint.endpoint_status in (
            EndpointStatus.IN_SERVICE,
            EndpointStatus.UPDATING,
            EndpointStatus.ROLLING_BACK,
            EndpointStatus.UPDATE_ROLLBACK_FAILED,
        )

        def in_service(generation: int, variant: str) -> int:
            return sum(
                1
                for i in instances
                if i.generation == generation
                and i.variant_name == variant
                and i.status is InstanceStatus.IN_SERVICE
            )

        d = endpoint.deployment
        weights = {v.variant_name: v.desired_weight for v in endpoint.variants}
        counts = {v.variant_name: v.desired_instance_count for v in endpoint.variants}
        share = d.share if d is not None else 0.0
        heading = 0.0  # the new fleet's share where the deployment is heading now
        if d is not None and d.phase is not DeploymentPhase.ROLLING_BACK:
            heading = d.current_step.share
        # during a deployment the old fleet's weights are the fractions of traffic the router
        # gives each of its variants (the new fleet's are in PendingDeploymentSummary)
        scale = 1.0 / (sum(weights.values()) or 1.0) if d is not None else 1.0
        summaries = []
        states = {v.variant_name: v for v in endpoint.variants}
        for variant in endpoint.config.production_variants:
            weight = weights.get(variant.variant_name, 0.0) * scale
            current = in_service(endpoint.generation, variant.variant_name)
            desired = counts.get(variant.variant_name, 0)
            if d is not None:
                desired = d.old_counts.get(variant.variant_name, desired)
            state = states.get(variant.variant_name)
            serverless = state.desired_serverless_config if state is not None else None
            summaries.append(
                ProductionVariantSummary(
                    **self._summary(endpoint, endpoint.models, variant),
                    current_weight=weight * (1 - share) if serving else None,
                    desired_weight=weight * (1 - heading),
                    # a serverless variant's instances come and go with its traffic: it shows
                    # how many are warm now, and no desired count (SageMaker shows neither)
                    current_instance_count=current,
                    desired_instance_count=None if serverless is not None else desired,
                    current_serverless_config=serverless if serving else None,
                    desired_serverless_config=serverless,
                    variant_status=(
                        None if serverless is not None else _old_status(d, current, desired)
                    ),
                    last_instance_failure=_last_failure(instances, variant.variant_name),
                )
            )
        shadows = [
            ProductionVariantSummary(
                **self._summary(endpoint, endpoint.models, v),
                current_weight=v.weight if serving else None,
                desired_weight=v.weight,
                current_instance_count=in_service(endpoint.generation, v.variant_name),
                desired_instance_count=v.initial_instance_count,
                last_instance_failure=_last_failure(instances, v.variant_name),
            )
            for v in endpoint.config.shadow_production_variants or []
        ]
        return DescribeEndpointOutput(
            endpoint_name=endpoint.endpoint_name,
            endpoint_arn=endpoint.endpoint_arn,
            endpoint_config_name=endpoint.endpoint_config_name,
            production_variants=summaries,
            shadow_production_variants=shadows or None,
            endpoint_status=endpoint.endpoint_status,
            failure_reason=endpoint.failure_reason,
            creation_time=endpoint.creation_time,
            last_modified_time=endpoint.last_modified_time,
            last_deployment_config=endpoint.deployment_config,
            async_inference_config=endpoint.config.async_inference_config,
            pending_deployment_summary=(
                self._pending(endpoint, d, in_service) if d is not None else None
            ),
        )

    def _summary(
        self, endpoint: Endpoint, models: list[Model], variant: ProductionVariant
    ) -> dict[str, Any]:
        name = variant.model_name or ""
        # the copy the fleet runs; endpoints stored before copies were kept read the model
        model = find_model(models, name) or self._store.models.get(name)
        image = model.all_containers()[0].image if model is not None else None
        return {
            "variant_name": variant.variant_name,
            "deployed_images": [
                DeployedImage(
                    specified_image=image,
                    resolved_image=image,
                    resolution_time=endpoint.creation_time,
                )
            ],
            "routing_config": variant.routing_config,
        }

    def _pending(
        self, endpoint: Endpoint, d: Deployment, in_service: Callable[[int, str], int]
    ) -> PendingDeploymentSummary:
        weights = {v.variant_name: v.desired_weight for v in d.variants}
        final = {v.variant_name: v.desired_instance_count for v in d.variants}
        total = sum(weights.values()) or 1.0
        production = []
        for variant in d.config.production_variants:
            current = in_service(d.generation, variant.variant_name)
            production.append(
                PendingProductionVariantSummary(
                    **self._summary(endpoint, d.models, variant),
                    # the fraction of traffic it takes now; desired: its configured weight
                    current_weight=weights.get(variant.variant_name, 0.0) * d.share / total,
                    desired_weight=weights.get(variant.variant_name, 0.0),
                    current_instance_count=current,
                    desired_instance_count=final.get(variant.variant_name, 0),
                    variant_status=[
                        _new_status(d, current, d.new_counts.get(variant.variant_name, 0))
                    ],
                    instance_type=variant.instance_type,
                    accelerator_type=variant.accelerator_type,
                )
            )
        shadows = [
            PendingProductionVariantSummary(
                **self._summary(endpoint, d.models, v),
                current_weight=0.0,  # mirrored to once the deployment completes
                desired_weight=v.weight,
                current_instance_count=in_service(d.generation, v.variant_name),
                desired_instance_count=v.initial_instance_count,
                instance_type=v.instance_type,
            )
            for v in d.config.shadow_production_variants or []
        ]
        return PendingDeploymentSummary(
            endpoint_config_name=d.endpoint_config_name,
            production_variants=production,
            shadow_production_variants=shadows or None,
            start_time=d.started,
        )

    def deployment_view(self, endpoint: Endpoint) -> dict[str, Any]:
        """The deployment in progress as the CLI shows it: plan, step, phase, timings, alarms."""
        d = endpoint.deployment
        assert d is not None
        names = d.deployment_config.alarm_names
        states = self._alarms.states(names) if self._alarms is not None and names else {}
        view = d.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"config"})
        view["EndpointStatus"] = endpoint.endpoint_status.value
        view["Alarms"] = [
            {"AlarmName": n, "StateValue": str(states.get(n, "MISSING"))} for n in names
        ]
        view["Now"] = self._clock.now().isoformat()
        return view

    def list_instances(self, name: str) -> list[Instance]:
        """The instances running for an endpoint, as the controller last recorded them."""
        endpoint = self.get(name)
        return self._store.instances.for_endpoint(endpoint.endpoint_name)

    def list_endpoints(self, query: ListEndpointsInput) -> tuple[list[EndpointSummary], str | None]:
        endpoints, token = self._store.endpoints.page(query)
        return [
            EndpointSummary(
                endpoint_name=e.endpoint_name,
                endpoint_arn=e.endpoint_arn,
                creation_time=e.creation_time,
                last_modified_time=e.last_modified_time,
                endpoint_status=e.endpoint_status,
            )
            for e in endpoints
        ], token

    def delete_endpoint(self, name: str) -> None:
        endpoint = self.get(name)
        if endpoint.endpoint_status is EndpointStatus.DELETING:
            return
        now = self._clock.now()

        def deleting(current: Endpoint) -> Endpoint:
            if current.endpoint_status in (EndpointStatus.UPDATING, EndpointStatus.ROLLING_BACK):
                raise InvalidState(
                    f'Cannot delete endpoint "{current.endpoint_arn}" while it is '
                    f"{current.endpoint_status.value}."
                )
            if current.endpoint_status is EndpointStatus.DELETING:
                return current
            return current.model_copy(
                update={"endpoint_status": EndpointStatus.DELETING, "last_modified_time": now}
            )

        if self._store.endpoints.update(endpoint.endpoint_name, deleting) is None:
            raise NotFound(KIND, name, self.arn(name))
        self._on_change(endpoint.endpoint_name)


def _given(changes: dict[str, Any], variant: str, field: str, current: Any) -> Any:
    """The new value of a variant's field if the request gives one, else the current one."""
    change = changes.get(variant)
    value = getattr(change, field, None) if change is not None else None
    return current if value is None else value


def _check_updatable(endpoint: Endpoint) -> None:
    if endpoint.endpoint_status is EndpointStatus.UPDATE_ROLLBACK_FAILED:
        raise InvalidState(
            f'Cannot update endpoint "{endpoint.endpoint_arn}": it is UpdateRollbackFailed, '
            "serving from both its old and its new instances after a rollback that could not "
            "finish. Delete it and create it again."
        )
    if endpoint.endpoint_status is not EndpointStatus.IN_SERVICE:
        doing = " (a deployment is in progress)" if endpoint.deployment is not None else ""
        raise InvalidState(
            f'Cannot update endpoint "{endpoint.endpoint_arn}" while it is '
            f"{endpoint.endpoint_status.value}{doing}; it must be InService."
        )


def _serverless(config: EndpointConfig) -> bool:
    return any(v.serverless_config is not None for v in config.production_variants)


def _check_capacity_change(endpoint: Endpoint, change: DesiredWeightAndCapacity) -> None:
    """Instance counts for instance variants, ServerlessUpdateConfig for serverless ones."""
    state = next(v for v in endpoint.variants if v.variant_name == change.variant_name)
    serverless = state.desired_serverless_config
    if serverless is None and change.serverless_update_config is not None:
        raise ValidationError(
            f"Variant {change.variant_name} is not serverless: it takes DesiredInstanceCount, "
            "not ServerlessUpdateConfig."
        )
    if serverless is not None and change.desired_instance_count is not None:
        raise ValidationError(
            f"Variant {change.variant_name} is serverless: change it with "
            "ServerlessUpdateConfig (MaxConcurrency, ProvisionedConcurrency), not "
            "DesiredInstanceCount."
        )
    update = change.serverless_update_config
    if serverless is not None and update is not None:
        maximum = update.max_concurrency or serverless.max_concurrency
        provisioned = update.provisioned_concurrency or serverless.provisioned_concurrency
        if provisioned is not None and provisioned > maximum:
            raise ValidationError(
                f"ProvisionedConcurrency {provisioned} of variant {change.variant_name} must not "
                f"exceed its MaxConcurrency {maximum}."
            )


def _serverless_update(
    state: VariantState, change: DesiredWeightAndCapacity | None
) -> ServerlessConfig | None:
    """The variant's serverless configuration after a ServerlessUpdateConfig, if any."""
    current = state.desired_serverless_config
    if current is None or change is None or change.serverless_update_config is None:
        return current
    update = change.serverless_update_config
    return current.model_copy(
        update={
            k: v
            for k, v in (
                ("max_concurrency", update.max_concurrency),
                ("provisioned_concurrency", update.provisioned_concurrency),
            )
            if v is not None
        }
    )


def _new_variants(
    endpoint: Endpoint, config: EndpointConfig, *, retain: bool, excluded: set[VariantProperty]
) -> list[VariantState]:
    """The new fleet's weights and counts: the new configuration's, or with
    RetainAllVariantProperties the endpoint's live values for variants it already has (except
    the properties in ExcludeRetainedVariantProperties)."""
    current = {v.variant_name: v for v in endpoint.variants} if retain else {}
    variants = []
    for variant in config.production_variants:
        kept = current.get(variant.variant_name)
        weight, count = variant.weight, variant.initial_instance_count or 0
        if kept is not None and VariantProperty.DESIRED_WEIGHT not in excluded:
            weight = kept.desired_weight
        if kept is not None and VariantProperty.DESIRED_INSTANCE_COUNT not in excluded:
            count = kept.desired_instance_count
        variants.append(
            VariantState(
                variant_name=variant.variant_name,
                desired_weight=weight,
                desired_instance_count=count,
            )
        )
    return variants


def _counts(config: EndpointConfig, production: dict[str, int]) -> dict[str, int]:
    """Instances per variant of a fleet: production counts as given, shadows as configured."""
    counts = {v.variant_name: production.get(v.variant_name, 0) for v in config.production_variants}
    for shadow in config.shadow_production_variants or []:
        counts[shadow.variant_name] = shadow.initial_instance_count or 0
    return counts


def _peak(steps: Plan, old_counts: dict[str, int]) -> int:
    """The most instances both fleets run at once during the deployment."""
    peak = 0
    old = sum(old_counts.values())
    for step in steps.steps:
        peak = max(peak, sum(step.new_counts.values()) + old)
        old = sum(step.old_counts.values())
    return peak


def _old_status(
    d: Deployment | None, current: int, desired: int
) -> list[ProductionVariantStatus] | None:
    """The old fleet's stage during a deployment: being removed, or restored by a rollback."""
    if d is None:
        return None
    if d.phase is DeploymentPhase.ROLLING_BACK:
        return [
            ProductionVariantStatus(
                status=VariantStatusValue.ACTIVATING_TRAFFIC,
                status_message=f"Rolling back: {d.reason}",
                start_time=d.phase_started,
            )
        ]
    if d.phase is DeploymentPhase.DELETING_OLD_FLEET:
        return [
            ProductionVariantStatus(
                status=VariantStatusValue.DELETING,
                status_message="The deployment succeeded: the old fleet drains and stops.",
                start_time=d.phase_started,
            )
        ]
    if d.phase is DeploymentPhase.TERMINATION_WAIT:
        return [
            ProductionVariantStatus(
                status=VariantStatusValue.DELETING,
                status_message=(
                    f"Kept for {d.termination_wait_seconds:.0f} s "
                    "(TerminationWaitInSeconds) for a fast rollback, then removed."
                ),
                start_time=d.phase_started,
            )
        ]
    if current > desired:
        return [
            ProductionVariantStatus(
                status=VariantStatusValue.DELETING,
                status_message=f"Removing {current - desired} old instance(s).",
                start_time=d.phase_started,
            )
        ]
    return None


def _new_status(d: Deployment, current: int, needed: int) -> ProductionVariantStatus:
    """The new fleet's stage: Creating, ActivatingTraffic, Baking, or Deleting (rollback)."""
    step = f"step {d.step + 1} of {len(d.steps)}"
    alarms = d.deployment_config.alarm_names
    watching = f"; watching alarm(s) {', '.join(alarms)}" if alarms else ""
    if d.phase is DeploymentPhase.ROLLING_BACK:
        status, message = VariantStatusValue.DELETING, f"Rolling back: {d.reason}"
    elif d.phase is DeploymentPhase.PROVISIONING and current < needed:
        status = VariantStatusValue.CREATING
        message = f"Starting instances for {step}: {current} of {needed} in service."
    elif d.phase is DeploymentPhase.PROVISIONING:
        status = VariantStatusValue.ACTIVATING_TRAFFIC
        message = f"Moving {d.current_step.share:.0%} of traffic to the new fleet ({step})."
    elif d.phase is DeploymentPhase.DELETING_OLD_FLEET:
        status = VariantStatusValue.UPDATING
        message = "All traffic on the new fleet; removing the old fleet."
    elif d.phase is DeploymentPhase.BAKING:
        status = VariantStatusValue.BAKING
        message = (
            f"{d.share:.0%} of traffic on the new fleet ({step}); baking for "
            f"{d.bake_seconds:.0f} s{watching}."
        )
    else:
        status = VariantStatusValue.BAKING
        message = (
            "All traffic on the new fleet; waiting TerminationWaitInSeconds "
            f"({d.termination_wait_seconds:.0f} s) before removing the old fleet{watching}."
        )
    return ProductionVariantStatus(
        status=status, status_message=message, start_time=d.phase_started
    )


def _last_failure(instances: list[Instance], variant: str) -> InstanceFailure | None:
    """The latest failure among the variant's instances (the controller keeps the last one)."""
    failed = [
        i for i in instances if i.variant_name == variant and i.status is InstanceStatus.FAILED
    ]
    if not failed:
        return None
    last = max(failed, key=lambda i: i.started_at)
    return InstanceFailure(
        instance_id=last.instance_id,
        reason=last.failure_reason or "the instance failed",
        time=datetime.fromtimestamp(last.failed_at, UTC) if last.failed_at else None,
    )
