"""``shipway endpoints``: create (and wait for), describe, list, update (deploy a new
configuration, with a live view of the deployment), watch a deployment, and delete endpoints.

``describe`` of an asynchronous endpoint also shows its queue (requests waiting and under way,
the oldest one's age) and where its answers go (:mod:`shipway.cli.async_invocations`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipway.cli.client import ApiError, ShipwayClient
from shipway.cli.endpoint_configs import (
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_VARIANT_NAME,
    Serverless,
    single_variant,
)
from shipway.cli.render import (
    AsJson,
    MaxResults,
    NameContains,
    SortByOption,
    SortOrderOption,
    console,
    print_list,
    print_resource,
    progress,
    timestamp,
)
from shipway.domain.deployment import UpdateEndpointInput, VariantProperty
from shipway.domain.endpoint import (
    CreateEndpointInput,
    DescribeEndpointOutput,
    EndpointStatus,
    ProductionVariantSummary,
)
from shipway.domain.endpoint_config import CreateEndpointConfigInput
from shipway.domain.shape import parse
from shipway.domain.sorting import SortBy, SortOrder

if TYPE_CHECKING:
    from shipway.domain.async_inference import QueueSummary
    from shipway.monitor.shadow_report import ShadowPairReport, ShadowReport

__all__ = [
    "app",
    "create",
    "delete",
    "describe",
    "list_",
    "shadow_report",
    "status_text",
    "update",
    "watch",
]

app = typer.Typer(
    help="Create, update, watch, describe, list and delete endpoints; compare a shadow variant.",
    no_args_is_help=True,
)

Name = Annotated[
    str, typer.Argument(metavar="NAME", help="The endpoint's name.", show_default=False)
]
Timeout = Annotated[float, typer.Option(min=0, metavar="SECONDS", help="Wait this long at most.")]

_COLORS = {
    EndpointStatus.IN_SERVICE: "green",
    EndpointStatus.FAILED: "red",
    EndpointStatus.UPDATE_ROLLBACK_FAILED: "red",
    EndpointStatus.OUT_OF_SERVICE: "red",
}


def status_text(status: EndpointStatus) -> str:
    """The status as rich markup: green in service, red failed, yellow on the way."""
    return f"[{_COLORS.get(status, 'yellow')}]{status.value}[/]"


def _instances(endpoint: DescribeEndpointOutput) -> str:
    variants = endpoint.production_variants or []
    current = sum(v.current_instance_count or 0 for v in variants)
    if all(v.desired_serverless_config is not None for v in variants):
        return f"serverless, {current} instance{'s' if current != 1 else ''} warm"
    desired = sum(v.desired_instance_count or 0 for v in variants)
    return f"{current}/{desired} instances"


@app.command()
def create(
    ctx: typer.Context,
    name: Name,
    config: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="The endpoint configuration to serve.", show_default=False
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="Instead of --config: serve this model.", show_default=False
        ),
    ] = None,
    instance_type: Annotated[
        str, typer.Option(metavar="TYPE", help="With --model: the instance type.")
    ] = DEFAULT_INSTANCE_TYPE,
    count: Annotated[int, typer.Option(min=1, help="With --model: the instances.")] = 1,
    serverless: Serverless = None,
    wait: Annotated[
        bool, typer.Option(help="Wait until the endpoint is InService (or Failed).")
    ] = True,
    timeout: Timeout = 600.0,
) -> None:
    """Create an endpoint serving an endpoint configuration, or a model on instances or
    serverless (a configuration of the endpoint's name is made); exit 1 if it fails."""
    client = ctx.ensure_object(ShipwayClient)
    if (config is None) == (model is None):
        raise typer.BadParameter("give --config or --model", param_hint="'--config' / '--model'")
    if serverless is not None and model is None:
        raise typer.BadParameter("give --model with it", param_hint="'--serverless'")
    if model is not None:
        variant = single_variant(model, instance_type, count, DEFAULT_VARIANT_NAME, serverless)
        client.create_endpoint_config(
            parse(
                CreateEndpointConfigInput,
                {"EndpointConfigName": name, "ProductionVariants": [variant]},
            )
        )
        config = name
    request = parse(CreateEndpointInput, {"EndpointName": name, "EndpointConfigName": config})
    client.create_endpoint(request)
    if not wait:
        console.print(f"Creating endpoint [bold]{escape(name)}[/]")
        return
    with progress.status(f"Creating endpoint {escape(name)}...") as spinner:
        endpoint = client.wait_for_endpoint(
            name,
            timeout,
            on_poll=lambda e: spinner.update(
                f"Endpoint {escape(name)} is {status_text(e.endpoint_status)} ({_instances(e)})"
            ),
        )
    console.print(f"Endpoint [bold]{escape(name)}[/] is {status_text(endpoint.endpoint_status)}")


Size = Annotated[
    str | None,
    typer.Option(
        metavar="SIZE",
        help="A share of capacity (10%) or a number of instances (2).",
        show_default=False,
    ),
]


@app.command()
def update(
    ctx: typer.Context,
    name: Name,
    config: Annotated[
        str,
        typer.Option(metavar="NAME", help="The new endpoint configuration.", show_default=False),
    ],
    canary: Size = None,
    linear: Size = None,
    rolling: Size = None,
    bake: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="How long each step bakes, watching the alarms: 90 (seconds), 90s, 5m, 1h.",
            show_default=False,
        ),
    ] = None,
    termination_wait: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="How long the old fleet stays up for a fast rollback once all traffic moved.",
            show_default=False,
        ),
    ] = None,
    max_duration: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="Roll back if not done by then (10m to 8h).",
            show_default=False,
        ),
    ] = None,
    rollback_batch: Annotated[
        str | None,
        typer.Option(
            metavar="SIZE",
            help="With --rolling: how many instances a rollback replaces at a time.",
            show_default=False,
        ),
    ] = None,
    alarm: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="Roll back when this alarm goes into ALARM (repeatable).",
            show_default=False,
        ),
    ] = None,
    retain_variant_properties: Annotated[
        bool,
        typer.Option(
            "--retain-variant-properties", help="Keep the live instance counts and weights."
        ),
    ] = False,
    exclude_retained: Annotated[
        list[VariantProperty] | None,
        typer.Option(
            metavar="PROPERTY",
            help="Take this one from the new configuration anyway: DesiredInstanceCount, "
            "DesiredWeight or DataCaptureConfig (repeatable).",
            show_default=False,
        ),
    ] = None,
    retain_deployment_config: Annotated[
        bool,
        typer.Option(
            "--retain-deployment-config", help="Deploy with the endpoint's last DeploymentConfig."
        ),
    ] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Return once it started; do not show it live to its end."),
    ] = False,
) -> None:
    """Deploy a new configuration to an endpoint; exit 1 if the deployment rolls back.

    Blue/green all at once (the default), --canary, --linear or --rolling;
    each step bakes for --bake while the --alarm alarms are watched.
    TIME is seconds, or 90s, 5m, 1h. Example:

    shipway endpoints update e --config v2 --canary 10% --bake 5m --alarm e-5xx
    """
    client = ctx.ensure_object(ShipwayClient)
    chosen = [flag for flag, value in (("--canary", canary), ("--linear", linear),
                                       ("--rolling", rolling)) if value is not None]  # fmt: skip
    if len(chosen) > 1:
        raise typer.BadParameter(f"choose one of {', '.join(chosen)}")
    if rollback_batch is not None and rolling is None:
        raise typer.BadParameter("--rollback-batch applies to --rolling only")
    deployment: dict[str, Any] = {}
    bake_seconds = _duration(bake, "--bake") if bake is not None else 0
    maximum = _duration(max_duration, "--max-duration") if max_duration is not None else None
    if rolling is not None:
        policy: dict[str, Any] = {
            "MaximumBatchSize": _size(rolling, "--rolling"),
            "WaitIntervalInSeconds": bake_seconds,
        }
        if rollback_batch is not None:
            policy["RollbackMaximumBatchSize"] = _size(rollback_batch, "--rollback-batch")
        if maximum is not None:
            policy["MaximumExecutionTimeoutInSeconds"] = maximum
        deployment["RollingUpdatePolicy"] = policy
    elif chosen or bake is not None or termination_wait is not None or maximum is not None:
        routing: dict[str, Any] = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": bake_seconds}
        if canary is not None:
            routing.update(Type="CANARY", CanarySize=_size(canary, "--canary"))
        if linear is not None:
            routing.update(Type="LINEAR", LinearStepSize=_size(linear, "--linear"))
        blue_green: dict[str, Any] = {"TrafficRoutingConfiguration": routing}
        if termination_wait is not None:
            blue_green["TerminationWaitInSeconds"] = _duration(
                termination_wait, "--termination-wait"
            )
        if maximum is not None:
            blue_green["MaximumExecutionTimeoutInSeconds"] = maximum
        deployment["BlueGreenUpdatePolicy"] = blue_green
    if alarm:
        deployment["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarm]}
    fields: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": config}
    if deployment:
        fields["DeploymentConfig"] = deployment
    if retain_variant_properties:
        fields["RetainAllVariantProperties"] = True
    if exclude_retained:
        fields["ExcludeRetainedVariantProperties"] = [
            {"VariantPropertyType": p.value} for p in exclude_retained
        ]
    if retain_deployment_config:
        fields["RetainDeploymentConfig"] = True
    client.update_endpoint(parse(UpdateEndpointInput, fields))
    if no_wait:
        console.print(f"Updating endpoint [bold]{escape(name)}[/] to {escape(config)}")
        return
    from shipway.cli.progress import follow, outcome  # the live view: only where it is shown

    message, succeeded = outcome(follow(client, name, progress))
    console.print(message)
    if not succeeded:
        raise typer.Exit(1)


@app.command()
def watch(ctx: typer.Context, name: Name) -> None:
    """Follow an endpoint's deployment live until it ends; exit 1 if it rolls back.

    Exit 1 too when the endpoint has no deployment in progress."""
    client = ctx.ensure_object(ShipwayClient)
    if client.deployment(name) is None:
        endpoint = client.describe_endpoint(name)
        console.print(
            f"Endpoint [bold]{escape(name)}[/] has no deployment in progress; it is "
            f"{status_text(endpoint.endpoint_status)}."
        )
        raise typer.Exit(1)
    from shipway.cli.progress import follow, outcome  # the live view: only where it is shown

    message, succeeded = outcome(follow(client, name, progress))
    console.print(message)
    if not succeeded:
        raise typer.Exit(1)


def _size(text: str, option: str) -> dict[str, Any]:
    match = re.fullmatch(r"\s*(\d+)\s*(%?)\s*", text)
    if match is None or int(match.group(1)) < 1:
        raise typer.BadParameter(
            f"{option} takes a share of capacity like 10% or a number of instances like 2, "
            f"not {text!r}"
        )
    kind = "CAPACITY_PERCENT" if match.group(2) else "INSTANCE_COUNT"
    return {"Type": kind, "Value": int(match.group(1))}


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def _duration(text: str, option: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", text)
    if match is None:
        raise typer.BadParameter(f"{option} takes seconds, or 90s, 5m, 1h; not {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


@app.command()
def describe(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Show an endpoint: its status, failure reason and each variant's weights and instances;
    for an asynchronous endpoint, its queue and where answers go."""
    client = ctx.ensure_object(ShipwayClient)
    endpoint = client.describe_endpoint(name)
    print_resource(endpoint, as_json=as_json, render=_render)
    config = endpoint.async_inference_config
    if config is None or as_json:
        return
    from shipway.cli.async_invocations import print_async_endpoint

    try:
        queue: QueueSummary | str = client.endpoint_queue(name)
    except ApiError as exc:  # gone meanwhile: the description above stands
        queue = f"{exc.code}: {exc.message}"
    print_async_endpoint(config, queue)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        EndpointStatus | None,
        typer.Option(
            case_sensitive=False, help="Only endpoints in this status.", show_default=False
        ),
    ] = None,
    name_contains: NameContains = None,
    max_results: MaxResults = None,
    sort_by: SortByOption = SortBy.CREATION_TIME,
    sort_order: SortOrderOption = SortOrder.DESCENDING,
    as_json: AsJson = False,
) -> None:
    """List endpoints and their status."""
    endpoints = ctx.ensure_object(ShipwayClient).list_endpoints(
        name_contains=name_contains,
        status=status,
        sort_by=sort_by,
        sort_order=sort_order,
        max_results=max_results,
    )
    print_list(
        "Endpoints",
        endpoints,
        as_json=as_json,
        title="Endpoints",
        columns=("Name", "Status", "Created", "Modified"),
        row=lambda e: (
            e.endpoint_name,
            status_text(e.endpoint_status),
            timestamp(e.creation_time),
            timestamp(e.last_modified_time),
        ),
        empty="No endpoints.",
    )


@app.command()
def delete(
    ctx: typer.Context,
    name: Name,
    wait: Annotated[bool, typer.Option(help="Wait until the endpoint is gone.")] = False,
    timeout: Timeout = 600.0,
) -> None:
    """Delete an endpoint and stop its instances."""
    client = ctx.ensure_object(ShipwayClient)
    client.delete_endpoint(name)
    if not wait:
        console.print(f"Deleting endpoint [bold]{escape(name)}[/]")
        return
    with progress.status(f"Deleting endpoint {escape(name)}..."):
        client.wait_for_endpoint_deleted(name, timeout)
    console.print(f"Deleted endpoint [bold]{escape(name)}[/]")


@app.command("shadow-report")
def shadow_report(
    ctx: typer.Context,
    name: Name,
    tolerance: Annotated[
        float,
        typer.Option(min=0, help="Outputs within this absolute difference agree (e.g. 1e-6)."),
    ] = 0.0,
    as_json: AsJson = False,
) -> None:
    """Compare the shadow variant with production: agreement, counts, latency percentiles."""
    report = ctx.ensure_object(ShipwayClient).shadow_report(name, tolerance=tolerance)
    print_resource(report, as_json=as_json, render=_render_shadow_report)


def _render_shadow_report(report: ShadowReport) -> None:
    console.print(
        f"[bold]Shadow report[/] of endpoint {escape(report.endpoint_name)} since "
        f"{timestamp(report.since)}, tolerance {report.tolerance:g}, "
        f"{report.in_flight} copies in flight (at most {report.max_in_flight})"
    )
    for pair in report.pairs:
        _render_pair(pair)


def _render_pair(pair: ShadowPairReport) -> None:
    production, shadow = escape(pair.production_variant), escape(pair.shadow_variant)
    sampling = "-" if pair.sampling_fraction is None else f"{pair.sampling_fraction:.1%}"
    agreement = (
        "-"
        if pair.agreement_rate is None
        else f"{pair.agreement_rate:.2%} ({pair.agreeing} of {pair.window})"
    )
    counts = Table(
        "Requests", "Count", title=f"{production} vs shadow {shadow} (sampling {sampling})"
    )
    for label, value in (
        ("Sampled", str(pair.sampled)),
        ("Compared", str(pair.compared)),
        ("Skipped", str(pair.skipped)),
        ("Production errors", str(pair.production_errors)),
        ("Shadow errors", str(pair.shadow_errors)),
        ("Agreement", agreement),
        ("Max difference", _number(pair.max_difference)),
        ("Not comparable", str(pair.incomparable)),
    ):
        counts.add_row(label, value)
    console.print(counts)
    latency = Table("Model latency (ms)", "p50", "p90", "p99", "mean", "requests")
    for side, summary in (
        (f"Production {production}", pair.production_latency),
        (f"Shadow {shadow}", pair.shadow_latency),
    ):
        if summary is None:
            latency.add_row(side, "-", "-", "-", "-", "0")
        else:
            figures = (summary.p50, summary.p90, summary.p99, summary.mean)
            latency.add_row(side, *(f"{v:.2f}" for v in figures), str(summary.count))
    console.print(latency)
    if pair.disagreements:
        examples = Table(
            "Time",
            "Difference",
            "Request",
            "Production",
            "Shadow",
            title=f"Recent disagreements of {shadow} with {production}",
        )
        for example in pair.disagreements:
            examples.add_row(
                timestamp(example.time),
                "not comparable" if example.difference is None else f"{example.difference:g}",
                *(
                    escape(_clip(text))
                    for text in (example.request, example.production_output, example.shadow_output)
                ),
            )
        console.print(examples)


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _render(endpoint: DescribeEndpointOutput) -> None:
    console.print(f"[bold]Endpoint[/]  {escape(endpoint.endpoint_name)}")
    console.print(f"Status    {status_text(endpoint.endpoint_status)}")
    if endpoint.failure_reason:
        console.print(f"Failure   [red]{escape(endpoint.failure_reason)}[/]")
    console.print(f"Config    {escape(endpoint.endpoint_config_name or '')}")
    console.print(f"ARN       {escape(endpoint.endpoint_arn)}")
    console.print(f"Created   {timestamp(endpoint.creation_time)}")
    console.print(f"Modified  {timestamp(endpoint.last_modified_time)}")
    groups: list[tuple[str, list[ProductionVariantSummary]]] = [
        ("Production variants", list(endpoint.production_variants or []))
    ]
    if endpoint.shadow_production_variants:
        groups.append(("Shadow variants", list(endpoint.shadow_production_variants)))
    pending = endpoint.pending_deployment_summary
    if pending is not None:
        started = f" since {timestamp(pending.start_time)}" if pending.start_time else ""
        console.print(f"Deploying {escape(pending.endpoint_config_name)}{started}")
        groups.append(("New fleet", list(pending.production_variants or [])))
    for title, variants in groups:
        table = Table(
            "Variant", "Weight (current/desired)", "Instances (current/desired)", title=title
        )
        staged = any(v.variant_status for v in variants)
        if staged:
            table.add_column("Stage")
        for v in variants:
            row = [
                escape(v.variant_name),
                f"{_number(v.current_weight)} / {_number(v.desired_weight)}",
                _instance_counts(v),
            ]
            if staged:
                stage = v.variant_status[0] if v.variant_status else None
                row.append(
                    f"{stage.status.value}: {escape(stage.status_message or '')}" if stage else ""
                )
            table.add_row(*row)
        console.print(table)
        for v in variants:
            failure = v.last_instance_failure
            if failure is not None:
                when = f" at {timestamp(failure.time)}" if failure.time else ""
                console.print(
                    f"Variant {escape(v.variant_name)} last replaced an instance{when}: "
                    f"[yellow]{escape(failure.reason)}[/]"
                )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _instance_counts(variant: ProductionVariantSummary) -> str:
    if variant.current_serverless_config or variant.desired_serverless_config:
        return f"serverless, {variant.current_instance_count or 0} warm"
    current = variant.current_instance_count
    desired = variant.desired_instance_count
    return f"{'-' if current is None else current} / {'-' if desired is None else desired}"
