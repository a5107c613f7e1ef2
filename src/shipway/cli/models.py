"""``shipway models``: create, describe, list and delete models."""

from __future__ import annotations

from pathlib import Path
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
    timestamp,
)
from shipway.domain.model import CreateModelInput, Model
from shipway.domain.shape import parse
from shipway.domain.sorting import SortBy, SortOrder

__all__ = ["app", "create", "delete", "describe", "list_", "model_data_url", "parse_environment"]

app = typer.Typer(help="Create, describe, list and delete models.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="The model's name.", show_default=False)]


def model_data_url(value: str) -> str:
    """A URL (``scheme://...``) as is; a plain local path made absolute."""
    if "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


def parse_environment(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs as a dict; a pair without ``=`` is a usage error."""
    environment: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'--env'")
        environment[key] = value
    return environment


@app.command()
def create(
    ctx: typer.Context,
    name: Name,
    image: Annotated[
        str,
        typer.Option(
            help="The runtime: sklearn, xgboost, lightgbm, onnx, torch, mlflow, python, "
            "or an import string 'package.module:RuntimeClass'.",
            show_default=False,
        ),
    ],
    model_data: Annotated[
        str,
        typer.Option(
            help="The model artifact: a local path (made absolute), file://, s3://... "
            "A folder or a model.tar.gz.",
            show_default=False,
        ),
    ],
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            help="An environment variable KEY=VALUE (repeatable).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a model: a runtime (image) serving a model artifact."""
    environment = parse_environment(env or [])
    container: dict[str, object] = {"Image": image, "ModelDataUrl": model_data_url(model_data)}
    if environment:
        container["Environment"] = environment
    request = parse(CreateModelInput, {"ModelName": name, "PrimaryContainer": container})
    arn = ctx.ensure_object(ShipwayClient).create_model(request)
    console.print(f"Created model [bold]{escape(name)}[/] ({escape(arn)})")


@app.command()
def describe(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Show a model: its containers, artifacts and environment."""
    model = ctx.ensure_object(ShipwayClient).describe_model(name)
    print_resource(model, as_json=as_json, render=_render)


@app.command("list")
def list_(
    ctx: typer.Context,
    name_contains: NameContains = None,
    max_results: MaxResults = None,
    sort_by: SortByOption = SortBy.CREATION_TIME,
    sort_order: SortOrderOption = SortOrder.DESCENDING,
    as_json: AsJson = False,
) -> None:
    """List models."""
    models = ctx.ensure_object(ShipwayClient).list_models(
        name_contains=name_contains, sort_by=sort_by, sort_order=sort_order, max_results=max_results
    )
    print_list(
        "Models",
        models,
        as_json=as_json,
        title="Models",
        columns=("Name", "Created"),
        row=lambda m: (m.model_name, timestamp(m.creation_time)),
        empty="No models.",
    )


@app.command()
def delete(ctx: typer.Context, name: Name) -> None:
    """Delete a model (endpoints already serving it keep running)."""
    ctx.ensure_object(ShipwayClient).delete_model(name)
    console.print(f"Deleted model [bold]{escape(name)}[/]")


def _render(model: Model) -> None:
    console.print(f"[bold]Model[/]    {escape(model.model_name)}")
    console.print(f"ARN      {escape(model.model_arn)}")
    console.print(f"Created  {timestamp(model.creation_time)}")
    if model.inference_execution_config is not None:
        console.print(f"Mode     {model.inference_execution_config.mode.value}")
    table = Table("Container", "Image", "Model data", "Environment", title="Containers")
    for index, container in enumerate(model.all_containers(), start=1):
        environment = "\n".join(f"{k}={v}" for k, v in (container.environment or {}).items())
        table.add_row(
            escape(container.container_hostname or str(index)),
            escape(container.image or ""),
            escape(container.model_data_url or ""),
            escape(environment),
        )
    console.print(table)
