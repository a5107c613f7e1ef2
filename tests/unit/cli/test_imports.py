"""The ``shipway`` command starts fast because it imports only what the command run needs:
the server stack is never imported by a client command, pydantic not by ``--help``, and our
shapes not by ``shipway invoke`` (typer itself uses pydantic to read a command's options).
The start time itself is measured by bench/cli/run.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

SERVER_STACK = ("fastapi", "starlette", "sqlalchemy", "alembic", "numpy", "sklearn", "uvicorn",
                "botocore", "boto3", "prometheus_client")  # fmt: skip


def imported(*args: str, code: str | None = None) -> set[str]:
    """The modules and top-level packages a fresh interpreter imported running ``shipway
    ARGS`` (or ``code``), read from ``-X importtime``."""
    command = ["-c", code] if code is not None else ["-m", "shipway", *args]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *command],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SHIPWAY_URL": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin", "COLUMNS": "80"},
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            names |= {name, name.split(".")[0]}
    assert names, result.stderr
    return names


def test_importing_the_command_imports_no_server_stack_nor_pydantic() -> None:
    modules = imported(code="import shipway.cli.main")
    assert "typer" in modules
    assert not modules & {*SERVER_STACK, "pydantic", "httpx"}


@pytest.mark.parametrize(
    "args",
    [("--help",), ("endpoints", "--help"), ("endpoints", "update", "--help"), ("models", "list")],
)
def test_client_commands_import_no_server_stack(args: tuple[str, ...]) -> None:
    # ``models list`` runs against a port where nothing listens: it fails after its imports
    assert not imported(*args) & {*SERVER_STACK, "httpx"}


def test_help_imports_no_pydantic_and_invoke_no_shapes() -> None:
    assert "pydantic" not in imported("--help")
    modules = imported("invoke", "e", "--body", "1")
    assert not modules & set(SERVER_STACK)
    assert "shipway.domain.shape" not in modules  # the base of every shape
    assert "shipway.monitor" not in modules
