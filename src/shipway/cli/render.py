"""How the ``shipway`` commands print: the consoles (from :mod:`shipway.cli.streams`), the
options every listing shares, times, and resources or lists as JSON (``--json``) or as tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from shipway.cli.streams import console, progress
from shipway.domain.shape import Shape, dump
from shipway.domain.sorting import SortBy, SortOrder

__all__ = [
    "AsJson",
    "MaxResults",
    "NameContains",
    "SortByOption",
    "SortOrderOption",
    "console",
    "print_json",
    "print_list",
    "print_resource",
    "progress",
    "timestamp",
]

S = TypeVar("S", bound=Shape)

AsJson = Annotated[bool, typer.Option("--json", help="Print the raw JSON.")]
NameContains = Annotated[
    str | None, typer.Option(help="Only names containing this.", show_default=False)
]
MaxResults = Annotated[
    int | None, typer.Option(min=1, help="At most this many (default: all).", show_default=False)
]
SortByOption = Annotated[SortBy, typer.Option(case_sensitive=False)]
SortOrderOption = Annotated[SortOrder, typer.Option(case_sensitive=False)]


def timestamp(moment: datetime) -> str:
    """A time in the local time zone, to the second: ``2026-01-02 03:04:05``."""
    return f"{moment.astimezone():%Y-%m-%d %H:%M:%S}"


def print_json(document: Mapping[str, Any]) -> None:
    """A JSON document on stdout, indented."""
    typer.echo(json.dumps(document, indent=2))


def print_resource(resource: S, *, as_json: bool, render: Callable[[S], None]) -> None:
    """One resource: its wire form as JSON with ``--json``, else as ``render`` draws it."""
    if as_json:
        print_json(dump(resource))
    else:
        render(resource)


def print_list(
    key: str,
    items: Sequence[S],
    *,
    as_json: bool,
    title: str,
    columns: Sequence[str],
    row: Callable[[S], Sequence[str]],
    empty: str,
) -> None:
    """A listing: ``{key: [items]}`` as JSON with ``--json``, else a table of one ``row`` per
    item under ``title`` (``row`` gives rich markup), or ``empty`` when there are no items.
    """
    if as_json:
        print_json({key: [dump(item) for item in items]})
        return
    if not items:
        console.print(empty)
        return
    table = Table(*columns, title=title)
    for item in items:
        table.add_row(*row(item))
    console.print(table)
