"""``shipway alarms``: put, list, describe, delete alarms, set their state, show their history."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from shipway.cli.client import ShipwayClient
from shipway.cli.render import AsJson, MaxResults, console, print_list, print_resource, timestamp
from shipway.domain.alarm import (
    AlarmHistoryItem,
    AlarmState,
    ComparisonOperator,
    HistoryItemType,
    MetricAlarm,
    PutMetricAlarmInput,
    TreatMissingData,
)
from shipway.domain.metric import PERCENTILE_PATTERN, StandardUnit
from shipway.domain.shape import parse
from shipway.monitor.metrics import SAGEMAKER

__all__ = [
    "app",
    "comparison",
    "condition",
    "delete",
    "describe",
    "history",
    "list_",
    "put",
    "set_state",
    "state_text",
]

app = typer.Typer(
    help="Alarms on endpoint metrics (CloudWatch's): put, list, describe, delete, set state, "
    "history.",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="The alarm's name.", show_default=False)]

_COLORS = {AlarmState.OK: "green", AlarmState.ALARM: "red", AlarmState.INSUFFICIENT_DATA: "grey50"}
_SYMBOLS = {
    ">=": ComparisonOperator.GREATER_THAN_OR_EQUAL,
    ">": ComparisonOperator.GREATER_THAN,
    "<": ComparisonOperator.LESS_THAN,
    "<=": ComparisonOperator.LESS_THAN_OR_EQUAL,
}
_SIGNS = {operator: sign for sign, operator in _SYMBOLS.items()}


def state_text(state: AlarmState) -> str:
    """The state as rich markup: red ALARM, green OK, grey INSUFFICIENT_DATA."""
    return f"[{_COLORS[state]}]{state.value}[/]"


def comparison(value: str) -> ComparisonOperator:
    """A comparison operator by name (any case) or by sign: ``>=``, ``>``, ``<``, ``<=``."""
    if value in _SYMBOLS:
        return _SYMBOLS[value]
    for operator in ComparisonOperator:
        if operator.value.lower() == value.lower():
            return operator
    raise typer.BadParameter(
        f"{value!r} is not one of {', '.join(o.value for o in ComparisonOperator)}, "
        f"{', '.join(_SYMBOLS)}"
    )


def condition(alarm: MetricAlarm) -> str:
    """``Sum >= 1.0, 2 of 3 x 10 s`` (markup-free)."""
    sign = _SIGNS.get(alarm.comparison_operator, alarm.comparison_operator.value)
    return (
        f"{alarm.stat} {sign} {alarm.threshold:g}, {alarm.datapoints_needed} of "
        f"{alarm.evaluation_periods} x {alarm.period} s"
    )


def _metric(alarm: MetricAlarm) -> str:
    dimensions = ", ".join(f"{d.name}={d.value}" for d in alarm.dimensions or [])
    return f"{alarm.namespace} {alarm.metric_name}" + (f" ({dimensions})" if dimensions else "")


def _dimension(value: str) -> tuple[str, str]:
    name, equals, dimension_value = value.partition("=")
    if not equals or not name or not dimension_value:
        raise typer.BadParameter(f"{value!r} is not Name=Value")
    return name, dimension_value


@app.command()
def put(
    ctx: typer.Context,
    name: Name,
    metric: Annotated[
        str, typer.Option(help="The metric, e.g. Invocation5XXErrors.", show_default=False)
    ],
    threshold: Annotated[float, typer.Option(help="The value to compare with.")],
    comparison_operator: Annotated[
        str,
        typer.Option(
            "--comparison",
            metavar="OPERATOR",
            help="GreaterThanOrEqualToThreshold (>=, the default), GreaterThanThreshold (>), "
            "LessThanThreshold (<) or LessThanOrEqualToThreshold (<=).",
            show_default=False,
        ),
    ] = "GreaterThanOrEqualToThreshold",
    endpoint: Annotated[
        str | None, typer.Option(help="Dimension EndpointName.", show_default=False)
    ] = None,
    variant: Annotated[
        str | None, typer.Option(help="Dimension VariantName.", show_default=False)
    ] = None,
    dimension: Annotated[
        list[str] | None,
        typer.Option(help="Another dimension, Name=Value (repeatable).", show_default=False),
    ] = None,
    namespace: Annotated[str, typer.Option(help="The metric's namespace.")] = SAGEMAKER,
    statistic: Annotated[
        str,
        typer.Option(help="SampleCount, Average, Sum, Minimum, Maximum or a percentile (p99)."),
    ] = "Sum",
    period: Annotated[int, typer.Option(help="Seconds per datapoint: 10, 20, 30 or n x 60.")] = 60,
    evaluation_periods: Annotated[int, typer.Option(help="N: datapoints evaluated.")] = 1,
    datapoints_to_alarm: Annotated[
        int | None,
        typer.Option(help="M: breaching datapoints that alarm (default N).", show_default=False),
    ] = None,
    treat_missing_data: Annotated[
        TreatMissingData | None,
        typer.Option(
            metavar="HOW",
            help="What a period without data counts as: breaching, notBreaching, ignore or "
            "missing (the default).",
            show_default=False,
        ),
    ] = None,
    unit: Annotated[
        StandardUnit | None,
        typer.Option(
            metavar="UNIT",
            help="Only datapoints of this unit, as CloudWatch names it: Count, Seconds, "
            "Bytes/Second...",
            show_default=False,
        ),
    ] = None,
    description: Annotated[str | None, typer.Option(show_default=False)] = None,
) -> None:
    """Create an alarm on a metric, or replace the one of that name."""
    dimensions = [_dimension(d) for d in dimension or []]
    if endpoint is not None:
        dimensions.insert(0, ("EndpointName", endpoint))
    if variant is not None:
        dimensions.insert(1 if endpoint is not None else 0, ("VariantName", variant))
    percentile = re.fullmatch(PERCENTILE_PATTERN, statistic) is not None
    document = {
        "AlarmName": name,
        "AlarmDescription": description,
        "MetricName": metric,
        "Namespace": namespace,
        "Dimensions": [{"Name": n, "Value": v} for n, v in dimensions],
        "ExtendedStatistic" if percentile else "Statistic": statistic,
        "Period": period,
        "EvaluationPeriods": evaluation_periods,
        "DatapointsToAlarm": datapoints_to_alarm,
        "Threshold": threshold,
        "ComparisonOperator": comparison(comparison_operator),
        "TreatMissingData": treat_missing_data,
        "Unit": unit,
    }
    request = parse(PutMetricAlarmInput, {k: v for k, v in document.items() if v is not None})
    alarm = ctx.ensure_object(ShipwayClient).put_alarm(request)
    console.print(
        f"Alarm [bold]{escape(alarm.alarm_name)}[/] is {state_text(alarm.state_value)}: "
        f"{escape(_metric(alarm))} {escape(condition(alarm))}"
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    prefix: Annotated[
        str | None, typer.Option(help="Only names starting with this.", show_default=False)
    ] = None,
    state: Annotated[
        AlarmState | None,
        typer.Option(case_sensitive=False, help="Only alarms in this state.", show_default=False),
    ] = None,
    max_results: MaxResults = None,
    as_json: AsJson = False,
) -> None:
    """List alarms with their state and condition."""
    alarms = ctx.ensure_object(ShipwayClient).list_alarms(
        prefix=prefix, state=state, max_results=max_results
    )
    print_list(
        "MetricAlarms",
        alarms,
        as_json=as_json,
        title="Alarms",
        columns=("Name", "State", "Metric", "Condition", "Since"),
        row=lambda a: (
            escape(a.alarm_name),
            state_text(a.state_value),
            escape(_metric(a)),
            escape(condition(a)),
            timestamp(a.state_transitioned_timestamp),
        ),
        empty="No alarms.",
    )


@app.command()
def describe(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Show an alarm: what it watches, its state and why."""
    alarm = ctx.ensure_object(ShipwayClient).describe_alarm(name)
    print_resource(alarm, as_json=as_json, render=_render)


