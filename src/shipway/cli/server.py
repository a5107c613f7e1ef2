"""``shipway server``: run the whole platform in one process tree until SIGINT or SIGTERM.

The command reads its options, then executes :mod:`shipway.server_process`, which runs the
platform: the long-running process never holds the command line's modules."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

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
    # the server runs as a process of its own, without the command line's modules (typer,
    # rich): it holds only what serving needs (shipway/server_process.py)
    command = [sys.executable, "-m", "shipway.server_process"]
    for option, value in (("--host", host), ("--port", port), ("--home", home)):
        if value is not None:
            command += [option, str(value)]
    if demo:
        command.append("--demo")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
