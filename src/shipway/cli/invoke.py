"""``shipway invoke``: send a request to an endpoint and print its answer as is.

stdout is the model's answer and nothing else, so it can be piped; what was sent (the content
type, inferred from the file's extension or the body when not given) and errors go to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from shipway.cli.client import ApiError, ShipwayClient
from shipway.cli.content_type import infer
from shipway.cli.streams import progress

__all__ = ["invoke"]


def invoke(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="The endpoint to invoke.", show_default=False)],
    body: Annotated[
        str | None, typer.Option(help="The request body, as text.", show_default=False)
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="Read the request body from this file.",
            show_default=False,
        ),
    ] = None,
    content_type: Annotated[
        str | None,
        typer.Option(
            metavar="TYPE",
            help="How the model reads the body: application/json, text/csv... (default: what "
            "the file's extension or the body says).",
            show_default=False,
        ),
    ] = None,
    accept: Annotated[
        str | None,
        typer.Option(help="How to answer (default: the model's choice).", show_default=False),
    ] = None,
    target_variant: Annotated[
        str | None, typer.Option(help="Send to this production variant.", show_default=False)
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say which variant answered (on stderr).")
    ] = False,
) -> None:
    """Invoke an endpoint: the body from --body, --file or stdin; the answer on stdout."""
    if body is not None and file is not None:
        raise typer.BadParameter("give --body or --file, not both", param_hint="'--file'")
    if body is not None:
        payload = body.encode()
    elif file is not None:
        payload = file.read_bytes()
    elif sys.stdin.isatty():
        raise typer.BadParameter(
            "give the request body with --body or --file, or pipe it on stdin",
            param_hint="'--body'",
        )
    else:
        payload = typer.get_binary_stream("stdin").read()
    sent = f"sent the body as {content_type} (--content-type)"
    inferred = None
    if content_type is None:
        inferred = infer(payload, file)
        if inferred is None:
            raise typer.BadParameter(
                "could not tell what the body is (not JSON, nor lines of comma-separated "
                "numbers or of JSON); say it with --content-type, e.g. --content-type text/csv",
                param_hint="'--content-type'",
            )
        content_type = inferred.content_type
        sent = inferred.describe(len(payload))
    try:
        result = ctx.ensure_object(ShipwayClient).invoke(
            endpoint,
            payload,
            content_type=content_type,
            accept=accept,
            target_variant=target_variant,
        )
    except ApiError as exc:
        # the model refused the request (4xx), or failed on a body whose type was a guess
        status = exc.original_status
        if status is not None and (400 <= status < 500 or inferred is not None):
            exc.hint = (
                f"Note: {sent}; if the model reads another type, say it with --content-type "
                "(and --accept for the answer's)."
            )
        raise
    if inferred is not None:  # said once it was sent: errors stay one line
        progress.print(escape(sent))
    if verbose:
        progress.print(
            f"Variant {escape(result.variant or '?')} answered "
            f"{len(result.body)} bytes of {escape(result.content_type)}"
        )
    out = typer.get_binary_stream("stdout")
    out.write(result.body)
    if sys.stdout.isatty() and not result.body.endswith(b"\n"):
        out.write(b"\n")
    out.flush()
