"""``shipway jobs``: batch transform jobs — create one, watch its progress, describe, list and
stop them.

A transform job scores every object under an input location (or those a manifest lists) with a
model and writes one output per input object; it runs on the server, without an endpoint.
``watch`` (and ``create --wait``) follows a job until it ends with a progress bar drawn from the
job's ``Progress`` (Shipway's extension of DescribeTransformJob: objects, bytes, records per
second and an estimate of the time left), or, when the bar's stream is not a terminal (a CI
log, a pipe), a plain line at each tenth of the way and each change of status.

How a job ended is a result, not an error of the command line: a Failed job prints its
FailureReason on stdout and exits 1, as a failed asynchronous request does; a Stopped job exits
1 too, since its outputs are incomplete. Ctrl-C stops the watching, never the job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.filesize import decimal
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from shipway.cli.async_invocations import duration
from shipway.cli.client import ApiError, ShipwayClient
from shipway.cli.models import parse_environment
from shipway.cli.render import (
    AsJson,
    MaxResults,
    NameContains,
    SortByOption,
    SortOrderOption,
    console,
    print_list,
    print_resource,
    progress,
    timestamp,
)
from shipway.domain.shape import parse
from shipway.domain.sorting import SortBy, SortOrder
from shipway.domain.transform_job import (
    AssembleWith,
    BatchStrategy,
    CreateTransformJobInput,
    DescribeTransformJobOutput,
    S3DataType,
    SplitType,
    TransformJobProgress,
    TransformJobStatus,
)

__all__ = [
    "DEFAULT_INSTANCE_TYPE",
    "app",
    "create",
    "describe",
    "follow",
    "list_",
    "print_outcome",
    "progress_line",
    "render_progress",
    "status_text",
    "stop",
    "watch",
]

app = typer.Typer(
    help="Batch transform jobs: create, watch, describe, list and stop them.",
    no_args_is_help=True,
)

DEFAULT_INSTANCE_TYPE = "local"
"""A job runs on this whole machine unless told otherwise."""
POLL_SECONDS = 0.25
"""How often a watch asks for the job: the bar moves about four times a second."""

Name = Annotated[
    str, typer.Argument(metavar="NAME", help="The transform job's name.", show_default=False)
]
Wait = Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")]

_COLORS = {
    TransformJobStatus.IN_PROGRESS: "cyan",
    TransformJobStatus.COMPLETED: "green",
    TransformJobStatus.FAILED: "red",
    TransformJobStatus.STOPPING: "yellow",
    TransformJobStatus.STOPPED: "yellow",
}


def status_text(status: TransformJobStatus) -> str:
    """The status as rich markup: cyan running, green done, red failed, yellow stopped."""
    return f"[{_COLORS[status]}]{status.value}[/]"


def _location(value: str) -> str:
    """A URL (``scheme://...``) as is; a local path made absolute, keeping a trailing ``/``
    (a prefix's), since the server reads it from its own working directory."""
    if "://" in value:
        return value
    absolute = str(Path(value).expanduser().resolve())
    return f"{absolute}/" if value.endswith("/") and absolute != "/" else absolute


@contextmanager
def _listing_hint() -> Iterator[None]:
    """A job that is not found gets a hint: where to find the names."""
    try:
        yield
    except ApiError as exc:
        if exc.status == 404:
            exc.hint = "'shipway jobs list' lists the transform jobs."
        raise


@app.command()
def create(
    ctx: typer.Context,
    name: Name,
    model: Annotated[
        str, typer.Option(metavar="NAME", help="The model to score with.", show_default=False)
    ],
    input_: Annotated[
        str,
        typer.Option(
            "--input",
            metavar="URL",
            help="Every object under this prefix (s3://, file://, a path...) is an input.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            metavar="URL", help="Where the outputs go (<input key>.out).", show_default=False
        ),
    ],
    manifest: Annotated[
        bool, typer.Option("--manifest", help="--input is a manifest file listing the objects.")
    ] = False,
    content_type: Annotated[
        str | None,
        typer.Option(
            metavar="TYPE", help="The input's media type (text/csv...).", show_default=False
        ),
    ] = None,
    accept: Annotated[
        str | None,
        typer.Option(metavar="TYPE", help="The media type to answer in.", show_default=False),
    ] = None,
    split: Annotated[
        SplitType | None,
        typer.Option(
            case_sensitive=False,
            metavar="TYPE",
            help="Records in an object: None (whole, the default), Line, RecordIO or TFRecord.",
            show_default=False,
        ),
    ] = None,
    strategy: Annotated[
        BatchStrategy | None,
        typer.Option(
            case_sensitive=False,
            metavar="STRATEGY",
            help="Records per request: SingleRecord (the default) or MultiRecord.",
            show_default=False,
        ),
    ] = None,
    max_payload: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="MB",
            help="Largest request (default 6; 0: no limit).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="N", help="Requests at a time per instance.", show_default=False
        ),
    ] = None,
    instance_type: Annotated[
        str, typer.Option(metavar="TYPE", help="The instance type ('local': this machine).")
    ] = DEFAULT_INSTANCE_TYPE,
    instance_count: Annotated[int, typer.Option(min=1, metavar="N", help="Instances.")] = 1,
    gzip: Annotated[bool, typer.Option("--gzip", help="The input objects are gzipped.")] = False,
    assemble: Annotated[
        AssembleWith | None,
        typer.Option(
            case_sensitive=False,
            metavar="HOW",
            help="Line: an output line per record; None (the default): outputs concatenated.",
            show_default=False,
        ),
    ] = None,
    input_filter: Annotated[
        str | None,
        typer.Option(metavar="JSONPATH", help="What of each record to send.", show_default=False),
    ] = None,
    join_input: Annotated[
        bool, typer.Option("--join-input", help="Join each output to its input record.")
    ] = False,
    output_filter: Annotated[
        str | None,
        typer.Option(metavar="JSONPATH", help="What of each output to keep.", show_default=False),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            metavar="KEY=VALUE",
            help="An environment variable for the model (repeatable).",
            show_default=False,
        ),
    ] = None,
    wait: Wait = False,
) -> None:
    """Create a transform job: score every input object with a model, one output each.

    With --wait, follow it as 'watch' does: exit 1 if it fails or is stopped. Example:

    shipway jobs create nightly --model m --input in/ --output out/ --split Line --wait
    """
    source = {
        "S3DataType": (S3DataType.MANIFEST_FILE if manifest else S3DataType.S3_PREFIX).value,
        "S3Uri": _location(input_),
    }
    transform_input: dict[str, Any] = {"DataSource": {"S3DataSource": source}}
    transform_output: dict[str, Any] = {"S3OutputPath": _location(output)}
    fields: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": transform_input,
        "TransformOutput": transform_output,
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
    }
    members: list[tuple[dict[str, Any], str, object]] = [
        (transform_input, "ContentType", content_type),
        (transform_input, "SplitType", split),
        (transform_input, "CompressionType", "Gzip" if gzip else None),
        (transform_output, "Accept", accept),
        (transform_output, "AssembleWith", assemble),
        (fields, "BatchStrategy", strategy),
        (fields, "MaxPayloadInMB", max_payload),
        (fields, "MaxConcurrentTransforms", concurrency),
    ]
    for owner, member, value in members:
        if value is not None:
            owner[member] = value
    processing = {
        "InputFilter": input_filter,
        "OutputFilter": output_filter,
        "JoinSource": "Input" if join_input else None,
    }
    if any(value is not None for value in processing.values()):
        fields["DataProcessing"] = {k: v for k, v in processing.items() if v is not None}
    environment = parse_environment(env or [])
    if environment:
        fields["Environment"] = environment
    request = parse(CreateTransformJobInput, fields)
    client = ctx.ensure_object(ShipwayClient)
    try:
        arn = client.create_transform_job(request)
    except ApiError as exc:
        if exc.status == 404:  # the only thing a creation can miss is its model
            exc.hint = "'shipway models list' lists the models."
        raise
    console.print(f"Created transform job [bold]{escape(name)}[/] ({escape(arn)})")
    if wait:
        _finish(follow(client, name))


