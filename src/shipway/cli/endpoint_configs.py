"""``shipway endpoint-configs``: the production variants an endpoint serves.

A variant is given as ``--variant "name=AllTraffic,model=m1,instance-type=ml.m5.large,count=1,
weight=1,routing=LEAST_OUTSTANDING_REQUESTS"`` (repeatable), or for one variant by the shorthand
``--model m1 [--instance-type ...] [--count ...] [--variant-name ...]``; a serverless variant by
``--model m1 --serverless memory=2048,concurrency=5[,provisioned=1]``.
"""

from __future__ import annotations

from typing import Annotated, Any

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
    timestamp,
)
from shipway.domain.endpoint_config import CreateEndpointConfigInput, EndpointConfig
from shipway.domain.shape import parse
from shipway.domain.sorting import SortBy, SortOrder

__all__ = [
    "DEFAULT_INSTANCE_TYPE",
    "DEFAULT_VARIANT_NAME",
    "app",
    "create",
    "delete",
    "describe",
    "list_",
    "parse_serverless",
    "parse_variant",
    "single_variant",
]

DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_VARIANT_NAME = "AllTraffic"

app = typer.Typer(
    help="Create, describe, list and delete endpoint configurations.", no_args_is_help=True
)

Name = Annotated[str, typer.Argument(help="The endpoint configuration's name.", show_default=False)]

_VARIANT_KEYS = {
    "name": "VariantName",
    "model": "ModelName",
    "instance-type": "InstanceType",
    "count": "InitialInstanceCount",
    "weight": "InitialVariantWeight",
    "routing": "RoutingConfig",
}


def parse_variant(spec: str) -> dict[str, Any]:
    """One ``--variant`` spec (``key=value`` pairs split by commas) as a wire ProductionVariant.

    Keys: name (default AllTraffic), model (required), instance-type (default ml.m5.large),
    count (default 1), weight (default 1), routing (LEAST_OUTSTANDING_REQUESTS or RANDOM).
    """
    given: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise _bad_variant(spec, f"{item.strip()!r} is not key=value")
        if key not in _VARIANT_KEYS:
            raise _bad_variant(spec, f"unknown key {key!r}; known: {', '.join(_VARIANT_KEYS)}")
        given[key] = value
    if "model" not in given:
        raise _bad_variant(spec, "it names no model (model=...)")
    variant: dict[str, Any] = {
        "VariantName": given.get("name", DEFAULT_VARIANT_NAME),
        "ModelName": given["model"],
        "InstanceType": given.get("instance-type", DEFAULT_INSTANCE_TYPE),
    }
    try:
        variant["InitialInstanceCount"] = int(given.get("count", "1"))
        variant["InitialVariantWeight"] = float(given.get("weight", "1"))
    except ValueError as exc:
        raise _bad_variant(spec, f"count and weight must be numbers ({exc})") from exc
    if "routing" in given:
        variant["RoutingConfig"] = {"RoutingStrategy": given["routing"].upper()}
    return variant


def _bad_variant(spec: str, reason: str) -> typer.BadParameter:
    return typer.BadParameter(f"{spec!r}: {reason}", param_hint="'--variant'")


_SERVERLESS_KEYS = {
    "memory": "MemorySizeInMB",
    "concurrency": "MaxConcurrency",
    "provisioned": "ProvisionedConcurrency",
}


def parse_serverless(spec: str) -> dict[str, int]:
    """A ``--serverless`` spec, ``memory=2048,concurrency=5[,provisioned=1]``, as a wire
    ServerlessConfig (memory in MB, 1024 to 6144 in steps of 1024; concurrency 1 to 200)."""
    config: dict[str, int] = {}
    for item in spec.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in _SERVERLESS_KEYS:
            raise typer.BadParameter(
                f"{spec!r}: {item.strip()!r} is not one of "
                f"{', '.join(k + '=N' for k in _SERVERLESS_KEYS)}",
                param_hint="'--serverless'",
            )
        if not value.isdigit():
            raise typer.BadParameter(
                f"{spec!r}: {key} must be a whole number, not {value!r}",
                param_hint="'--serverless'",
            )
        config[_SERVERLESS_KEYS[key]] = int(value)
    for key in ("memory", "concurrency"):
        if _SERVERLESS_KEYS[key] not in config:
            raise typer.BadParameter(f"{spec!r}: give {key}=N", param_hint="'--serverless'")
    return config


