"""How the commands' help reads: a flag shows no value type.

typer's rich help prints each option's type beside it (``--url <str>``), flags included
(``--wait <bool>``), which reads as if a flag took a value. A flag gets an empty metavar here,
which typer shows as is; every other option keeps its type or the metavar it was given.
"""

from __future__ import annotations

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

__all__ = ["plain_flags"]


def plain_flags(command: TyperCommand | TyperGroup) -> None:
    """Give every flag of ``command`` and its subcommands (``--help`` too) an empty metavar."""
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, help_option]:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            if isinstance(sub, TyperCommand | TyperGroup):
                plain_flags(sub)
