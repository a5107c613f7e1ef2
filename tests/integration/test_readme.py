"""The README's boto3 scripts and AWS CLI commands, run as written against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.server import ShipwayServer

README = Path(__file__).parents[2] / "README.md"
DEFAULT_URL = "http://127.0.0.1:8080"


def block(marker: str) -> str:
    """The fenced code block right after ``<!-- ci: marker -->`` in the README."""
    match = re.search(
        rf"<!-- ci: {marker} -->\s*```\w*\n(.*?)```", README.read_text(), flags=re.DOTALL
    )
    assert match, f"README has no block marked ci: {marker}"
    return match.group(1)


def run_python(marker: str, server: ShipwayServer) -> subprocess.CompletedProcess[str]:
    """Run the README's Python block ``marker`` against ``server``; it must succeed."""
    env = {**os.environ, "SHIPWAY_URL": server.url}
    script = subprocess.run(
        [sys.executable, "-c", block(marker)],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert script.returncode == 0, script.stderr
    return script


@pytest.mark.slow
def test_the_readme_boto3_script_and_aws_cli_commands_work(
    shipway_server: ShipwayServer,
) -> None:
    script = run_python("boto3", shipway_server)
    assert script.stdout.strip() == "[0, 2]"
    env = {**os.environ, "SHIPWAY_URL": shipway_server.url}

    commands = block("aws").replace(DEFAULT_URL, shipway_server.url)
    bin_dir = str(Path(sys.executable).parent)  # where pip put `aws`
    shell = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        env={**env, "PATH": bin_dir + os.pathsep + env["PATH"]},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr + shell.stdout
    assert "[0]" in shell.stdout
    assert '"EndpointName": "iris-cli"' in shell.stdout


@pytest.mark.slow
def test_the_readme_guardrails_script_deploys_with_a_canary(
    shipway_server: ShipwayServer,
) -> None:
    script = run_python("guardrails", shipway_server)
    assert script.stdout.split() == ["Updating", "iris-v2"]