def single_variant(
    model: str, instance_type: str, count: int, variant_name: str, serverless: str | None
) -> dict[str, Any]:
    """The one production variant of the ``--model`` shorthand, on instances or serverless."""
    if serverless is not None:
        return {
            "VariantName": variant_name,
            "ModelName": model,
            "ServerlessConfig": parse_serverless(serverless),
        }
    return {
        "VariantName": variant_name,
        "ModelName": model,
        "InstanceType": instance_type,
        "InitialInstanceCount": count,
    }


Serverless = Annotated[
    str | None,
    typer.Option(
        metavar="SPEC",
        help="With --model: serverless, as memory=2048, concurrency=5 (and provisioned=N).",
        show_default=False,
    ),
]


@app.command()
def create(
    ctx: typer.Context,
    name: Name,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            help="A production variant as key=value pairs split by commas; keys: name, model, "
            "instance-type, count, weight, routing (repeatable).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Shorthand for one variant: the model it serves.", show_default=False),
    ] = None,
    instance_type: Annotated[
        str, typer.Option(help="Shorthand: the variant's instance type.")
    ] = DEFAULT_INSTANCE_TYPE,
    count: Annotated[int, typer.Option(min=1, help="Shorthand: the variant's instances.")] = 1,
    variant_name: Annotated[
        str, typer.Option(help="Shorthand: the variant's name.")
    ] = DEFAULT_VARIANT_NAME,
    serverless: Serverless = None,
) -> None:
    """Create an endpoint configuration from one or more production variants."""
    if variant and model is not None:
        raise typer.BadParameter("give --variant or --model, not both", param_hint="'--model'")
    if serverless is not None and model is None:
        raise typer.BadParameter("give --model with it", param_hint="'--serverless'")
    if variant:
        variants = [parse_variant(spec) for spec in variant]
    elif model is not None:
        variants = [single_variant(model, instance_type, count, variant_name, serverless)]
    else:
        raise typer.BadParameter(
            "give at least one --variant, or --model for a single variant",
            param_hint="'--variant' / '--model'",
        )
    request = parse(
        CreateEndpointConfigInput, {"EndpointConfigName": name, "ProductionVariants": variants}
    )
    arn = ctx.ensure_object(ShipwayClient).create_endpoint_config(request)
    console.print(f"Created endpoint configuration [bold]{escape(name)}[/] ({escape(arn)})")


@app.command()
def describe(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Show an endpoint configuration and its variants."""
    config = ctx.ensure_object(ShipwayClient).describe_endpoint_config(name)
    print_resource(config, as_json=as_json, render=_render)


@app.command("list")
def list_(
    ctx: typer.Context,
    name_contains: NameContains = None,
    max_results: MaxResults = None,
    sort_by: SortByOption = SortBy.CREATION_TIME,
    sort_order: SortOrderOption = SortOrder.DESCENDING,
    as_json: AsJson = False,
) -> None:
    """List endpoint configurations."""
    configs = ctx.ensure_object(ShipwayClient).list_endpoint_configs(
        name_contains=name_contains, sort_by=sort_by, sort_order=sort_order, max_results=max_results
    )
    print_list(
        "EndpointConfigs",
        configs,
        as_json=as_json,
        title="Endpoint configurations",
        columns=("Name", "Created"),
        row=lambda c: (c.endpoint_config_name, timestamp(c.creation_time)),
        empty="No endpoint configurations.",
    )


@app.command()
def delete(ctx: typer.Context, name: Name) -> None:
    """Delete an endpoint configuration that no endpoint uses."""
    ctx.ensure_object(ShipwayClient).delete_endpoint_config(name)
    console.print(f"Deleted endpoint configuration [bold]{escape(name)}[/]")


def _render(config: EndpointConfig) -> None:
    console.print(f"[bold]Endpoint configuration[/]  {escape(config.endpoint_config_name)}")
    console.print(f"ARN      {escape(config.endpoint_config_arn)}")
    console.print(f"Created  {timestamp(config.creation_time)}")
    groups = [("Production variants", config.production_variants)]
    if config.shadow_production_variants:
        groups.append(("Shadow variants", config.shadow_production_variants))
    for title, variants in groups:
        table = Table("Variant", "Model", "Instance type", "Count", "Weight", title=title)
        table.add_column("Routing", no_wrap=True)
        for v in variants:
            serverless = v.serverless_config
            table.add_row(
                escape(v.variant_name),
                escape(v.model_name or ""),
                escape(
                    v.instance_type
                    or (
                        f"serverless {serverless.memory_size_in_mb} MB, "
                        f"concurrency {serverless.max_concurrency}"
                        if serverless
                        else ""
                    )
                ),
                "" if v.initial_instance_count is None else str(v.initial_instance_count),
                f"{v.weight:g}",
                v.routing_strategy.value,
            )
        console.print(table)
