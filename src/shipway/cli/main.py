"""The ``shipway`` command.

Commands parse options, call :class:`~shipway.cli.client.ShipwayClient` and render. Errors are
mapped once, here: a :class:`~shipway.cli.client.ClientError` (or a request that fails the
domain's own validation) prints ``Error: ...`` in red on stderr and exits with the error's
``exit_code`` (1); usage errors exit 2.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from shipway.cli import alarms, endpoint_configs, endpoints, models
from shipway.cli.client import DEFAULT_URL, ApiError, ClientError, ShipwayClient
from shipway.cli.instance_types import instance_types
from shipway.cli.invoke import invoke
from shipway.cli.server import server
from shipway.cli.token import token
from shipway.domain.errors import ShipwayError

__all__ = ["app", "error_message", "main"]

errors = Console(stderr=True, highlight=False, soft_wrap=True)


def error_message(exc: ClientError | ShipwayError) -> str:
    """One line for an error: its code, and for a model error what the model said."""
    if isinstance(exc, ApiError):
        if exc.original_status is not None:
            return (
                f"{exc.code}: the model answered {exc.original_status}: "
                f"{exc.original_message or exc.message}"
            )
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, ShipwayError):
        return f"{exc.code}: {exc.message}"
    return exc.message


class _Shipway(TyperGroup):
    """The root group: turns client and validation errors into ``Error: ...`` and exit 1."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (ClientError, ShipwayError) as exc:
            errors.print(f"Error: {error_message(exc)}", style="red", markup=False)
            raise typer.Exit(getattr(exc, "exit_code", 1)) from exc


app = typer.Typer(
    name="shipway",
    cls=_Shipway,
    help="Deploy machine-learning models the way SageMaker does, on your own machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(server)
app.add_typer(models.app, name="models")
app.add_typer(endpoint_configs.app, name="endpoint-configs")
app.add_typer(endpoints.app, name="endpoints")
app.add_typer(alarms.app, name="alarms")
app.command()(invoke)
app.command("instance-types")(instance_types)
app.command("token")(token)


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[
        str,
        typer.Option(envvar="SHIPWAY_URL", help="The Shipway server to talk to."),
    ] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="SHIPWAY_TOKEN",
            help="Bearer token for a server with access keys ('shipway token' prints it).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Deploy machine-learning models the way SageMaker does, on your own machines."""
    ctx.obj = ctx.with_resource(ShipwayClient(url, token=token))


def main() -> None:
    app()
