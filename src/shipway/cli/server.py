"""``shipway server``: run the whole platform in one process tree until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shipway.cli.streams import console

if TYPE_CHECKING:
    from shipway.platform import Platform

__all__ = ["server"]


def server(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8080).")] = None,
    home: Annotated[
        Path | None,
        typer.Option(help="Data dir (default $SHIPWAY_HOME or ~/.shipway).", envvar="SHIPWAY_HOME"),
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Deploy a sample model to the endpoint 'demo'.")
    ] = False,
) -> None:
    """Run Shipway: REST API, SageMaker API, router, controller and instances."""
    # the server stack (fastapi, sqlalchemy, numpy...) is imported here, never by the client
    # commands: importing it takes longer than a client command may take in all
    from shipway.domain.errors import ShipwayError
    from shipway.platform import serve
    from shipway.settings import Settings

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if home is not None:
        overrides["home"] = home
    settings = Settings(**overrides)  # type: ignore[arg-type]

    async def ready(platform: Platform) -> None:
        url = f"http://{settings.host}:{settings.port}"
        console.print(f"Shipway is running at [bold]{url}[/]  (data dir {settings.home})")
        console.print(f"  REST API docs: {url}/docs")
        console.print(f"  Prometheus metrics: {url}/metrics")
        if demo:
            from shipway.demo import deploy_demo, sample_request

            name = await deploy_demo(platform)
            while (
                status := (await asyncio.to_thread(platform.endpoints.get, name)).endpoint_status
            ) == "Creating":
                await asyncio.sleep(0.1)
            console.print(f"Endpoint [bold]{name}[/] is {status.value}. Invoke it:")
            body = sample_request(settings.home, rows=1).replace(" ", "")
            print(
                f"  curl -s {url}/endpoints/{name}/invocations "
                f"-H 'Content-Type: application/json' -d '{body}'"
            )
            print(f"  shipway invoke {name} --body '{body}'")
        console.print("Press Ctrl-C to stop.")

    try:
        serve(settings, on_ready=ready)
    except ShipwayError as exc:  # refused to start (nothing was started or changed): one line
        typer.secho("Error: ", fg="red", err=True, nl=False)
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    console.print("Shipway stopped.")
