"""``shipway invoke``: send a request to an endpoint and print its answer as is.

stdout is the model's answer and nothing else, so it can be piped; what was sent (the content
type, inferred from the file's extension or the body when not given) and errors go to stderr.

``--async`` queues the request instead (InvokeEndpointAsync, :mod:`shipway.cli.async_invocations`,
imported only then): the input is an object the server reads (``--input-location``) or the same
body sent inline, and stdout says where the answer will be.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from shipway.cli.client import ApiError, ShipwayClient
from shipway.cli.content_type import EXTENSIONS, Inferred, infer
from shipway.cli.streams import progress

__all__ = ["INLINE_BODY_BYTES", "invoke"]

INLINE_BODY_BYTES = 128_000
"""The largest body ``--async`` sends inline (InvokeEndpointAsync's limit; the domain's
``INLINE_BODY_BYTES``, repeated so that ``shipway invoke`` imports no shapes)."""

ASYNC = "Asynchronous inference (--async)"


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
    asynchronous: Annotated[
        bool,
        typer.Option(
            "--async",
            help="Queue the request (InvokeEndpointAsync) and print where its answer will be.",
            rich_help_panel=ASYNC,
        ),
    ] = False,
    input_location: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The input object the server reads (s3://, file://...) instead of a body.",
            show_default=False,
            rich_help_panel=ASYNC,
        ),
    ] = None,
    inference_id: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            help="Name the request (default: a UUID); its answer is ID.out.",
            show_default=False,
            rich_help_panel=ASYNC,
        ),
    ] = None,
    output_path_extension: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="Write the answer under this folder of the output path.",
            show_default=False,
            rich_help_panel=ASYNC,
        ),
    ] = None,
    filename: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The answer's object name (default: ID.out).",
            show_default=False,
            rich_help_panel=ASYNC,
        ),
    ] = None,
    ttl: Annotated[
        int | None,
        typer.Option(
            metavar="SECONDS",
            help="Fail the request if it waits longer in the queue (60 to 21600; 21600).",
            show_default=False,
            rich_help_panel=ASYNC,
        ),
    ] = None,
    timeout: Annotated[
        int | None,
        typer.Option(
            metavar="SECONDS",
            help="Fail the request if the model takes longer (1 to 3600; 900).",
            show_default=False,
            rich_help_panel=ASYNC,
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait for the answer; exit 1 if the request fails.",
            rich_help_panel=ASYNC,
        ),
    ] = False,
) -> None:
    """Invoke an endpoint: the body from --body, --file or stdin; the answer on stdout.

    With --async, queue it: the input at --input-location, or the body inline (128,000 bytes).
    """
    if not asynchronous:
        for flag, value in (("--input-location", input_location),
                            ("--inference-id", inference_id),
                            ("--output-path-extension", output_path_extension),
                            ("--filename", filename), ("--ttl", ttl), ("--timeout", timeout),
                            ("--wait", wait or None)):  # fmt: skip
            if value is not None:
                raise typer.BadParameter("give --async with it", param_hint=f"'{flag}'")
    elif target_variant is not None:
        raise typer.BadParameter(
            "an asynchronous request goes to the variants by their weights",
            param_hint="'--target-variant'",
        )
    payload: bytes | None = None
    sent = f"sent the body as {content_type} (--content-type)"
    inferred = None
    if asynchronous and input_location is not None:
        if body is not None or file is not None:
            raise typer.BadParameter(
                "give --input-location or a body (--body, --file), not both",
                param_hint="'--input-location'",
            )
        suffix = Path(urlsplit(input_location).path).suffix.lower()
        if content_type is None and suffix in EXTENSIONS:
            content_type = EXTENSIONS[suffix]
            inferred = Inferred(content_type, f"from the extension {suffix}")
            sent = f"sent the input as {content_type} ({inferred.reason})"
    else:
        payload = _payload(body, file, asynchronous)
        if asynchronous and len(payload) > INLINE_BODY_BYTES:
            raise typer.BadParameter(
                f"the body is {len(payload):,} bytes; an asynchronous request takes at most "
                f"{INLINE_BODY_BYTES:,} inline: put it where the server can read it and pass "
                "--input-location URL",
                param_hint="'--file'" if file is not None else "'--body'",
            )
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
    if asynchronous:
        from shipway.cli.async_invocations import queue_request  # only here: it reads shapes

        queue_request(
            ctx.ensure_object(ShipwayClient),
            endpoint,
            payload,
            input_location=input_location,
            content_type=content_type,
            accept=accept,
            inference_id=inference_id,
            output_path_extension=output_path_extension,
            filename=filename,
            ttl=ttl,
            timeout=timeout,
            wait_for_outcome=wait,
            verbose=verbose,
            note=sent if inferred is not None else None,
        )
        return
    assert payload is not None  # read above: not --async
    assert content_type is not None
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


def _payload(body: str | None, file: Path | None, asynchronous: bool) -> bytes:
    """The request body: ``--body``, ``--file`` or stdin."""
    if body is not None and file is not None:
        raise typer.BadParameter("give --body or --file, not both", param_hint="'--file'")
    if body is not None:
        return body.encode()
    if file is not None:
        return file.read_bytes()
    if sys.stdin.isatty():
        more = ", or --input-location with --async" if asynchronous else ""
        raise typer.BadParameter(
            f"give the request body with --body or --file, or pipe it on stdin{more}",
            param_hint="'--body'",
        )
    return typer.get_binary_stream("stdin").read()