@app.command()
def watch(ctx: typer.Context, name: Name) -> None:
    """Follow a job's progress live until it ends; exit 1 if it fails or is stopped.

    Ctrl-C stops the watching, not the job."""
    with _listing_hint():
        job = follow(ctx.ensure_object(ShipwayClient), name)
    _finish(job)


@app.command()
def stop(ctx: typer.Context, name: Name, wait: Wait = False) -> None:
    """Stop a job in progress: requests in flight are cancelled, and objects whose output is
    not yet written get none. With --wait, wait until it is Stopped (exit 1 if it failed
    first)."""
    client = ctx.ensure_object(ShipwayClient)
    with _listing_hint():
        client.stop_transform_job(name)
    if not wait:
        console.print(f"Stopping transform job [bold]{escape(name)}[/]")
        return
    try:
        with progress.status(f"Stopping transform job {escape(name)}..."):
            job = client.describe_transform_job(name)
            while not job.transform_job_status.finished:
                time.sleep(POLL_SECONDS)
                job = client.describe_transform_job(name)
    except KeyboardInterrupt:
        progress.print(
            f"Stopped waiting; the job is stopping: shipway jobs describe {escape(name)}"
        )
        raise typer.Exit(130) from None
    print_outcome(job)
    if job.transform_job_status is TransformJobStatus.FAILED:
        raise typer.Exit(1)


