"""``shipway scaling``: register variants for autoscaling, put and delete target tracking
policies, show them with their alarms, and list what scaling did (Application Auto Scaling's
operations, through the REST API)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipway.cli.client import ClientError, ShipwayClient
from shipway.cli.render import AsJson, MaxResults, console, print_json, timestamp
from shipway.domain.scaling import (
    EndpointScaling,
    PolicyType,
    ScalableDimension,
    ScalableTargetUpdate,
    ScalingActivity,
    ScalingActivityStatusCode,
    ScalingPolicy,
    ScalingPolicyDefinition,
    VariantScaling,
)
from shipway.domain.shape import dump, parse

if TYPE_CHECKING:
    from shipway.domain.endpoint import DescribeEndpointOutput

__all__ = [
    "METRICS",
    "activities",
    "app",
    "delete_policy",
    "deregister",
    "metric_specification",
    "policy",
    "register",
    "show",
    "watch",
]

app = typer.Typer(
    help="Autoscaling of endpoint variants: register, policy, show, watch, activities, "
    "deregister, delete-policy.",
    no_args_is_help=True,
)

Endpoint = Annotated[str, typer.Argument(help="The endpoint's name.", show_default=False)]
Variant = Annotated[
    str | None,
    typer.Option(help="The variant (default: the endpoint's only one).", show_default=False),
]
PolicyNameArgument = Annotated[str, typer.Argument(help="The policy's name.", show_default=False)]

METRICS: dict[str, dict[str, Any]] = {
    "invocations": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
    "concurrency": {
        "PredefinedMetricType": "SageMakerVariantConcurrentRequestsPerModelHighResolution"
    },
    "provisioned": {"PredefinedMetricType": "SageMakerVariantProvisionedConcurrencyUtilization"},
    "cpu": {"Namespace": "/aws/sagemaker/Endpoints", "MetricName": "CPUUtilization"},
    "memory": {"Namespace": "/aws/sagemaker/Endpoints", "MetricName": "MemoryUtilization"},
}
"""``--metric`` shorthands: predefined metrics, and the instance metrics as customized ones."""

_STATUS_COLORS = {
    ScalingActivityStatusCode.SUCCESSFUL: "green",
    ScalingActivityStatusCode.FAILED: "red",
    ScalingActivityStatusCode.UNFULFILLED: "yellow",
    ScalingActivityStatusCode.OVERRIDDEN: "yellow",
}
_STATE_COLORS = {"OK": "green", "ALARM": "red", "INSUFFICIENT_DATA": "grey50", "MISSING": "red"}


def metric_specification(
    metric: str, endpoint: str, variant: str, statistic: str
) -> dict[str, Any]:
    """The policy's metric: a shorthand of :data:`METRICS` or ``Namespace:MetricName`` (a
    customized metric of the variant, with ``statistic``), as the policy configuration's
    ``PredefinedMetricSpecification`` or ``CustomizedMetricSpecification`` member."""
    known = METRICS.get(metric.lower())
    if known is not None and "PredefinedMetricType" in known:
        return {"PredefinedMetricSpecification": dict(known)}
    if known is None:
        namespace, colon, name = metric.rpartition(":")
        if not colon or not namespace or not name:
            raise typer.BadParameter(
                f"{metric!r} is not one of {', '.join(METRICS)}, nor Namespace:MetricName",
                param_hint="--metric",
            )
        known = {"Namespace": namespace, "MetricName": name}
    return {
        "CustomizedMetricSpecification": {
            **known,
            "Dimensions": [
                {"Name": "EndpointName", "Value": endpoint},
                {"Name": "VariantName", "Value": variant},
            ],
            "Statistic": statistic,
        }
    }


def _variant(client: ShipwayClient, endpoint: str, variant: str | None) -> str:
    """The variant named, or the endpoint's only production variant."""
    if variant is not None:
        return variant
    described = client.describe_endpoint(endpoint)
    names = [v.variant_name for v in described.production_variants or []]
    if len(names) != 1:
        raise ClientError(
            f"endpoint {endpoint} has {len(names)} variants ({', '.join(names)}): give --variant"
        )
    return names[0]


