"""``shipway async``: the requests of asynchronous endpoints (InvokeEndpointAsync's queue).

``list`` and ``show`` read the queue; ``shipway invoke --async`` queues a request through
:func:`queue_request`, which can also wait for its outcome; ``shipway endpoints describe`` shows
an asynchronous endpoint's backlog and configuration with :func:`print_async_endpoint`.

A request's outcome is a result, not an error of the command line: a Failed request prints its
FailureReason on stdout, as a rolled-back deployment does, and exits 1.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from shipway.cli.client import ApiError, QueuedInvocation, ShipwayClient
from shipway.cli.render import AsJson, console, print_list, print_resource, progress, timestamp
from shipway.domain.async_inference import (
    AsyncInferenceConfig,
    AsyncInvocation,
    AsyncInvocationStatus,
    QueueSummary,
)

__all__ = [
    "DEFAULT_LIST_SIZE",
    "app",
    "duration",
    "list_",
    "print_async_endpoint",
    "queue_request",
    "show",
    "status_text",
    "wait",
]

app = typer.Typer(
    help="Asynchronous requests (InvokeEndpointAsync): list them, show one with its outcome.",
    no_args_is_help=True,
)

DEFAULT_LIST_SIZE = 50
"""``async list`` shows the newest this many unless ``--max-results`` says otherwise: every
request an endpoint ever queued is kept, so "all" would be a long table."""

POLL_SECONDS = 0.25

InferenceId = Annotated[
    str, typer.Argument(metavar="ID", help="The request's InferenceId.", show_default=False)
]
Endpoint = Annotated[
    str | None,
    typer.Option(metavar="NAME", help="Only this endpoint's requests.", show_default=False),
]

_COLORS = {
    AsyncInvocationStatus.IN_QUEUE: "yellow",
    AsyncInvocationStatus.IN_PROGRESS: "cyan",
    AsyncInvocationStatus.COMPLETED: "green",
    AsyncInvocationStatus.FAILED: "red",
}


def status_text(status: AsyncInvocationStatus) -> str:
    """The status as rich markup: yellow queued, cyan under way, green done, red failed."""
    return f"[{_COLORS[status]}]{status.value}[/]"


def queue_request(
    client: ShipwayClient,
    endpoint: str,
    body: bytes | None,
    *,
    input_location: str | None,
    content_type: str | None,
    accept: str | None,
    inference_id: str | None,
    output_path_extension: str | None,
    filename: str | None,
    ttl: int | None,
    timeout: int | None,
    wait_for_outcome: bool,
    verbose: bool,
    note: str | None = None,
) -> None:
    """``shipway invoke --async``: queue the request and print where its answer will be; with
    ``wait_for_outcome``, follow it to Completed or Failed (exit 1). ``note`` (what the input
    was sent as) goes to stderr once the request is queued, so a refusal stays one line."""
    queued = client.invoke_async(
        endpoint,
        body,
        input_location=input_location,
        content_type=content_type,
        accept=accept,
        inference_id=inference_id,
        output_path_extension=output_path_extension,
        filename=filename,
        request_ttl_seconds=ttl,
        invocation_timeout_seconds=timeout,
    )
    if note is not None:
        progress.print(escape(note))
    _print_queued(queued)
    if not wait_for_outcome:
        return
    finished = wait(client, queued.inference_id, endpoint)
    succeeded = print_outcome(finished)
    if verbose and finished.invoked_production_variant:
        progress.print(
            f"Variant {escape(finished.invoked_production_variant)} answered "
            f"{escape(finished.response_content_type or '')}"
        )
    if not succeeded:
        raise typer.Exit(1)


def _print_queued(queued: QueuedInvocation) -> None:
    console.print(f"InferenceId      {escape(queued.inference_id)}")
    console.print(f"OutputLocation   {escape(queued.output_location)}")
    console.print(f"FailureLocation  {escape(queued.failure_location)}")


def wait(
    client: ShipwayClient, inference_id: str, endpoint: str | None, *, poll: float = POLL_SECONDS
) -> AsyncInvocation:
    """Poll the request until it is Completed or Failed, its status on a line of stderr.

    There is no deadline of its own: the server ends every request, by its RequestTTLSeconds
    in the queue and its InvocationTimeoutSeconds once started. Ctrl-C stops the waiting, not
    the request.
    """
    try:
        with progress.status(f"Request {escape(inference_id)} is queued...") as line:
            while True:
                invocation = client.describe_async_invocation(inference_id, endpoint=endpoint)
                if invocation.status.finished:
                    return invocation
                line.update(_waiting(invocation))
                time.sleep(poll)
    except KeyboardInterrupt:
        progress.print(
            f"Stopped waiting; the request goes on: shipway async show {escape(inference_id)}"
        )
        raise typer.Exit(130) from None


def _waiting(invocation: AsyncInvocation) -> str:
    name = escape(invocation.inference_id)
    if invocation.status is AsyncInvocationStatus.IN_PROGRESS and invocation.start_time:
        attempt = f"attempt {invocation.attempts}, " if invocation.attempts > 1 else ""
        return (
            f"Request {name} is {status_text(invocation.status)} ({attempt}started "
            f"{duration(_since(invocation.start_time))} ago)..."
        )
    return (
        f"Request {name} is {status_text(invocation.status)} (queued "
        f"{duration(_since(invocation.enqueued_time))} ago)..."
    )


def print_outcome(invocation: AsyncInvocation) -> bool:
    """A finished request's outcome on stdout; whether it Completed."""
    name = escape(invocation.inference_id)
    took = _took(invocation)
    if invocation.status is AsyncInvocationStatus.COMPLETED:
        console.print(f"[green]Completed[/]: request {name} answered{took}")
        console.print(f"The answer is at {escape(invocation.output_location)}")
        return True
    reason = invocation.failure_reason or "no failure reason was recorded"
    console.print(f"[red]Failed[/]: request {name}{took}: {escape(reason)}")
    console.print(f"The failure is at {escape(invocation.failure_location)}")
    return False


