"""``shipway models``: create, describe, list and delete models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shipway.cli.client import ShipwayClient
from shipway.domain.listing import SortBy, SortOrder
from shipway.domain.model import CreateModelInput, Model
from shipway.domain.shape import dump, parse

__all__ = ["app", "create", "delete", "describe", "list_", "model_data_url", "parse_environment"]

app = typer.Typer(help="Create, describe, list and delete models.", no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)

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
def describe(
    ctx: typer.Context,
    name: Name,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """Show a model: its containers, artifacts and environment."""
    model = ctx.ensure_object(ShipwayClient).describe_model(name)
    if as_json:
        typer.echo(json.dumps(dump(model), indent=2))
        return
    _render(model)


@app.command("list")
def list_(
    ctx: typer.Context,
    name_contains: Annotated[
        str | None, typer.Option(help="Only names containing this.", show_default=False)
    ] = None,
    max_results: Annotated[
        int | None,
        typer.Option(min=1, help="At most this many (default: all).", show_default=False),
    ] = None,
    sort_by: Annotated[SortBy, typer.Option(case_sensitive=False)] = SortBy.CREATION_TIME,
    sort_order: Annotated[SortOrder, typer.Option(case_sensitive=False)] = SortOrder.DESCENDING,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """List models."""
    models = ctx.ensure_object(ShipwayClient).list_models(
        name_contains=name_contains, sort_by=sort_by, sort_order=sort_order, max_results=max_results
    )
    if as_json:
        typer.echo(json.dumps({"Models": [dump(m) for m in models]}, indent=2))
        return
    if not models:
        console.print("No models.")
        return
    table = Table("Name", "Created", title="Models")
    for summary in models:
        table.add_row(summary.model_name, f"{summary.creation_time.astimezone():%Y-%m-%d %H:%M:%S}")
    console.print(table)


@app.command()
def delete(ctx: typer.Context, name: Name) -> None:
    """Delete a model (endpoints already serving it keep running)."""
    ctx.ensure_object(ShipwayClient).delete_model(name)
    console.print(f"Deleted model [bold]{escape(name)}[/]")


def _render(model: Model) -> None:
    console.print(f"[bold]Model[/]    {escape(model.model_name)}")
    console.print(f"ARN      {escape(model.model_arn)}")
    console.print(f"Created  {model.creation_time.astimezone():%Y-%m-%d %H:%M:%S}")
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