@app.command()
def delete(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="The alarms' names.", show_default=False)],
) -> None:
    """Delete alarms and their history."""
    client = ctx.ensure_object(ShipwayClient)
    for name in names:
        client.delete_alarm(name)
        console.print(f"Deleted alarm [bold]{escape(name)}[/]")


@app.command("set-state")
def set_state(
    ctx: typer.Context,
    name: Name,
    state: Annotated[
        AlarmState, typer.Option(case_sensitive=False, help="OK, ALARM or INSUFFICIENT_DATA.")
    ],
    reason: Annotated[str, typer.Option(help="Why (StateReason).")] = "Set by hand",
    reason_data: Annotated[
        str | None, typer.Option(help="JSON (StateReasonData).", show_default=False)
    ] = None,
) -> None:
    """Set an alarm's state until its next evaluation (to test a rollback, say)."""
    alarm = ctx.ensure_object(ShipwayClient).set_alarm_state(name, state, reason, reason_data)
    console.print(f"Alarm [bold]{escape(alarm.alarm_name)}[/] is {state_text(alarm.state_value)}")


@app.command()
def history(
    ctx: typer.Context,
    name: Name,
    item_type: Annotated[
        HistoryItemType | None,
        typer.Option("--type", help="Only items of this type.", show_default=False),
    ] = None,
    max_results: MaxResults = None,
    as_json: AsJson = False,
) -> None:
    """An alarm's configuration and state changes, newest first."""
    items = ctx.ensure_object(ShipwayClient).alarm_history(
        name, item_type=item_type, max_results=max_results
    )
    print_list(
        "AlarmHistoryItems",
        items,
        as_json=as_json,
        title=f"History of {escape(name)}",
        columns=("Time", "Type", "Summary"),
        row=_history_row,
        empty="No history.",
    )


def _history_row(item: AlarmHistoryItem) -> tuple[str, str, str]:
    return (
        timestamp(item.timestamp),
        item.history_item_type.value,
        escape(item.history_summary),
    )


def _render(alarm: MetricAlarm) -> None:
    console.print(f"[bold]Alarm[/]      {escape(alarm.alarm_name)}")
    console.print(f"State      {state_text(alarm.state_value)}")
    console.print(f"Reason     {escape(alarm.state_reason)}")
    console.print(f"Since      {timestamp(alarm.state_transitioned_timestamp)}")
    console.print(f"Metric     {escape(_metric(alarm))}")
    console.print(f"Condition  {escape(condition(alarm))}")
    console.print(f"Missing    {alarm.missing_data.value}")
    if alarm.alarm_description:
        console.print(f"About      {escape(alarm.alarm_description)}")
    console.print(f"ARN        {escape(alarm.alarm_arn)}")
    actions = Table("On", "Actions (SNS topics are notified)", title="Actions")
    for label, arns in (
        ("OK", alarm.ok_actions),
        ("ALARM", alarm.alarm_actions),
        ("INSUFFICIENT_DATA", alarm.insufficient_data_actions),
    ):
        if arns:
            actions.add_row(label, escape("\n".join(arns)))
    if actions.row_count:
        console.print(actions)