@app.command()
def register(
    ctx: typer.Context,
    endpoint: Endpoint,
    variant: Variant = None,
    min_capacity: Annotated[
        int | None,
        typer.Option("--min", min=0, help="MinCapacity (needed at first).", show_default=False),
    ] = None,
    max_capacity: Annotated[
        int | None,
        typer.Option("--max", min=0, help="MaxCapacity (needed at first).", show_default=False),
    ] = None,
    suspend_in: Annotated[
        bool | None,
        typer.Option(
            "--suspend-in/--resume-in", help="Suspend scaling in (or resume).", show_default=False
        ),
    ] = None,
    suspend_out: Annotated[
        bool | None,
        typer.Option(
            "--suspend-out/--resume-out",
            help="Suspend scaling out (or resume).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Let a variant scale between --min and --max, or change those.

    A desired capacity outside the new range is brought inside it."""
    client = ctx.ensure_object(ShipwayClient)
    name = _variant(client, endpoint, variant)
    document: dict[str, Any] = {"MinCapacity": min_capacity, "MaxCapacity": max_capacity}
    suspended = {
        "DynamicScalingInSuspended": suspend_in,
        "DynamicScalingOutSuspended": suspend_out,
    }
    if any(v is not None for v in suspended.values()):
        document["SuspendedState"] = {k: v for k, v in suspended.items() if v is not None}
    update = parse(ScalableTargetUpdate, {k: v for k, v in document.items() if v is not None})
    target = client.register_scalable_target(endpoint, name, update)
    console.print(
        f"Variant [bold]{escape(name)}[/] of [bold]{escape(endpoint)}[/] scales between "
        f"{target.min_capacity} and {target.max_capacity} "
        f"({escape(_dimension(target.scalable_dimension))})"
    )


@app.command()
def policy(
    ctx: typer.Context,
    endpoint: Endpoint,
    name: PolicyNameArgument,
    target_value: Annotated[
        float,
        typer.Option(help="The value to hold the metric at (invocations: per minute).", min=0),
    ],
    variant: Variant = None,
    metric: Annotated[
        str,
        typer.Option(
            metavar="METRIC",
            help="invocations (per instance), concurrency, provisioned, cpu, memory, or "
            "Namespace:MetricName.",
        ),
    ] = "invocations",
    statistic: Annotated[
        str, typer.Option(help="For cpu, memory and Namespace:MetricName.")
    ] = "Average",
    scale_in_cooldown: Annotated[
        int | None,
        typer.Option(min=0, help="Seconds after a scale-in (default 300).", show_default=False),
    ] = None,
    scale_out_cooldown: Annotated[
        int | None,
        typer.Option(min=0, help="Seconds after a scale-out (default 300).", show_default=False),
    ] = None,
    disable_scale_in: Annotated[
        bool, typer.Option("--disable-scale-in", help="Scale out only.")
    ] = False,
) -> None:
    """Create a target tracking policy, or replace the one of that name.

    The variant must be registered first (shipway scaling register)."""
    client = ctx.ensure_object(ShipwayClient)
    variant_name = _variant(client, endpoint, variant)
    configuration: dict[str, Any] = {
        "TargetValue": target_value,
        **metric_specification(metric, endpoint, variant_name, statistic),
        "ScaleInCooldown": scale_in_cooldown,
        "ScaleOutCooldown": scale_out_cooldown,
        "DisableScaleIn": True if disable_scale_in else None,
    }
    definition = parse(
        ScalingPolicyDefinition,
        {
            "PolicyType": PolicyType.TARGET_TRACKING.value,
            "TargetTrackingScalingPolicyConfiguration": {
                k: v for k, v in configuration.items() if v is not None
            },
        },
    )
    created = client.put_scaling_policy(endpoint, variant_name, name, definition)
    alarms = ", ".join(a.alarm_name for a in created.alarms or [])
    console.print(
        f"Policy [bold]{escape(created.policy_name)}[/] holds {escape(_metric(created))} at "
        f"{target_value:g} on [bold]{escape(variant_name)}[/] of [bold]{escape(endpoint)}[/]"
    )
    if alarms:
        console.print(f"Alarms: {escape(alarms)}")


@app.command()
def show(ctx: typer.Context, endpoint: Endpoint, as_json: AsJson = False) -> None:
    """Show an endpoint's scalable variants, policies and alarm states."""
    scaling = ctx.ensure_object(ShipwayClient).endpoint_scaling(endpoint)
    if as_json:
        print_json(dump(scaling))
        return
    _render(scaling)


@app.command("activities")
def activities(
    ctx: typer.Context,
    endpoint: Endpoint,
    variant: Annotated[
        str | None, typer.Option(help="Only this variant's.", show_default=False)
    ] = None,
    include_not_scaled: Annotated[
        bool, typer.Option("--all", help="Also the decisions that did not scale.")
    ] = False,
    max_results: MaxResults = None,
    as_json: AsJson = False,
) -> None:
    """What scaling did to an endpoint's variants, newest first."""
    found = ctx.ensure_object(ShipwayClient).scaling_activities(
        endpoint, variant=variant, include_not_scaled=include_not_scaled, max_results=max_results
    )
    if as_json:
        print_json({"ScalingActivities": [dump(a) for a in found]})
        return
    if not found:
        console.print("No scaling activities.")
    for activity in found:
        _print_activity(activity)


@app.command()
def watch(
    ctx: typer.Context,
    endpoint: Endpoint,
    seconds: Annotated[
        float | None,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="Stop after this long (default: at Ctrl-C).",
            show_default=False,
        ),
    ] = None,
    every: Annotated[
        float, typer.Option(min=0.1, metavar="SECONDS", help="Time between looks.")
    ] = 1.0,
) -> None:
    """Follow an endpoint's instances and scaling live: a line each time they change."""
    client = ctx.ensure_object(ShipwayClient)
    deadline = None if seconds is None else time.monotonic() + seconds
    shown: tuple[str, ...] = ()
    newest: str | None = None
    try:
        while True:
            line = _capacity_line(client.describe_endpoint(endpoint))
            found = client.scaling_activities(endpoint, max_results=1)
            activity = found[0] if found else None
            latest = "" if activity is None else activity.activity_id
            if activity is not None and newest is not None and latest != newest:
                _print_activity(activity)  # newer than the watch's first look
            newest = latest
            if line != shown:
                console.print(f"{timestamp(datetime.now(UTC))}  {'  '.join(line)}")
                shown = line
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(every)
    except KeyboardInterrupt:
        return


def _capacity_line(endpoint: DescribeEndpointOutput) -> tuple[str, ...]:
    """The endpoint's status and each variant's instances in service against its desired
    count (a serverless variant's instances warm)."""
    parts = [endpoint.endpoint_status.value]
    for variant in endpoint.production_variants or []:
        current = variant.current_instance_count or 0
        if variant.desired_serverless_config is not None:
            parts.append(f"{variant.variant_name}: serverless, {current} warm")
        else:
            desired = variant.desired_instance_count
            parts.append(f"{variant.variant_name}: {current}/{desired} instances in service")
    return tuple(parts)


@app.command()
def deregister(ctx: typer.Context, endpoint: Endpoint, variant: Variant = None) -> None:
    """Stop scaling a variant: its policies and their alarms go, its capacity stays."""
    client = ctx.ensure_object(ShipwayClient)
    name = _variant(client, endpoint, variant)
    client.deregister_scalable_target(endpoint, name)
    console.print(f"Variant [bold]{escape(name)}[/] of [bold]{escape(endpoint)}[/] deregistered")


@app.command("delete-policy")
def delete_policy(
    ctx: typer.Context, endpoint: Endpoint, name: PolicyNameArgument, variant: Variant = None
) -> None:
    """Delete a scaling policy (and the alarms it made)."""
    client = ctx.ensure_object(ShipwayClient)
    variant_name = _variant(client, endpoint, variant)
    client.delete_scaling_policy(endpoint, variant_name, name)
    console.print(f"Deleted scaling policy [bold]{escape(name)}[/]")


# --- rendering --------------------------------------------------------------------------------


def _dimension(dimension: ScalableDimension) -> str:
    if dimension is ScalableDimension.PROVISIONED_CONCURRENCY:
        return "provisioned concurrency"
    return "instances"


def _metric(policy: ScalingPolicy) -> str:
    tracking = policy.target_tracking_scaling_policy_configuration
    if tracking is None:
        steps = policy.step_scaling_policy_configuration
        count = len(steps.step_adjustments or []) if steps is not None else 0
        return f"{count} step(s)"
    predefined = tracking.predefined_metric_specification
    if predefined is not None:
        return predefined.predefined_metric_type.value
    custom = tracking.customized_metric_specification
    assert custom is not None
    statistic = custom.statistic.value if custom.statistic is not None else ""
    return f"{custom.namespace} {custom.metric_name} ({statistic})"


def _policy_line(policy: ScalingPolicy) -> str:
    """``busy: target tracking SageMakerVariantInvocationsPerInstance at 70 (cooldowns: out
    300 s, in 120 s)`` (markup-free)."""
    tracking = policy.target_tracking_scaling_policy_configuration
    if tracking is not None:
        scale_in = (
            "disabled" if tracking.disable_scale_in else f"{tracking.scale_in_cooldown_seconds} s"
        )
        return (
            f"{policy.policy_name}: target tracking {_metric(policy)} at "
            f"{tracking.target_value:g} (cooldowns: out {tracking.scale_out_cooldown_seconds} s, "
            f"in {scale_in})"
        )
    steps = policy.step_scaling_policy_configuration
    adjustment = steps.adjustment_type.value if steps and steps.adjustment_type else ""
    cooldown = steps.cooldown_seconds if steps is not None else 0
    return (
        f"{policy.policy_name}: step scaling, {adjustment}, {_metric(policy)} "
        f"(cooldown {cooldown} s)"
    )


def _render(scaling: EndpointScaling) -> None:
    """The targets as a table; each variant's policies and alarms as whole lines (alarm names
    are long, and a cut one is of no use)."""
    if not scaling.variants:
        console.print(
            f"No variant of {escape(scaling.endpoint_name)} is registered for autoscaling."
        )
        return
    targets = Table(
        "Variant", "Scales", "Min", "Max", "Desired", "Suspended", title="Scalable targets"
    )
    for variant in scaling.variants:
        targets.add_row(*_target_row(variant))
    console.print(targets)
    for variant in scaling.variants:
        name = escape(variant.variant_name)
        if not variant.scaling_policies:
            console.print(f"[bold]{name}[/]: no scaling policy")
            continue
        states = {a.alarm_name: a.state_value for a in variant.alarms}
        console.print(f"[bold]Policies of {name}[/] (with their alarms)")
        for item in variant.scaling_policies:
            console.print(f"  {escape(_policy_line(item))}", soft_wrap=True)
            for alarm in item.alarms or []:
                state = states.get(alarm.alarm_name, "MISSING")
                color = _STATE_COLORS.get(state, "white")
                console.print(
                    f"    [{color}]{state:<17}[/] {escape(alarm.alarm_name)}", soft_wrap=True
                )


def _target_row(variant: VariantScaling) -> tuple[str, str, str, str, str, str]:
    target = variant.scalable_target
    state = target.suspended_state
    suspended = [
        label
        for label, flag in (
            ("in", state.dynamic_scaling_in_suspended if state else None),
            ("out", state.dynamic_scaling_out_suspended if state else None),
        )
        if flag
    ]
    return (
        escape(variant.variant_name),
        _dimension(target.scalable_dimension),
        str(target.min_capacity),
        str(target.max_capacity),
        "" if variant.desired_capacity is None else str(variant.desired_capacity),
        ", ".join(suspended) or "no",
    )


def _print_activity(activity: ScalingActivity) -> None:
    """One activity: when, which variant, how it ended, then what and why in whole lines."""
    color = _STATUS_COLORS.get(activity.status_code, "white")
    status = f"[{color}]{activity.status_code.value}[/]"
    if activity.not_scaled_reasons:
        status += f" (not scaled: {', '.join(escape(r.code) for r in activity.not_scaled_reasons)})"
    variant = escape(activity.resource_id.rsplit("/", 1)[1])
    console.print(
        f"{timestamp(activity.end_time or activity.start_time)}  [bold]{variant}[/]  {status}"
    )
    for line in (activity.description, activity.status_message, f"Cause: {activity.cause}"):
        if line:
            console.print(f"  {escape(line)}", soft_wrap=True)