@app.command()
def describe(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Show a job: its status and why it failed, its input, output, requests and resources,
    and how far it has come."""
    with _listing_hint():
        job = ctx.ensure_object(ShipwayClient).describe_transform_job(name)
    print_resource(job, as_json=as_json, render=_render)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        TransformJobStatus | None,
        typer.Option(case_sensitive=False, help="Only jobs in this status.", show_default=False),
    ] = None,
    name_contains: NameContains = None,
    max_results: MaxResults = None,
    sort_by: SortByOption = SortBy.CREATION_TIME,
    sort_order: SortOrderOption = SortOrder.DESCENDING,
    as_json: AsJson = False,
) -> None:
    """List transform jobs, newest first, with their status."""
    jobs = ctx.ensure_object(ShipwayClient).list_transform_jobs(
        name_contains=name_contains,
        status=status,
        sort_by=sort_by,
        sort_order=sort_order,
        max_results=max_results,
    )
    print_list(
        "TransformJobSummaries",
        jobs,
        as_json=as_json,
        title="Transform jobs",
        columns=("Name", "Status", "Created", "Took"),
        row=lambda j: (
            escape(j.transform_job_name),
            status_text(j.transform_job_status),
            timestamp(j.creation_time),
            "-"
            if j.transform_end_time is None
            else duration((j.transform_end_time - j.creation_time).total_seconds()),
        ),
        empty="No transform jobs.",
    )


# --- following a job ------------------------------------------------------------------------


def follow(
    client: ShipwayClient, name: str, *, poll: float = POLL_SECONDS
) -> DescribeTransformJobOutput:
    """Show the job's progress until it ends (a live bar on a terminal, else plain lines, on
    stderr); the job as it ended. Ctrl-C stops the watching (exit 130), not the job."""
    try:
        job = client.describe_transform_job(name)
        if job.transform_job_status.finished:
            return job
        if progress.is_terminal:
            with Live(render_progress(job, _now()), console=progress, refresh_per_second=4) as live:
                while not job.transform_job_status.finished:
                    time.sleep(poll)
                    job = client.describe_transform_job(name)
                    live.update(render_progress(job, _now()))
            return job
        shown: tuple[object, ...] = ()
        while not job.transform_job_status.finished:
            if _milestone(job) != shown:
                shown = _milestone(job)
                progress.print(progress_line(job, _now()), markup=False)
            time.sleep(poll)
            job = client.describe_transform_job(name)
        return job
    except KeyboardInterrupt:
        progress.print(f"Stopped watching; the job goes on: shipway jobs watch {escape(name)}")
        raise typer.Exit(130) from None


def _finish(job: DescribeTransformJobOutput) -> None:
    """Print how the job ended; exit 1 unless it Completed."""
    print_outcome(job)
    if job.transform_job_status is not TransformJobStatus.COMPLETED:
        raise typer.Exit(1)


def _milestone(job: DescribeTransformJobOutput) -> tuple[object, ...]:
    """What a plain line is printed for a change of: the status, the input being listed, each
    tenth of the way."""
    share = _share(_progress(job))
    return (job.transform_job_status, share is not None, -1 if share is None else int(share * 10))


def render_progress(job: DescribeTransformJobOutput, now: datetime) -> RenderableType:
    """One frame of ``watch``: the job's status and time so far, a bar of the bytes read, the
    objects, bytes and records done, their rates and the time left."""
    p = _progress(job)
    status = job.transform_job_status
    header = Text.assemble(
        (f"Transform job {job.transform_job_name}", "bold"),
        "  ",
        (status.value, _COLORS[status]),
        f"  {duration(_elapsed(job, now))}",
    )
    share = _share(p)
    bar = Table.grid(padding=(0, 2))
    bar.add_row(
        ProgressBar(total=None if share is None else 1.0, completed=share or 0.0, width=40),
        "" if share is None else f"{share:.0%}",
        _remaining(job, p),
    )
    if share is None:
        details = Text("listing the input and starting instances", style="dim")
    else:
        details = Text("  ".join([_objects(p), _bytes(p), f"{p.records_processed:,} records"]))
        rates = _rates(p)
        if rates:
            details.append("  " + "  ".join(rates), style="cyan")
    return Group(header, bar, details)


def progress_line(job: DescribeTransformJobOutput, now: datetime) -> str:
    """``watch``'s plain line (no terminal): the frame's content in one line of text."""
    p = _progress(job)
    head = f"{duration(_elapsed(job, now))}  {job.transform_job_status.value}"
    share = _share(p)
    if share is None:
        return f"{head}: listing the input and starting instances"
    parts = [_objects(p), _bytes(p), f"{p.records_processed:,} records", *_rates(p)]
    remaining = _remaining(job, p)
    if remaining:
        parts.append(remaining)
    return f"{head} {share:.0%}: {', '.join(parts)}"


def print_outcome(job: DescribeTransformJobOutput) -> None:
    """How a finished job ended, on stdout: what it did, or why it failed, or that it was
    stopped; and where its outputs are."""
    name = escape(job.transform_job_name)
    took = f" in {duration(_elapsed(job, _now()))}"
    p = _progress(job)
    output = escape(job.transform_output.s3_output_path)
    status = job.transform_job_status
    if status is TransformJobStatus.COMPLETED:
        records = f"{p.records_processed:,} record{'s' * (p.records_processed != 1)}"
        console.print(f"[green]Completed[/]: transform job {name}{took}: {_objects(p)}, {records}")
        console.print(f"The outputs are under {output}")
        return
    written = f"{p.objects_completed} of {p.objects_total} objects have an output under {output}"
    if status is TransformJobStatus.FAILED:
        reason = job.failure_reason or "no failure reason was recorded"
        console.print(f"[red]Failed[/]: transform job {name}{took}: {escape(reason)}")
    elif status is TransformJobStatus.STOPPED:
        console.print(f"[yellow]Stopped[/]: transform job {name} was stopped{took}")
    else:
        console.print(f"Transform job {name} is {status_text(status)}")
        return
    console.print(written)


def _progress(job: DescribeTransformJobOutput) -> TransformJobProgress:
    return job.progress or TransformJobProgress()


def _share(p: TransformJobProgress) -> float | None:
    """How far the job has come, by bytes read (by objects when their sizes are unknown);
    None until its input is listed."""
    if p.bytes_total:
        return min(1.0, p.bytes_processed / p.bytes_total)
    if p.objects_total:
        return (p.objects_completed + p.objects_failed) / p.objects_total
    return None


def _objects(p: TransformJobProgress) -> str:
    done = f"{p.objects_completed}/{p.objects_total} object{'s' * (p.objects_total != 1)}"
    return f"{done} ({p.objects_failed} failed)" if p.objects_failed else done


def _bytes(p: TransformJobProgress) -> str:
    return f"{decimal(p.bytes_processed)} of {decimal(p.bytes_total)}"


def _rates(p: TransformJobProgress) -> list[str]:
    rates = []
    if p.records_per_second is not None:
        rates.append(f"{p.records_per_second:,.0f} records/s")
    if p.bytes_per_second is not None:
        rates.append(f"{decimal(int(p.bytes_per_second))}/s")
    return rates


def _remaining(job: DescribeTransformJobOutput, p: TransformJobProgress) -> str:
    running = job.transform_job_status is TransformJobStatus.IN_PROGRESS
    if not running or p.estimated_seconds_remaining is None:
        return ""
    return f"ETA {duration(p.estimated_seconds_remaining)}"


def _elapsed(job: DescribeTransformJobOutput, now: datetime) -> float:
    """Seconds from the job's creation to its end, or to ``now`` while it runs."""
    end = job.transform_end_time or now
    return (end - job.creation_time).total_seconds()