def _took(invocation: AsyncInvocation) -> str:
    if invocation.end_time is None:
        return ""
    parts = [f" in {duration(_between(invocation.enqueued_time, invocation.end_time))}"]
    if invocation.start_time is not None:
        parts.append(
            f" ({duration(_between(invocation.enqueued_time, invocation.start_time))} queued"
        )
        if invocation.attempts > 1:
            parts.append(f", {invocation.attempts} attempts")
        parts.append(")")
    return "".join(parts)


@app.command("list")
def list_(
    ctx: typer.Context,
    endpoint: Endpoint = None,
    status: Annotated[
        AsyncInvocationStatus | None,
        typer.Option(
            case_sensitive=False, help="Only requests in this status.", show_default=False
        ),
    ] = None,
    max_results: Annotated[
        int,
        typer.Option("--max-results", "--max", min=1, help="At most this many, newest first."),
    ] = DEFAULT_LIST_SIZE,
    as_json: AsJson = False,
) -> None:
    """List asynchronous requests, newest first, with their status."""
    found = ctx.ensure_object(ShipwayClient).list_async_invocations(
        endpoint=endpoint, status=status, max_results=max_results + 1
    )
    shown = found[:max_results]
    print_list(
        "AsyncInvocations",
        shown,
        as_json=as_json,
        title="Asynchronous requests",
        columns=("InferenceId", "Endpoint", "Status", "Enqueued", "Took", "Attempts"),
        row=lambda i: (
            escape(i.inference_id),
            escape(i.endpoint_name),
            status_text(i.status),
            timestamp(i.enqueued_time),
            "-" if i.end_time is None else duration(_between(i.enqueued_time, i.end_time)),
            str(i.attempts),
        ),
        empty="No asynchronous requests.",
    )
    if len(found) > max_results and not as_json:
        progress.print(f"The newest {max_results} shown; --max-results N shows more.")


