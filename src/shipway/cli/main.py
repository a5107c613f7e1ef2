"""The ``shipway`` command.

Commands parse options, call :class:`~shipway.cli.client.ShipwayClient` and render. Errors are
mapped once, here: a :class:`~shipway.cli.client.ClientError` (or a request that fails the
domain's own validation) prints ``Error: ...`` in red on stderr and exits with the error's
``exit_code`` (1); usage errors exit 2.

Start time is a feature of a command line: each command (and group) lives in its own module and
is imported only when it runs, so ``shipway --help`` imports none of them and ``shipway models
list`` imports the models commands and their shapes, never the server stack (fastapi,
sqlalchemy, numpy...), which only ``shipway server`` loads. The root's help lists the commands
from :data:`COMMANDS` without importing them.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from shipway.cli.client import DEFAULT_URL, ApiError, ClientError, ShipwayClient
from shipway.cli.help import plain_flags
from shipway.domain.errors import ShipwayError

__all__ = ["COMMANDS", "app", "error_message", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "server": (
        "shipway.cli.server:server",
        "Run Shipway: REST API, SageMaker API, router, controller and instances.",
    ),
    "invoke": (
        "shipway.cli.invoke:invoke",
        "Invoke an endpoint: the body from --body, --file or stdin; the answer on stdout.",
    ),
    "instance-types": (
        "shipway.cli.instance_types:instance_types",
        "List the instance types a variant can run on, with their sizes and prices.",
    ),
    "token": (
        "shipway.cli.token:token",
        "Print the bearer token of an access key (for SHIPWAY_TOKEN, curl or Prometheus).",
    ),
    "models": ("shipway.cli.models:app", "Create, describe, list and delete models."),
    "endpoint-configs": (
        "shipway.cli.endpoint_configs:app",
        "Create, describe, list and delete endpoint configurations.",
    ),
    "endpoints": (
        "shipway.cli.endpoints:app",
        "Create, update, watch, describe, list and delete endpoints; compare a shadow variant.",
    ),
    "alarms": (
        "shipway.cli.alarms:app",
        "Alarms on endpoint metrics (CloudWatch's): put, list, describe, delete, set state, "
        "history.",
    ),
    "scaling": (
        "shipway.cli.scaling:app",
        "Autoscaling of endpoint variants: register, policy, show, watch, activities, "
        "deregister, delete-policy.",
    ),
    "async": (
        "shipway.cli.async_invocations:app",
        "Asynchronous requests (InvokeEndpointAsync): list them, show one with its outcome.",
    ),
    "topics": (
        "shipway.cli.topics:app",
        "SNS topics (made with boto3's sns client): list them, show one with its subscriptions.",
    ),
    "jobs": (
        "shipway.cli.transform_jobs:app",
        "Batch transform jobs: create, watch, describe, list and stop them.",
    ),
}
"""Each command: where it lives (``module:attribute``, a function or a :class:`typer.Typer`)
and the line the root's help shows for it (a test checks it is the command's own)."""


def error_message(exc: ClientError | ShipwayError) -> str:
    """What to print for an error: its code, for a model error what the model said and where
    its log is, and the hint the command gave, if any."""
    message = _message(exc)
    hint = getattr(exc, "hint", None)
    return f"{message}\n{hint}" if hint else message


def _message(exc: ClientError | ShipwayError) -> str:
    if isinstance(exc, ApiError):
        if exc.original_status is not None:
            message = (
                f"{exc.code}: the model answered {exc.original_status}: "
                f"{exc.original_message or exc.message}"
            )
            if exc.log_stream and not exc.log_stream.startswith("arn:"):
                message += f"\nThe model's log: {exc.log_stream}"
            return message
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, ShipwayError):
        return f"{exc.code}: {exc.message}"
    return exc.message


def load(name: str) -> TyperCommand | TyperGroup:
    """Import the command ``name`` of :data:`COMMANDS` and build it."""
    target, _ = COMMANDS[name]
    module, attribute = target.split(":")
    found = getattr(importlib.import_module(module), attribute)
    command: object
    if isinstance(found, typer.Typer):
        command = typer.main.get_group(found)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(found)
        command = typer.main.get_command(single)
    assert isinstance(command, TyperCommand | TyperGroup)
    command.name = name
    plain_flags(command)
    return command


class _Shipway(TyperGroup):
    """The root group: loads each command when it runs; turns client and validation errors
    into ``Error: ...`` and exit 1."""

    _listing = False
    """True while the root's help is drawn: commands are then stand-ins with their help line."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [*super().list_commands(ctx), *COMMANDS]

    def get_command(  # type: ignore[override]
        self, ctx: typer.Context, cmd_name: str
    ) -> TyperCommand | TyperGroup | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)  # type: ignore[return-value]
        if self._listing:
            return TyperCommand(name=cmd_name, help=COMMANDS[cmd_name][1])
        return load(cmd_name)

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        self._listing = True
        plain_flags(self)
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (ClientError, ShipwayError) as exc:
            from shipway.cli.streams import progress

            progress.print(f"Error: {error_message(exc)}", style="red", markup=False)
            raise typer.Exit(getattr(exc, "exit_code", 1)) from exc


app = typer.Typer(
    name="shipway",
    cls=_Shipway,
    help="Deploy machine-learning models the way SageMaker does, on your own machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


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