def _now() -> datetime:
    return datetime.now(UTC)


# --- describing a job -----------------------------------------------------------------------


def _render(job: DescribeTransformJobOutput) -> None:
    rows: list[tuple[str, str]] = [("Status", status_text(job.transform_job_status))]
    if job.failure_reason:
        rows.append(("Failure", f"[red]{escape(job.failure_reason)}[/]"))
    rows += [
        ("Model", escape(job.model_name)),
        ("ARN", escape(job.transform_job_arn)),
        ("Created", timestamp(job.creation_time)),
    ]
    if job.transform_start_time is not None:
        rows.append(("Started", timestamp(job.transform_start_time)))
    if job.transform_end_time is not None:
        took = duration(_elapsed(job, job.transform_end_time))
        rows.append(("Ended", f"{timestamp(job.transform_end_time)} (took {took})"))
    rows += [
        ("Input", _input(job)),
        ("Output", _output(job)),
        ("Requests", _requests(job)),
        ("Resources", _resources(job)),
    ]
    processing = job.data_processing
    if processing is not None:
        filters = []
        if processing.input_filter:
            filters.append(f"input {escape(processing.input_filter)}")
        if processing.join_source is not None and processing.join_source.value == "Input":
            filters.append("joined with the input")
        if processing.output_filter:
            filters.append(f"output {escape(processing.output_filter)}")
        if filters:
            rows.append(("Filters", ", ".join(filters)))
    if job.environment:
        rows.append(
            ("Environment", escape(", ".join(f"{k}={v}" for k, v in job.environment.items())))
        )
    if job.progress is not None:
        p = job.progress
        shards = f"{p.shards_completed}/{p.shards_total} shards"
        records = f"{p.records_processed:,} records"
        rows.append(("Progress", f"{_objects(p)}, {shards}, {records}, {_bytes(p)} read"))
        rates = _rates(p)
        if rates and job.transform_job_status is TransformJobStatus.IN_PROGRESS:
            rows.append(("Speed", ", ".join(rates)))
        remaining = _remaining(job, p)
        if remaining:
            rows.append(("Remaining", remaining.removeprefix("ETA ")))
    console.print(f"[bold]Transform job[/] {escape(job.transform_job_name)}")
    for label, value in rows:
        console.print(f"{label:<14}{value}")


