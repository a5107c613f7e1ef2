"""``shipway topics``: the SNS topics (made with boto3's ``sns`` client), their subscriptions
and how the deliveries to each are going."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from shipway.cli.client import ShipwayClient
from shipway.cli.render import AsJson, console, print_json, print_list, timestamp
from shipway.domain.notification import SubscriptionDescription, TopicDescription
from shipway.domain.shape import dump

__all__ = ["app", "list_", "show"]

app = typer.Typer(
    help="SNS topics (made with boto3's sns client): list them, show one with its subscriptions.",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="The topic's name.", show_default=False)]


@app.command("list")
def list_(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List topics with their subscriptions confirmed and pending."""
    topics = ctx.ensure_object(ShipwayClient).list_topics()
    print_list(
        "Topics",
        topics,
        as_json=as_json,
        title="Topics",
        columns=("Name", "Confirmed", "Pending", "Created", "ARN"),
        row=lambda t: (
            escape(t.name),
            t.attributes.get("SubscriptionsConfirmed", "0"),
            t.attributes.get("SubscriptionsPending", "0"),
            timestamp(t.creation_time),
            escape(t.topic_arn),
        ),
        empty="No topics.",
    )


@app.command()
def show(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Show a topic and its subscriptions: confirmed or pending, and their deliveries (pending,
    delivered, given up) with the last error."""
    client = ctx.ensure_object(ShipwayClient)
    topic = client.describe_topic(name)
    subscriptions = client.topic_subscriptions(name)
    if as_json:
        print_json({**dump(topic), "Subscriptions": [dump(s) for s in subscriptions]})
        return
    _render(topic, subscriptions)


def _render(topic: TopicDescription, subscriptions: list[SubscriptionDescription]) -> None:
    console.print(f"[bold]Topic[/]    {escape(topic.name)}")
    console.print(f"ARN      {escape(topic.topic_arn)}")
    console.print(f"Created  {timestamp(topic.creation_time)}")
    if topic.attributes.get("DisplayName"):
        console.print(f"Display  {escape(topic.attributes['DisplayName'])}")
    if topic.tags:
        console.print("Tags     " + escape(", ".join(f"{t.key}={t.value}" for t in topic.tags)))
    if not subscriptions:
        console.print("No subscriptions.")
        return
    columns = ("Endpoint", "Status", "Pending", "Delivered", "Given up", "Last error")
    table = Table(*columns, title="Subscriptions")
    for s in subscriptions:
        table.add_row(
            escape(s.endpoint),
            "[yellow]pending confirmation[/]" if s.pending_confirmation else "[green]confirmed[/]",
            str(s.deliveries_pending),
            str(s.deliveries_delivered),
            f"[red]{s.deliveries_failed}[/]" if s.deliveries_failed else "0",
            escape(s.last_error or ""),
        )
    console.print(table)
