"""``shipway endpoints``: create (and wait for), describe, list and delete endpoints."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from shipway.cli.client import ShipwayClient
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
from shipway.domain.endpoint import (
    CreateEndpointInput,
    DescribeEndpointOutput,
    EndpointStatus,
    ProductionVariantSummary,
)
from shipway.domain.listing import SortBy, SortOrder
from shipway.domain.shape import parse

__all__ = ["app", "create", "delete", "describe", "list_", "status_text"]

app = typer.Typer(help="Create, describe, list and delete endpoints.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="The endpoint's name.", show_default=False)]
Timeout = Annotated[float, typer.Option(min=0, help="Seconds to wait at most.")]

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
    desired = sum(v.desired_instance_count or 0 for v in variants)
    return f"{current}/{desired} instances"


@app.command()
def create(
    ctx: typer.Context,
    name: Name,
    config: Annotated[
        str, typer.Option(help="The endpoint configuration to serve.", show_default=False)
    ],
    wait: Annotated[
        bool, typer.Option(help="Wait until the endpoint is InService (or Failed).")
    ] = True,
    timeout: Timeout = 600.0,
) -> None:
    """Create an endpoint serving an endpoint configuration; exit 1 if it fails."""
    client = ctx.ensure_object(ShipwayClient)
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


@app.command()
def describe(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Show an endpoint: its status, failure reason and each variant's weights and instances."""
    endpoint = ctx.ensure_object(ShipwayClient).describe_endpoint(name)
    print_resource(endpoint, as_json=as_json, render=_render)


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


def _render(endpoint: DescribeEndpointOutput) -> None:
    console.print(f"[bold]Endpoint[/]  {escape(endpoint.endpoint_name)}")
    console.print(f"Status    {status_text(endpoint.endpoint_status)}")
    if endpoint.failure_reason:
        console.print(f"Failure   [red]{escape(endpoint.failure_reason)}[/]")
    console.print(f"Config    {escape(endpoint.endpoint_config_name or '')}")
    console.print(f"ARN       {escape(endpoint.endpoint_arn)}")
    console.print(f"Created   {timestamp(endpoint.creation_time)}")
    console.print(f"Modified  {timestamp(endpoint.last_modified_time)}")
    groups = [("Production variants", endpoint.production_variants or [])]
    if endpoint.shadow_production_variants:
        groups.append(("Shadow variants", endpoint.shadow_production_variants))
    for title, variants in groups:
        table = Table(
            "Variant", "Weight (current/desired)", "Instances (current/desired)", title=title
        )
        for v in variants:
            table.add_row(
                escape(v.variant_name),
                f"{_number(v.current_weight)} / {_number(v.desired_weight)}",
                _instance_counts(v),
            )
        console.print(table)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _instance_counts(variant: ProductionVariantSummary) -> str:
    if variant.current_serverless_config or variant.desired_serverless_config:
        return "serverless"
    current = variant.current_instance_count
    desired = variant.desired_instance_count
    return f"{'-' if current is None else current} / {'-' if desired is None else desired}"
