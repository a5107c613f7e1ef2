"""``shipway instance-types``: the instance types a variant can run on."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from shipway.cli.client import ShipwayClient
from shipway.cli.render import console

__all__ = ["instance_types"]


def instance_types(ctx: typer.Context) -> None:
    """List the instance types a variant can run on, with their sizes and prices."""
    types = ctx.ensure_object(ShipwayClient).instance_types()
    table = Table(
        "Name", "vCPUs", "Memory (GiB)", "Accelerator", "Price/hour", title="Instance types"
    )
    for t in types:
        accelerator = (
            f"{t.accelerator_count} x {t.accelerator} ({t.accelerator_memory_gib:g} GiB)"
            if t.accelerator
            else ""
        )
        table.add_row(
            t.name,
            "all" if t.vcpus <= 0 else str(t.vcpus),
            "all" if t.memory_gib <= 0 else f"{t.memory_gib:g}",
            escape(accelerator),
            f"${t.price_per_hour:.3f}",
        )
    console.print(table)