def _input(job: DescribeTransformJobOutput) -> str:
    given = job.transform_input
    source = given.data_source.s3_data_source
    parts = [f"{escape(source.s3_uri)} ({source.s3_data_type.value})"]
    parts.append(escape(given.content_type) if given.content_type else "no content type")
    split = job.split_type
    parts.append("each object whole" if split is SplitType.NONE else f"split by {split.value}")
    if given.compression_type is not None and given.compression_type.value == "Gzip":
        parts.append("gzipped")
    return ", ".join(parts)


def _output(job: DescribeTransformJobOutput) -> str:
    given = job.transform_output
    parts = [escape(given.s3_output_path)]
    if given.accept:
        parts.append(f"accept {escape(given.accept)}")
    assembled = given.assemble_with is AssembleWith.LINE
    parts.append("one line per record" if assembled else "outputs concatenated")
    return ", ".join(parts)


def _requests(job: DescribeTransformJobOutput) -> str:
    limit = job.payload_limit
    size = "no size limit" if limit is None else f"at most {limit // 1024**2} MB each"
    parts = [job.strategy.value, size]
    if job.max_concurrent_transforms:
        parts.append(f"{job.max_concurrent_transforms} at a time per instance")
    retries = job.invocations_max_retries
    parts.append(
        f"{job.invocations_timeout} s timeout, {retries} retr{'ies' if retries != 1 else 'y'}"
    )
    return ", ".join(parts)


def _resources(job: DescribeTransformJobOutput) -> str:
    resources = job.transform_resources
    count = resources.instance_count
    return f"{count} {escape(resources.instance_type)} instance{'s' * (count != 1)}"
