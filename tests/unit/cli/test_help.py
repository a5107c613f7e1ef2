"""Help that reads whole at 80 and 120 columns: every option's name appears in full (no
``--termination-…``), flags show no ``<bool>``, and each group's help lists every command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.testing import CliRunner

from shipway.cli.main import COMMANDS, app, load

WIDTHS = ("80", "120")


def commands() -> Iterator[tuple[list[str], TyperCommand | TyperGroup]]:
    """Every command and group below the root, with its path."""

    def walk(
        command: TyperCommand | TyperGroup, path: list[str]
    ) -> Iterator[tuple[list[str], TyperCommand | TyperGroup]]:
        yield path, command
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                assert isinstance(sub, TyperCommand | TyperGroup)
                yield from walk(sub, [*path, name])

    for name in COMMANDS:
        yield from walk(load(name), [name])


def option_names(command: TyperCommand | TyperGroup) -> list[str]:
    return [
        name
        for param in command.params
        if isinstance(param, TyperOption)
        for name in (*param.opts, *param.secondary_opts)
        if name.startswith("--")
    ]


def whole(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def shipway_help(*args: str, columns: str) -> str:
    """``shipway ARGS --help`` as a terminal of that width shows it."""
    result = subprocess.run(
        [sys.executable, "-m", "shipway", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": columns, "TERMINAL_WIDTH": "", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("columns", WIDTHS)
def test_endpoints_update_help_shows_every_option_whole(columns: str) -> None:
    text = shipway_help("endpoints", "update", columns=columns)
    update = load("endpoints")
    assert isinstance(update, TyperGroup)
    names = option_names(update.commands["update"])
    assert {"--termination-wait", "--rollback-batch", "--retain-variant-properties"} <= set(names)
    for name in names:
        assert whole(name, text), f"{name} is cut at {columns} columns:\n{text}"
    assert "…" not in text
    assert "<bool>" not in text
    assert max(len(line) for line in text.splitlines()) <= int(columns)


@pytest.mark.parametrize("columns", WIDTHS)
def test_group_help_lists_every_command(columns: str) -> None:
    root = shipway_help(columns=columns)
    for name in COMMANDS:
        assert whole(name, root)
    for path, command in commands():
        if isinstance(command, TyperGroup):
            text = shipway_help(*path, columns=columns)
            for name in command.commands:
                assert whole(name, text), f"{' '.join(path)} --help does not list {name}"


@pytest.mark.parametrize("columns", WIDTHS)
def test_every_command_help_shows_its_options_whole(columns: str) -> None:
    runner = CliRunner()
    for path, command in commands():
        text = runner.invoke(app, [*path, "--help"], env={"COLUMNS": columns}).output
        for name in option_names(command):
            assert whole(name, text), f"{' '.join(path)}: {name} is cut at {columns}:\n{text}"
        assert "…" not in text, text
        assert "<bool>" not in text, text


def test_the_root_help_shows_each_command_s_own_help_line() -> None:
    # the root lists the commands without importing them: its lines must stay theirs
    for name, (_, line) in COMMANDS.items():
        command = load(name)
        own = (command.help or "").split("\n\n")[0]
        assert " ".join(own.split()) == line, name
