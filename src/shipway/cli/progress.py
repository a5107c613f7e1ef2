"""The live view of a deployment: each step with its share of traffic and instances, the bake
in progress with its clock, the alarms' states — redrawn until the deployment ends."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from shipway.cli.client import ShipwayClient
from shipway.domain.endpoint import DescribeEndpointOutput, EndpointStatus

__all__ = ["follow", "outcome", "render_deployment"]

ALARM_STYLES = {"OK": "green", "ALARM": "bold red", "INSUFFICIENT_DATA": "yellow"}


def follow(
    client: ShipwayClient, name: str, console: Console, *, poll: float = 0.5
) -> DescribeEndpointOutput:
    """Show the deployment of endpoint ``name`` live until it ends; the endpoint after it."""
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            view = client.deployment(name)
            if view is None:
                break
            live.update(render_deployment(view))
            time.sleep(poll)
    return client.describe_endpoint(name)


def render_deployment(view: dict[str, Any]) -> RenderableType:
    """One frame of the view, from ``GET /api/endpoints/{name}/deployment``."""
    now = _time(view["Now"])
    phase = view["Phase"]
    current = view["Step"]
    steps = view["Steps"]
    header = Text.assemble(
        (f"{view['EndpointStatus']} ", _status_style(view["EndpointStatus"])),
        f"to {view['EndpointConfigName']} — {_policy(view)}",
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("step", "new fleet's traffic", "new instances", "old instances", "stage"):
        table.add_column(column)
    in_phase = (now - _time(view["PhaseStarted"])).total_seconds()
    bake = float(view.get("BakeSeconds", 0))
    for n, step in enumerate(steps):
        if phase == "RollingBack" or n > current:
            stage = Text("·", style="dim")
        elif n < current or phase in ("TerminationWait", "DeletingOldFleet"):
            stage = Text("done", style="green")
        elif phase == "Baking":
            stage = Text(f"baking {_clock(in_phase)} / {_clock(bake)}", style="cyan")
        else:
            stage = Text("starting instances", style="yellow")
        table.add_row(
            f"{n + 1}/{len(steps)}",
            f"{step['Share']:.0%}",
            _counts(step["NewCounts"]),
            _counts(step["OldCounts"]),
            stage,
        )
    parts: list[RenderableType] = [header, table]
    share = float(view.get("Share", 0.0))
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        "traffic on the new fleet",
        ProgressBar(total=1.0, completed=share, width=30),
        f"{share:.0%}",
    )
    parts.append(bar)
    if phase == "TerminationWait":
        wait = float(view.get("TerminationWaitSeconds", 0))
        parts.append(
            Text(f"old fleet kept for a fast rollback: {_clock(in_phase)} / {_clock(wait)}")
        )
    if phase == "DeletingOldFleet":
        parts.append(Text("the old fleet is draining and stopping"))
    if phase == "RollingBack":
        parts.append(Text(f"rolling back: {view.get('Reason', '')}", style="bold red"))
    alarms = view.get("Alarms") or []
    if alarms:
        line = Text("alarms: ")
        for n, alarm in enumerate(alarms):
            if n:
                line.append(", ")
            state = alarm["StateValue"]
            line.append(f"{alarm['AlarmName']} ")
            line.append(state, style=ALARM_STYLES.get(state, "red"))
        parts.append(line)
    return Group(*parts)


def outcome(endpoint: DescribeEndpointOutput) -> tuple[str, bool]:
    """A one-line summary of how a deployment ended, and whether it succeeded."""
    name = escape(endpoint.endpoint_name)
    if endpoint.endpoint_status is not EndpointStatus.IN_SERVICE:
        return f"Endpoint {name} is {endpoint.endpoint_status.value}.", False
    if endpoint.failure_reason:
        return (
            f"[red]Deployment rolled back[/red]: endpoint {name} is InService on "
            f"{escape(endpoint.endpoint_config_name or '')}. {escape(endpoint.failure_reason)}",
            False,
        )
    return (
        f"[green]Deployed[/green]: endpoint {name} is InService on "
        f"{escape(endpoint.endpoint_config_name or '')}.",
        True,
    )


def _policy(view: dict[str, Any]) -> str:
    config = view.get("DeploymentConfig") or {}
    rolling = config.get("RollingUpdatePolicy")
    if rolling is not None:
        return f"rolling, batches of {_size(rolling['MaximumBatchSize'])}"
    blue_green = config.get("BlueGreenUpdatePolicy")
    if blue_green is None:
        return "blue/green, all at once"
    routing = blue_green["TrafficRoutingConfiguration"]
    kind = routing["Type"]
    if kind == "CANARY":
        return f"blue/green, canary {_size(routing['CanarySize'])}"
    if kind == "LINEAR":
        return f"blue/green, linear steps of {_size(routing['LinearStepSize'])}"
    return "blue/green, all at once"


def _size(size: dict[str, Any]) -> str:
    value = size["Value"]
    return f"{value}%" if size["Type"] == "CAPACITY_PERCENT" else f"{value} instance(s)"


def _counts(counts: dict[str, int]) -> str:
    if len(counts) == 1:
        return str(next(iter(counts.values())))
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _status_style(status: str) -> str:
    return {"Updating": "yellow", "RollingBack": "bold red", "InService": "green"}.get(status, "")