@app.command()
def show(
    ctx: typer.Context,
    inference_id: InferenceId,
    endpoint: Endpoint = None,
    as_json: AsJson = False,
) -> None:
    """Show a request: its status, where its input and answer are, its times, why it failed.

    With an InferenceId used more than once, the newest request (of --endpoint) is shown."""
    client = ctx.ensure_object(ShipwayClient)
    try:
        invocation = client.describe_async_invocation(inference_id, endpoint=endpoint)
    except ApiError as exc:
        if exc.status == 404:
            exc.hint = "'shipway async list' lists the requests and their InferenceIds."
        raise
    print_resource(invocation, as_json=as_json, render=_render)


def _render(invocation: AsyncInvocation) -> None:
    rows: list[tuple[str, str]] = [
        ("Endpoint", escape(invocation.endpoint_name)),
        ("Status", status_text(invocation.status)),
    ]
    if invocation.failure_reason:
        rows.append(("Failure", f"[red]{escape(invocation.failure_reason)}[/]"))
    # an inline body's location is the server's private copy, gone once the request is done
    source = "sent inline" if invocation.inline_input else escape(invocation.input_location)
    rows += [
        ("Input", f"{source}, {invocation.input_size} bytes"),
        ("Content type", escape(invocation.content_type or "-")),
        ("Accept", escape(invocation.accept or "-")),
        ("Output", escape(invocation.output_location)),
        ("Failures", escape(invocation.failure_location)),
        ("Enqueued", timestamp(invocation.enqueued_time)),
    ]
    if invocation.start_time is not None:
        rows.append(("Started", timestamp(invocation.start_time)))
    if invocation.end_time is not None:
        rows.append(("Ended", f"{timestamp(invocation.end_time)}{_took(invocation)}"))
    rows += [
        ("Attempts", str(invocation.attempts)),
        ("TTL", f"{invocation.request_ttl_seconds} s in the queue"),
        ("Timeout", f"{invocation.invocation_timeout_seconds} s to answer"),
    ]
    if invocation.invoked_production_variant:
        answered = escape(invocation.response_content_type or "")
        rows.append(("Variant", f"{escape(invocation.invoked_production_variant)} ({answered})"))
    console.print(f"[bold]Request[/]       {escape(invocation.inference_id)}")
    for label, value in rows:
        console.print(f"{label:<14}{value}")


def print_async_endpoint(config: AsyncInferenceConfig, queue: QueueSummary | str) -> None:
    """An asynchronous endpoint's backlog (or why it could not be read) and its
    AsyncInferenceConfig: where answers and failures go, the topics that hear of them."""
    output = config.output_config
    notifications = output.notification_config
    console.print("[bold]Asynchronous inference[/]")
    if isinstance(queue, str):
        console.print(f"  Backlog        [yellow]unknown: {escape(queue)}[/]")
    else:
        backlog = queue.approximate_backlog_size
        console.print(
            f"  Backlog        {backlog} request{'s' * (backlog != 1)}, "
            f"{queue.in_progress} in progress"
        )
        oldest = (
            f"queued {duration(queue.approximate_age_of_oldest_request)} ago" if backlog else "-"
        )
        console.print(f"  Oldest         {oldest}")
    console.print(f"  Output path    {escape(output.output_path)}")
    console.print(f"  Failure path   {escape(output.failure_path)}")
    success = notifications.success_topic if notifications else None
    error = notifications.error_topic if notifications else None
    console.print(f"  Success topic  {escape(success or 'none')}")
    console.print(f"  Error topic    {escape(error or 'none')}")
    included = (notifications.include_inference_response_in or []) if notifications else []
    if included:
        console.print(f"  Answer sent to {', '.join(kind.value for kind in included)}")
    client = config.client_config
    if client is not None and client.max_concurrent_invocations_per_instance is not None:
        per = client.max_concurrent_invocations_per_instance
        console.print(f"  Concurrency    {per} request{'s' * (per != 1)} per instance")


def duration(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min 5 s``, ``2 h 10 min``."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def _since(moment: datetime) -> float:
    return _between(moment, datetime.now(UTC))
